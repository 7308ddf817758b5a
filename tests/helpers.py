"""Readable test data: example payloads and variations of them."""

from __future__ import annotations

import copy
import itertools
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
_ids = itertools.count(70_000_001)


def example(name: str) -> dict[str, Any]:
    """A decoded copy of examples/webhook-<name>.json."""
    return json.loads((EXAMPLES / f"webhook-{name}.json").read_text())


def random_event_id() -> int:
    """A fresh event id per call, so tests never collide on the one-order-per-event rule."""
    return next(_ids)


def definite(event_id: int | None = None, **changes: Any) -> dict[str, Any]:
    """The definite example with a fresh (or given) event id and any event fields changed."""
    payload = copy.deepcopy(example("definite"))
    payload["event"]["id"] = event_id if event_id is not None else random_event_id()
    payload["event"].update(changes)
    return payload


def body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()
