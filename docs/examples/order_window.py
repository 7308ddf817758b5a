"""The order window (ORDER_WINDOW_HOURS): an event far in the future waits, then is ordered on its own."""

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path

import attrs

from tsrevel import TripleSeatEvent
from tsrevel.testing import fake_world

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def main() -> None:
    world = fake_world(dry_run=False)
    world.processor.settings = attrs.evolve(world.processor.settings, order_window_hours=48)  # ORDER_WINDOW_HOURS=48
    world.clock.set(datetime(2025, 12, 1, 12, 0, tzinfo=timezone.utc))  # four weeks before the event
    connector = world.connector()

    webhook = json.loads((EXAMPLES / "webhook-definite.json").read_text())  # starts 2025-12-29T02:00:00Z
    outcome = await connector.handle(json.dumps(webhook).encode())
    print(outcome.state, "-", outcome.note)
    assert outcome.deferred and world.revel.calls == []

    await connector.drain()  # nothing is due yet
    assert world.revel.calls == []

    # Meanwhile the event grows in TripleSeat; the fake API serves it as it is now.
    webhook["event"]["guest_count"] = 55
    world.tripleseat.add(TripleSeatEvent.from_payload(webhook["event"]))

    world.clock.set(outcome.next_attempt_at)  # 48 hours before the start: the window opens
    await connector.drain()
    outcome = await connector.outcome(outcome.delivery_id)
    print(outcome.state, outcome.order_reference, "guests:", world.revel.created[0].guest_count)
    assert outcome.state == "done" and len(world.revel.created) == 1
    assert world.tripleseat.fetched == ["55521609"]  # re-read when the window opened


if __name__ == "__main__":
    asyncio.run(main())
