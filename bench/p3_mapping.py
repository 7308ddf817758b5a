"""P3 mapping: one webhook with a 500-line event, parsed (JSON + domain objects) and mapped to a Revel order, in process.

Pure CPU, no I/O: timed with time.perf_counter over many repetitions after a warm-up, with the
garbage collector on as in service; the median of each round is reported, and the median of
the rounds' medians is the result.
"""

from __future__ import annotations

import json
import time

from bench.common import MAPPING_FILE, Context, Row, median
from bench.payloads import event_with_lines
from tsrevel.adapters.mapping_toml import load_mapping_file
from tsrevel.domain.events import WebhookEnvelope
from tsrevel.domain.mapping import map_event
from tsrevel.domain.orders import RevelOrder

LINES = 500
TARGET_MS = 2.0


def _time(fn, repeat: int) -> float:  # noqa: ANN001 - any () -> object
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return median(samples) * 1000


def run(ctx: Context) -> list[Row]:
    body = json.dumps(event_with_lines(LINES)).encode()
    mapping = load_mapping_file(str(MAPPING_FILE))
    envelope = WebhookEnvelope.from_json_bytes(body)
    assert envelope.event is not None and len(envelope.event.line_items) == LINES
    order = map_event(envelope.event, mapping)
    assert isinstance(order, RevelOrder) and len(order.items) == LINES, order
    repeat = 50 if ctx.quick else 200
    ctx.note("P3", f"body {len(body)} bytes, {LINES} line items; {repeat} repetitions per round, {ctx.runs} rounds")

    def parse() -> None:
        WebhookEnvelope.from_json_bytes(body)

    def mapped() -> None:
        map_event(envelope.event, mapping)

    def both() -> None:
        event = WebhookEnvelope.from_json_bytes(body).event
        map_event(event, mapping)

    def snapshot() -> None:
        json.dumps(order.to_snapshot(), sort_keys=True)

    results: dict[str, list[float]] = {"parse": [], "map": [], "both": [], "snapshot": []}
    for fn in (parse, mapped, both, snapshot):  # warm-up
        _time(fn, 10)
    for _ in range(ctx.runs):
        results["parse"].append(_time(parse, repeat))
        results["map"].append(_time(mapped, repeat))
        results["both"].append(_time(both, repeat))
        results["snapshot"].append(_time(snapshot, repeat))
    both_ms = median(results["both"])
    return [
        Row("P3", f"parse + map, {LINES}-line event (ms)", f"{both_ms:.2f}", f"<= {TARGET_MS:g}", both_ms <= TARGET_MS, results["both"]),
        Row("P3", "  of which parse: JSON + TripleSeatEvent (ms)", f"{median(results['parse']):.2f}", runs=results["parse"]),
        Row("P3", "  of which map_event (ms)", f"{median(results['map']):.2f}", runs=results["map"]),
        Row("P3", "order snapshot to JSON, as processing stores it (ms)", f"{median(results['snapshot']):.2f}", runs=results["snapshot"]),
    ]
