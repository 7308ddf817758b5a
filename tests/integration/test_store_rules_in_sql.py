"""The one SQL store decides what is due and who holds an event exactly as domain/store_rules.py says.

store_rules states the claim's rules as pure functions (`due`, `leased`); since issue 13 no store
calls them: the SQL (`sql_operations.CLAIMABLE`) is the one implementation. This property keeps the
two from drifting: a delivery in any state, with any retry time and lease (or none), is claimed by
the store exactly when `due` says so, and a second delivery of its event exactly when the first is
not `leased`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_store_rules import NOW, offsets
from tsrevel.adapters.memory_store import MemoryStore
from tsrevel.adapters.store_common import time_text
from tsrevel.domain.deliveries import QUEUED, STATES, NewDelivery
from tsrevel.domain.store_rules import due, leased

states = st.sampled_from(STATES)


def new(n: int) -> NewDelivery:
    return NewDelivery(key=f"key-{n}", body=b'{"n": %d}' % n, correlation_id=f"c{n}", received_at=NOW,
                       trigger_type="CREATE_EVENT", event_id="evt-1", state=QUEUED)


def text(value: datetime | None) -> str | None:
    return None if value is None else time_text(value)


async def claims(state: str, next_at: datetime | None, lease_until: datetime | None) -> tuple[bool, bool]:
    """(whether the store claims a delivery so placed; whether it claims a second one of its event meanwhile)."""
    store = MemoryStore()
    first, _ = await store.add_delivery(new(1))
    store._conn.execute("UPDATE deliveries SET state = ?, next_attempt_at = ?, lease_until = ? WHERE id = ?",
                        (state, text(next_at), text(lease_until), first.id))
    second, _ = await store.add_delivery(new(2))
    later = NOW + timedelta(seconds=60)
    alone = await store.claim_delivery(now=NOW, lease_until=later, delivery_id=first.id)
    if alone is not None:  # put it back as it was, to ask about its event's other delivery
        store._conn.execute("UPDATE deliveries SET state = ?, next_attempt_at = ?, lease_until = ? WHERE id = ?",
                            (state, text(next_at), text(lease_until), first.id))
    beside = await store.claim_delivery(now=NOW, lease_until=later, delivery_id=second.id)
    await store.close()
    return alone is not None, beside is not None


@settings(max_examples=300, deadline=None)
@given(state=states, next_at=offsets, lease_until=offsets)
def test_the_store_claims_what_due_says_and_never_beside_a_live_lease(state, next_at, lease_until):
    alone, beside = asyncio.run(claims(state, next_at, lease_until))
    assert alone == due(state, next_at, lease_until, NOW)
    assert beside == (not leased(state, lease_until, NOW))
