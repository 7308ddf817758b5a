"""Realistic signed webhook bodies for the benchmarks: the 2 KB example with a unique event id each."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import ROOT, SIGNING_SECRET
from tsrevel.domain.signature import sign_body

EXAMPLE = ROOT / "examples" / "webhook-definite.json"
EXAMPLE_EVENT_ID = "55521609"
FIRST_EVENT_ID = 70_000_000  # eight digits like the example, so every body has the same size


class WebhookBodies:
    """Body n is examples/webhook-definite.json with event id FIRST_EVENT_ID + n: unique, ~2 KB, mappable.

    The body is split around the event id (head + id + tail) so that wrk's Lua script can build
    the same bytes from a number, with the signature computed here.
    """

    def __init__(self, path: Path = EXAMPLE, secret: str = SIGNING_SECRET) -> None:
        text = path.read_text()
        if text.count(EXAMPLE_EVENT_ID) != 1:
            raise ValueError(f"{path}: expected the event id {EXAMPLE_EVENT_ID} exactly once")
        head, tail = text.split(EXAMPLE_EVENT_ID)
        self.head, self.tail = head.encode(), tail.encode()
        self.secret = secret

    def event_id(self, n: int) -> int:
        return FIRST_EVENT_ID + n

    def body(self, n: int) -> bytes:
        return self.head + str(self.event_id(n)).encode() + self.tail

    def signature(self, n: int) -> str:
        return sign_body(self.body(n), secret=self.secret)

    def size(self) -> int:
        return len(self.body(0))


def event_with_lines(lines: int) -> dict[str, Any]:
    """The example webhook with `lines` line items (cycling the example's three mapped products)."""
    payload = json.loads(EXAMPLE.read_text())
    document = payload["event"]["documents"][0]
    examples = document["line_items"]
    items = []
    for i in range(lines):
        item = copy.deepcopy(examples[i % len(examples)])
        item["id"] = i + 1
        item["description"] = f"line {i + 1}" if i % 5 == 0 else ""
        items.append(item)
    document["line_items"] = items
    # The totals add up, as TripleSeat's do (issue 12: an order whose numbers do not is refused).
    lines_total = sum(Decimal(str(i["quantity"])) * Decimal(str(i["price"])) for i in items)
    charges = sum(Decimal(t["amount"]) for t in document.get("billing_totals", ()))
    grand_total = f"{lines_total + charges:.2f}"
    document["financials"] = {**document.get("financials", {}), "grand_total": grand_total, "amount_due": grand_total}
    return payload
