"""Rehearse incidents offline with tsrevel.testing: a Revel outage, then a change after the order."""

import asyncio
import copy
import json
from pathlib import Path

from tsrevel.testing import Fault, fake_world

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def main() -> None:
    world = fake_world(dry_run=False, secret="rehearsal-secret")  # fakes, in-memory store, a manual clock
    connector = world.connector()
    webhook = json.loads((EXAMPLES / "webhook-definite.json").read_text())

    # Revel answers 503 three times, then works.
    world.revel.script(Fault.transient(n=3))
    body = json.dumps(webhook).encode()
    outcome = await connector.handle(body, world.sign(body))
    while outcome.state == "retrying":
        print(f"{outcome.state}: {outcome.error}; next attempt {outcome.next_attempt_at:%H:%M:%S}")
        world.clock.set(outcome.next_attempt_at)  # jump to the stored retry time
        await connector.drain()
        outcome = await connector.outcome(outcome.delivery_id)
    print(outcome.state, outcome.order_reference)
    assert outcome.state == "done" and len(world.revel.created) == 1

    # The event changes after its order: 55 guests instead of 40, 60 doughnuts instead of 48.
    changed = copy.deepcopy(webhook)
    changed["webhook_trigger_type"] = "CHANGE_EVENT_GUEST_COUNTS"
    changed["event"]["guest_count"] = 55
    changed["event"]["documents"][0]["line_items"][0]["quantity"] = "60"
    body = json.dumps(changed).encode()
    later = await connector.handle(body, world.sign(body))
    print(later.state, "-", later.note)
    assert later.state == "needs_attention" and len(world.revel.created) == 1  # never a second order
    diff = later.emails[0].text
    assert "guest count: 40 -> 55" in diff and "48 x 3.25 -> 60 x 3.25" in diff
    print(later.emails[0].subject)


if __name__ == "__main__":
    asyncio.run(main())
