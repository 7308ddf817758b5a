"""The Store contract: one suite every store adapter must pass (memory, SQLite, PostgreSQL).

A backend is an async context manager that yields an *opener*: each call opens a migrated store on
the same database, so the suite can also check what several processes sharing it must see. To add
a backend, write its context manager and add one entry to BACKENDS (and its marks to BACKEND_MARKS).
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.postgres_db import drop_schema, new_schema_name, postgres_url
from tsrevel.adapters.memory_store import MemoryStore
from tsrevel.adapters.postgres_store import PostgresStore
from tsrevel.adapters.sqlite_engine import MIGRATIONS
from tsrevel.adapters.sqlite_store import SqliteStore, path_from_url
from tsrevel.domain.deliveries import (
    DEAD,
    DONE,
    DRY_RUN,
    HELD,
    IGNORED,
    LEDGER_CREATED,
    LEDGER_PENDING,
    PROCESSING,
    QUEUED,
    REJECTED,
    RETRYING,
    SKIPPED,
    Delivery,
    NewDelivery,
)
from tsrevel.domain.errors import ConfigError, DatabaseMissing, InvalidRequest, NotFound, StoreUnavailable
from tsrevel.domain.orders import OrderRef
from tsrevel.domain.verdict import Verdict
from tsrevel.domain.ports import (
    BUSY,
    EMAIL_PENDING,
    EMAIL_RETRYING,
    EMAIL_SENDING,
    EMAIL_SENT,
    EXISTING,
    RESERVED,
    EmailMessage,
    FlagOverrides,
)

pytestmark = pytest.mark.integration

UTC = timezone.utc
T0 = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)
LEASE = timedelta(seconds=60)

Opener = Callable[[], Awaitable[object]]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def random_key() -> str:
    return uuid.uuid4().hex


# -- backends ------------------------------------------------------------------------------------


@asynccontextmanager
async def memory_backend(tmp_path: Path) -> AsyncIterator[Opener]:
    # One process's memory is the whole database, so every opener call shares the one instance.
    store = MemoryStore()
    await store.migrate()

    async def open_store() -> MemoryStore:
        return store

    try:
        yield open_store
    finally:
        await store.close()


@asynccontextmanager
async def sqlite_backend(tmp_path: Path) -> AsyncIterator[Opener]:
    path = tmp_path / "var" / "tsrevel.db"
    path.parent.mkdir()  # as `make run` does: the store never creates directories
    opened: list[SqliteStore] = []

    async def open_store() -> SqliteStore:
        store = SqliteStore(path)
        opened.append(store)
        await store.migrate()
        return store

    try:
        yield open_store
    finally:
        for store in opened:
            await store.close()


@asynccontextmanager
async def postgres_backend(tmp_path: Path) -> AsyncIterator[Opener]:
    # A fresh schema per test (created by the store's migrate(), dropped here), on the server of
    # TSREVEL_TEST_POSTGRES_URL; every opener call is a separate store with its own pool.
    url = postgres_url()
    schema = new_schema_name()
    opened: list[PostgresStore] = []

    async def open_store() -> PostgresStore:
        store = PostgresStore.from_url(url, schema=schema, max_size=4)
        opened.append(store)
        await store.migrate()
        return store

    try:
        yield open_store
    finally:
        for store in opened:
            await store.close()
        await asyncio.to_thread(drop_schema, url, schema)


BACKENDS = {"memory": memory_backend, "sqlite": sqlite_backend, "postgres": postgres_backend}
BACKEND_MARKS = {"postgres": [pytest.mark.postgres]}
# Backends whose data outlives the store object (and the process).
DURABLE_BACKENDS = [pytest.param(name, marks=BACKEND_MARKS.get(name, [])) for name in ("sqlite", "postgres")]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=[pytest.param(name, marks=BACKEND_MARKS.get(name, [])) for name in BACKENDS])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    async with BACKENDS[request.param](tmp_path) as open_store:
        yield open_store


@pytest.fixture
async def store(backend: Opener):
    return await backend()


# -- helpers -------------------------------------------------------------------------------------


def new_delivery(
    *,
    key: str | None = None,
    event_id: str | None = "evt-1",
    state: str = QUEUED,
    error: str | None = None,
    received_at: datetime = T0,
    correlation_id: str = "corr-1",
    body: bytes = b'{"event": {"id": "1"}}',
) -> NewDelivery:
    return NewDelivery(
        key=key or random_key(),
        body=body,
        correlation_id=correlation_id,
        received_at=received_at,
        trigger_type="CREATE_EVENT",
        event_id=event_id,
        state=state,
        error=error,
        header_names=("content-type", "x-signature"),
    )


def email(delivery_id: int | None, kind: str = "order_created") -> EmailMessage:
    return EmailMessage(
        kind=kind,
        subject=f"{kind} for {delivery_id}",
        text="Order 77 created.",
        delivery_id=delivery_id,
        correlation_id="corr-1",
        to=("ops@example.com", "chef@example.com"),
    )


async def add(store, **fields) -> Delivery:
    delivery, created = await store.add_delivery(new_delivery(**fields))
    assert created
    return delivery


async def claim(store, now: datetime = T0) -> Delivery:
    claimed = await store.claim_delivery(now=now, lease_until=now + LEASE)
    assert claimed is not None, "expected a claimable delivery"
    return claimed


async def delivery_in_state(store, state: str, *, now: datetime = T0, event_id: str | None = None) -> Delivery:
    """A fresh delivery moved through a claim into state (the only way a worker moves one)."""
    delivery = await add(store, event_id=event_id or f"evt-{random_key()}", received_at=now)
    claimed = await claim(store, now)
    assert claimed.id == delivery.id
    assert await store.finish(claimed.id, token=claimed.lease_token, now=now,
                              outcome=Verdict(state=state, note=f"to {state}"))
    return await store.get_delivery(delivery.id)


async def queue_email(store, now: datetime = T0) -> int:
    """One pending outbox email, written the way workers write them: with a finish."""
    delivery = await add(store, event_id=f"evt-{random_key()}", received_at=now)
    claimed = await claim(store, now)
    assert await store.finish(claimed.id, token=claimed.lease_token, now=now,
                              outcome=Verdict(state=DONE, note="done", emails=[email(delivery.id)]))
    [outboxed] = await store.list_emails(delivery_id=delivery.id)
    return outboxed.id


# -- the contract --------------------------------------------------------------------------------


@pytest.mark.anyio
class TestLifecycle:
    async def test_migrating_twice_keeps_the_data(self, store):
        delivery = await add(store)
        await store.migrate()
        assert (await store.get_delivery(delivery.id)).key == delivery.key

    async def test_a_migrated_store_is_writable(self, store):
        await store.check_writable()

    async def test_a_closed_store_refuses_calls(self, store):
        await store.close()
        with pytest.raises(RuntimeError, match="closed"):
            await store.check_writable()


@pytest.mark.anyio
class TestAddDelivery:
    async def test_a_new_delivery_is_stored_queued_with_a_received_entry(self, store):
        new = new_delivery(event_id="evt-42", correlation_id="corr-42")
        delivery, created = await store.add_delivery(new)
        assert created
        assert (delivery.key, delivery.body, delivery.correlation_id) == (new.key, new.body, "corr-42")
        assert (delivery.trigger_type, delivery.event_id, delivery.state) == ("CREATE_EVENT", "evt-42", QUEUED)
        assert delivery.received_at == T0
        assert (delivery.attempts, delivery.lease_token, delivery.last_error) == (0, 0, None)
        assert [(e.at, e.state, e.note) for e in delivery.timeline] == [(T0, QUEUED, "received")]
        assert await store.get_delivery(delivery.id) == delivery

    async def test_the_same_key_returns_the_stored_delivery_and_inserts_nothing(self, store):
        first, _ = await store.add_delivery(new_delivery(key="k1", correlation_id="first"))
        days_later = new_delivery(key="k1", correlation_id="second", received_at=at(86400))
        again, created = await store.add_delivery(days_later)
        assert not created
        assert again == first
        assert again.correlation_id == "first"
        assert await store.count_by_state() == {QUEUED: 1}

    async def test_fifty_concurrent_identical_deliveries_store_one(self, store):
        results = await asyncio.gather(*(store.add_delivery(new_delivery(key="same")) for _ in range(50)))
        assert [created for _, created in results].count(True) == 1
        assert {delivery.id for delivery, _ in results} == {results[0][0].id}
        assert len(await store.list_deliveries(limit=100)) == 1

    async def test_a_rejected_delivery_keeps_its_reason_and_is_never_claimed(self, store):
        reason = "event.id: None is missing"
        delivery, created = await store.add_delivery(new_delivery(state=REJECTED, error=reason))
        assert created
        assert (delivery.state, delivery.last_error) == (REJECTED, reason)
        assert [(e.state, e.note) for e in delivery.timeline] == [(REJECTED, reason)]
        assert await store.claim_delivery(now=at(3600), lease_until=at(3660)) is None

    async def test_times_come_back_in_utc_with_microseconds(self, store):
        plus_two = timezone(timedelta(hours=2))
        local = datetime(2025, 3, 14, 11, 26, 53, 589793, tzinfo=plus_two)
        delivery = await add(store, received_at=local)
        stored = await store.get_delivery(delivery.id)
        assert stored.received_at == T0
        assert stored.received_at.utcoffset() == timedelta(0)
        assert stored.received_at.microsecond == 589793

    async def test_a_naive_timestamp_is_refused(self, store):
        with pytest.raises(ValueError, match="time zone"):
            await store.add_delivery(new_delivery(received_at=datetime(2025, 3, 14, 9, 0)))
        assert await store.count_by_state() == {}


@pytest.mark.anyio
class TestReadingDeliveries:
    async def test_an_unknown_id_is_not_found(self, store):
        with pytest.raises(NotFound, match="delivery 999 does not exist"):
            await store.get_delivery(999)

    async def test_the_list_is_newest_first_filtered_and_limited(self, store):
        first = await add(store)
        rejected, _ = await store.add_delivery(new_delivery(state=REJECTED, error="bad"))
        third = await add(store)
        assert [d.id for d in await store.list_deliveries()] == [third.id, rejected.id, first.id]
        assert [d.id for d in await store.list_deliveries(state=QUEUED)] == [third.id, first.id]
        assert [d.id for d in await store.list_deliveries(limit=1)] == [third.id]
        assert await store.list_deliveries(state=DONE) == []

    async def test_counts_name_only_states_that_have_deliveries(self, store):
        await add(store)
        await add(store)
        await store.add_delivery(new_delivery(state=REJECTED, error="bad"))
        assert await store.count_by_state() == {QUEUED: 2, REJECTED: 1}

    async def test_oldest_pending_ignores_finished_deliveries(self, store):
        assert await store.oldest_pending() is None
        await store.add_delivery(new_delivery(state=REJECTED, error="bad", received_at=at(-100)))
        await delivery_in_state(store, DONE, now=at(-50))
        await add(store, received_at=at(20))
        await add(store, received_at=at(10))
        assert await store.oldest_pending() == at(10)


@pytest.mark.anyio
class TestClaimDelivery:
    async def test_nothing_to_claim_gives_none(self, store):
        assert await store.claim_delivery(now=T0, lease_until=at(60)) is None

    async def test_claims_go_by_arrival_order_with_a_fresh_token(self, store):
        # received_at deliberately out of order: the id (arrival in the store) decides.
        ids = [(await add(store, event_id=f"evt-{n}", received_at=at(-n))).id for n in range(3)]
        claims = [await claim(store, at(1)) for _ in ids]
        assert [c.id for c in claims] == ids
        for claimed in claims:
            assert (claimed.state, claimed.lease_token, claimed.lease_until) == (PROCESSING, 1, at(61))
            assert (claimed.timeline[-1].state, claimed.timeline[-1].note) == (PROCESSING, "claimed")
        assert await store.claim_delivery(now=at(2), lease_until=at(62)) is None

    async def test_a_named_delivery_is_claimed_out_of_turn_and_only_when_claimable(self, store):
        first = await add(store, event_id="evt-a")
        second = await add(store, event_id="evt-b")
        claimed = await store.claim_delivery(now=at(1), lease_until=at(61), delivery_id=second.id)
        assert (claimed.id, claimed.state) == (second.id, PROCESSING)
        assert await store.claim_delivery(now=at(2), lease_until=at(62), delivery_id=second.id) is None
        assert (await claim(store, at(3))).id == first.id

    async def test_a_retrying_delivery_waits_for_its_next_attempt(self, store):
        delivery = await add(store)
        claimed = await claim(store)
        assert await store.finish(delivery.id, token=claimed.lease_token, now=at(1),
                                  outcome=Verdict(state=RETRYING, note="Revel 503",
                                                  error="503", attempts=1, next_attempt_at=at(30)))
        assert await store.claim_delivery(now=at(29.999999), lease_until=at(90)) is None
        again = await claim(store, at(30))
        assert (again.id, again.lease_token, again.attempts) == (delivery.id, 2, 1)

    async def test_a_live_lease_is_not_taken_over(self, store):
        await add(store)
        await claim(store, T0)
        assert await store.claim_delivery(now=T0 + LEASE, lease_until=at(120)) is None

    async def test_a_stale_lease_is_taken_over_and_the_old_token_cannot_commit(self, store):
        delivery = await add(store)
        stale = await claim(store, T0)
        fresh = await claim(store, T0 + LEASE + timedelta(microseconds=1))
        assert (fresh.id, fresh.lease_token) == (delivery.id, stale.lease_token + 1)
        assert fresh.timeline[-1].note == "claimed after lease expired"

        committed = await store.finish(delivery.id, token=stale.lease_token, now=at(70),
                                       outcome=Verdict(state=DONE, note="late",
                                                       result='{"stale": true}', emails=[email(delivery.id)]))
        assert not committed
        assert await store.get_delivery(delivery.id) == fresh
        assert await store.list_emails() == []
        assert await store.finish(delivery.id, token=fresh.lease_token, now=at(71),
                                  outcome=Verdict(state=DONE, note="won"))
        assert (await store.get_delivery(delivery.id)).state == DONE

    async def test_one_worker_per_event_at_a_time(self, store):
        first = await add(store, event_id="evt-7")
        second = await add(store, event_id="evt-7")
        other = await add(store, event_id="evt-8")
        assert (await claim(store, T0)).id == first.id
        # second is older than other but its event is leased: other goes first.
        assert (await claim(store, at(1))).id == other.id
        assert await store.claim_delivery(now=at(2), lease_until=at(62)) is None
        assert await store.finish(first.id, token=1, now=at(3), outcome=Verdict(state=DONE, note="done"))
        assert (await claim(store, at(4))).id == second.id

    async def test_an_expired_lease_no_longer_blocks_its_event(self, store):
        first = await add(store, event_id="evt-7")
        second = await add(store, event_id="evt-7")
        await claim(store, T0)
        later = T0 + LEASE + timedelta(seconds=1)
        taken_over = await claim(store, later)
        assert (taken_over.id, taken_over.lease_token) == (first.id, 2)
        # first is leased again, so second still waits.
        assert await store.claim_delivery(now=later, lease_until=later + LEASE) is None
        assert (await store.get_delivery(second.id)).state == QUEUED


@pytest.mark.anyio
class TestAddNote:
    async def test_the_lease_holder_can_note(self, store):
        await add(store)
        claimed = await claim(store)
        assert await store.add_note(claimed.id, token=claimed.lease_token, now=at(5), note="calling Revel")
        entry = (await store.get_delivery(claimed.id)).timeline[-1]
        assert (entry.at, entry.state, entry.note) == (at(5), PROCESSING, "calling Revel")

    async def test_a_stale_token_an_expired_lease_or_a_finished_delivery_cannot_note(self, store):
        delivery = await add(store)
        claimed = await claim(store)
        token = claimed.lease_token
        assert not await store.add_note(delivery.id, token=token + 1, now=at(1), note="wrong token")
        assert not await store.add_note(delivery.id, token=token, now=T0 + LEASE + timedelta(seconds=1), note="late")
        assert await store.finish(delivery.id, token=token, now=at(2), outcome=Verdict(state=DONE, note="done"))
        assert not await store.add_note(delivery.id, token=token, now=at(3), note="after finish")
        assert not await store.add_note(999, token=1, now=at(3), note="nobody")
        notes = [e.note for e in (await store.get_delivery(delivery.id)).timeline]
        assert notes == ["received", "claimed", "done"]


@pytest.mark.anyio
class TestFinish:
    async def test_finish_records_the_outcome_and_releases_the_lease(self, store):
        delivery = await add(store)
        claimed = await claim(store)
        assert await store.finish(delivery.id, token=claimed.lease_token, now=at(5),
                                  outcome=Verdict(state=RETRYING, note="Revel 502", error="502 Bad Gateway",
                                                  attempts=1, next_attempt_at=at(65), result='{"a": 1}', order_reference="tripleseat-1"))
        stored = await store.get_delivery(delivery.id)
        assert (stored.state, stored.last_error, stored.attempts) == (RETRYING, "502 Bad Gateway", 1)
        assert (stored.next_attempt_at, stored.result, stored.order_reference) == (at(65), '{"a": 1}', "tripleseat-1")
        assert (stored.lease_until, stored.updated_at, stored.lease_token) == (None, at(5), 1)
        assert (stored.timeline[-1].state, stored.timeline[-1].note) == (RETRYING, "Revel 502")

    async def test_omitted_fields_are_kept_and_next_attempt_is_cleared(self, store):
        delivery = await add(store)
        first = await claim(store)
        await store.finish(delivery.id, token=first.lease_token, now=at(1),
                           outcome=Verdict(state=RETRYING, note="retry", error="timeout",
                                           attempts=1, next_attempt_at=at(2), result="r", order_reference="ref"))
        second = await claim(store, at(2))
        assert await store.finish(delivery.id, token=second.lease_token, now=at(3),
                                  outcome=Verdict(state=DEAD, note="gave up"))
        stored = await store.get_delivery(delivery.id)
        assert (stored.state, stored.last_error, stored.attempts) == (DEAD, "timeout", 1)
        assert (stored.next_attempt_at, stored.result, stored.order_reference) == (None, "r", "ref")

    async def test_emails_enter_the_outbox_with_the_finish(self, store):
        delivery = await add(store)
        claimed = await claim(store)
        messages = [email(delivery.id), email(delivery.id, kind="needs_attention")]
        assert await store.finish(delivery.id, token=claimed.lease_token, now=at(1),
                                  outcome=Verdict(state=DONE, note="done", emails=messages))
        outbox = await store.list_emails(delivery_id=delivery.id)
        assert [e.message for e in outbox] == messages
        assert {(e.state, e.attempts, e.created_at, e.sent_at) for e in outbox} == {(EMAIL_PENDING, 0, at(1), None)}

    async def test_a_state_a_worker_cannot_finish_in_is_refused(self, store):
        delivery = await add(store)
        claimed = await claim(store)
        with pytest.raises(ValueError, match="cannot finish"):
            await store.finish(delivery.id, token=claimed.lease_token, now=at(1),
                               outcome=Verdict(state=PROCESSING, note="?"))
        assert (await store.get_delivery(delivery.id)) == claimed

    async def test_finish_on_an_unknown_delivery_writes_nothing(self, store):
        assert not await store.finish(999, token=1, now=T0, outcome=Verdict(state=DONE, note="?", emails=[email(999)]))
        assert await store.list_emails() == []

    async def test_release_drops_only_this_deliverys_pending_slot(self, store):
        mine = await add(store, event_id="evt-1")
        claimed = await claim(store)
        await store.reserve_order(event_id="evt-1", reference="tripleseat-evt-1", establishment_id=4,
                                  delivery_id=mine.id, token=claimed.lease_token, now=T0)
        assert await store.finish(mine.id, token=claimed.lease_token, now=at(1),
                                  outcome=Verdict(state=HELD, note="switched off", release_event_id="evt-1"))
        assert await store.get_order("evt-1") is None

    async def test_release_keeps_a_slot_owned_by_another_delivery_or_already_created(self, store):
        owner = await add(store, event_id="evt-1")
        owner_claim = await claim(store)
        await store.reserve_order(event_id="evt-1", reference="r1", establishment_id=4, delivery_id=owner.id,
                                  token=owner_claim.lease_token, now=T0)
        other = await add(store, event_id="evt-2")
        other_claim = await claim(store)
        assert await store.finish(other.id, token=other_claim.lease_token, now=at(1),
                                  outcome=Verdict(state=DONE, note="x", release_event_id="evt-1"))
        assert (await store.get_order("evt-1")).state == LEDGER_PENDING
        assert await store.complete_order(event_id="evt-1", delivery_id=owner.id, token=owner_claim.lease_token,
                                          ref=OrderRef(77), snapshot="{}", now=at(2), note="created")
        later = await add(store, event_id="evt-1")
        later_claim = await claim(store, at(3))
        assert await store.finish(later.id, token=later_claim.lease_token, now=at(4),
                                  outcome=Verdict(state=DEAD, note="x", release_event_id="evt-1"))
        assert (await store.get_order("evt-1")).state == LEDGER_CREATED


@pytest.mark.anyio
class TestOrderLedger:
    async def reserve(self, store, delivery: Delivery, now: datetime = T0, event_id: str = "evt-1"):
        return await store.reserve_order(event_id=event_id, reference=f"tripleseat-{event_id}", establishment_id=4,
                                         delivery_id=delivery.id, token=delivery.lease_token, now=now)

    async def test_the_first_reservation_writes_a_pending_slot(self, store):
        await add(store)
        claimed = await claim(store)
        reservation = await self.reserve(store, claimed)
        assert reservation.outcome == RESERVED
        entry = reservation.entry
        assert (entry.event_id, entry.reference, entry.establishment_id) == ("evt-1", "tripleseat-evt-1", 4)
        assert (entry.delivery_id, entry.state, entry.revel_order_id) == (claimed.id, LEDGER_PENDING, None)
        assert (entry.created_at, entry.updated_at) == (T0, T0)
        assert await store.get_order("evt-1") == entry

    async def test_the_owner_may_reserve_again(self, store):
        await add(store)
        claimed = await claim(store)
        first = await self.reserve(store, claimed)
        again = await self.reserve(store, claimed, now=at(5))
        assert (again.outcome, again.entry) == (RESERVED, first.entry)

    async def test_a_stale_token_gets_busy_and_writes_nothing(self, store):
        await add(store)
        claimed = await claim(store)
        reservation = await store.reserve_order(event_id="evt-1", reference="r", establishment_id=4,
                                                delivery_id=claimed.id, token=claimed.lease_token + 1, now=T0)
        assert (reservation.outcome, reservation.entry) == (BUSY, None)
        assert await store.get_order("evt-1") is None

    async def test_another_delivery_is_busy_while_the_owner_holds_its_lease(self, store):
        await add(store, event_id="evt-1")
        await add(store, event_id="evt-2")
        owner = await claim(store)
        other = await claim(store)
        await self.reserve(store, owner)
        busy = await self.reserve(store, other, now=at(1))
        assert busy.outcome == BUSY
        assert busy.entry.delivery_id == owner.id

    async def test_a_slot_whose_owner_stopped_passes_to_the_next_delivery(self, store):
        await add(store, event_id="evt-1")
        await add(store, event_id="evt-2")
        owner = await claim(store)
        other = await claim(store)
        await store.reserve_order(event_id="evt-1", reference="tripleseat-evt-1", establishment_id=4,
                                  delivery_id=owner.id, token=owner.lease_token, now=T0)
        await store.finish(owner.id, token=owner.lease_token, now=at(1),
                           outcome=Verdict(state=RETRYING, note="timeout", next_attempt_at=at(100)))
        taken = await store.reserve_order(event_id="evt-1", reference="tripleseat-evt-1", establishment_id=9,
                                          delivery_id=other.id, token=other.lease_token, now=at(2))
        assert taken.outcome == RESERVED
        # The establishment of the first attempt stays: a lost create would be found there.
        assert (taken.entry.delivery_id, taken.entry.establishment_id, taken.entry.updated_at) == (other.id, 4, at(2))
        assert (taken.entry.created_at, taken.entry.state) == (T0, LEDGER_PENDING)

    async def test_a_slot_whose_owner_lease_expired_passes_on(self, store):
        await add(store, event_id="evt-1")
        await add(store, event_id="evt-2")
        owner = await claim(store, T0)
        other = await claim(store, at(30))
        await self.reserve(store, owner)
        taken = await self.reserve(store, other, now=T0 + LEASE + timedelta(seconds=1))
        assert (taken.outcome, taken.entry.delivery_id) == (RESERVED, other.id)

    async def test_completing_records_the_order_and_finishes_the_delivery(self, store):
        delivery = await add(store)
        claimed = await claim(store)
        await self.reserve(store, claimed)
        done = await store.complete_order(event_id="evt-1", delivery_id=delivery.id, token=claimed.lease_token,
                                          ref=OrderRef(77, "/resources/Order/77/"), snapshot='{"total": "10"}',
                                          now=at(3), note="order 77 created", emails=[email(delivery.id)])
        assert done
        entry = await store.get_order("evt-1")
        assert (entry.state, entry.revel_order_id, entry.revel_uri) == (LEDGER_CREATED, 77, "/resources/Order/77/")
        assert (entry.snapshot, entry.updated_at, entry.created_at) == ('{"total": "10"}', at(3), T0)
        stored = await store.get_delivery(delivery.id)
        assert (stored.state, stored.order_reference, stored.lease_until) == (DONE, "tripleseat-evt-1", None)
        assert (stored.timeline[-1].state, stored.timeline[-1].note) == (DONE, "order 77 created")
        assert [e.message.kind for e in await store.list_emails(delivery_id=delivery.id)] == ["order_created"]

    async def test_after_the_order_exists_every_reservation_says_existing(self, store):
        first = await add(store, event_id="evt-1")
        claimed = await claim(store)
        await self.reserve(store, claimed)
        await store.complete_order(event_id="evt-1", delivery_id=first.id, token=claimed.lease_token,
                                   ref=OrderRef(77), snapshot="{}", now=at(1), note="created")
        await add(store, event_id="evt-1")
        later = await claim(store, at(2))
        existing = await self.reserve(store, later, now=at(2))
        assert (existing.outcome, existing.entry.revel_order_id, existing.entry.delivery_id) == (EXISTING, 77, first.id)

    async def test_a_stale_completion_writes_nothing(self, store):
        delivery = await add(store)
        stale = await claim(store, T0)
        await self.reserve(store, stale)
        fresh = await claim(store, T0 + LEASE + timedelta(seconds=1))
        ok = await store.complete_order(event_id="evt-1", delivery_id=delivery.id, token=stale.lease_token,
                                        ref=OrderRef(77), snapshot="{}", now=at(70), note="late",
                                        emails=[email(delivery.id)])
        assert not ok
        assert (await store.get_order("evt-1")).state == LEDGER_PENDING
        assert await store.get_delivery(delivery.id) == fresh
        assert await store.list_emails() == []

    async def test_completion_needs_the_slot_to_be_this_deliverys(self, store):
        await add(store, event_id="evt-1")
        await add(store, event_id="evt-2")
        owner = await claim(store)
        other = await claim(store)
        assert not await store.complete_order(event_id="evt-1", delivery_id=owner.id, token=owner.lease_token,
                                              ref=OrderRef(1), snapshot="{}", now=at(1), note="no slot")
        await self.reserve(store, owner)
        assert not await store.complete_order(event_id="evt-1", delivery_id=other.id, token=other.lease_token,
                                              ref=OrderRef(2), snapshot="{}", now=at(1), note="not mine")
        assert (await store.get_order("evt-1")).state == LEDGER_PENDING
        assert (await store.get_delivery(other.id)).state == PROCESSING

    async def test_orders_are_listed_newest_first_and_can_be_forgotten(self, store):
        for n in range(3):
            await add(store, event_id=f"evt-{n}")
            claimed = await claim(store)
            await self.reserve(store, claimed, event_id=f"evt-{n}")
        assert [e.event_id for e in await store.list_orders()] == ["evt-2", "evt-1", "evt-0"]
        assert [e.event_id for e in await store.list_orders(limit=2)] == ["evt-2", "evt-1"]
        assert await store.forget_order("evt-1")
        assert not await store.forget_order("evt-1")
        assert await store.get_order("evt-1") is None
        assert [e.event_id for e in await store.list_orders()] == ["evt-2", "evt-0"]


@pytest.mark.anyio
class TestReplay:
    async def test_a_done_delivery_is_not_replayed(self, store):
        done = await delivery_in_state(store, DONE)
        assert not await store.replay_delivery(done.id, now=at(10), note="replay")
        assert await store.get_delivery(done.id) == done

    async def test_a_dead_delivery_is_requeued_and_claimable_again(self, store):
        delivery = await add(store)
        claimed = await claim(store)
        await store.finish(delivery.id, token=claimed.lease_token, now=at(1),
                           outcome=Verdict(state=DEAD, note="400",
                                           error="422 unknown product", attempts=8, next_attempt_at=at(99)))
        assert await store.replay_delivery(delivery.id, now=at(10), note="replayed by ops")
        stored = await store.get_delivery(delivery.id)
        assert (stored.state, stored.attempts, stored.next_attempt_at) == (QUEUED, 0, None)
        assert stored.last_error == "422 unknown product"
        assert (stored.timeline[-1].state, stored.timeline[-1].note, stored.timeline[-1].at) == (
            QUEUED, "replayed by ops", at(10))
        again = await claim(store, at(11))
        assert (again.id, again.lease_token) == (delivery.id, 2)

    async def test_replaying_an_unknown_delivery_is_not_found(self, store):
        with pytest.raises(NotFound, match="delivery 404 does not exist"):
            await store.replay_delivery(404, now=T0, note="replay")

    async def test_replaying_a_state_requeues_all_of_it_in_arrival_order(self, store):
        held = [await delivery_in_state(store, HELD, now=at(n)) for n in range(3)]
        dead = await delivery_in_state(store, DEAD, now=at(5))
        assert await store.replay_state(HELD, now=at(10), note="switch on") == 3
        assert (await store.get_delivery(dead.id)).state == DEAD
        claimed = [await claim(store, at(11)) for _ in held]
        assert [c.id for c in claimed] == [d.id for d in held]
        assert await store.replay_state(HELD, now=at(12), note="again") == 0

    async def test_replaying_skipped_works_like_held(self, store):
        skipped = await delivery_in_state(store, SKIPPED)
        assert await store.replay_state(SKIPPED, now=at(1), note="location allowed") == 1
        assert (await store.get_delivery(skipped.id)).state == QUEUED

    @pytest.mark.parametrize("state", [DONE, QUEUED, PROCESSING, "nonsense"])
    async def test_a_state_that_cannot_be_replayed_is_an_invalid_request(self, store, state):
        done = await delivery_in_state(store, DONE)
        with pytest.raises(InvalidRequest, match="cannot be replayed"):
            await store.replay_state(state, now=at(1), note="replay")
        assert (await store.get_delivery(done.id)).state == DONE


@pytest.mark.anyio
class TestDiscard:
    @pytest.mark.parametrize("state", [DEAD, HELD, SKIPPED, DRY_RUN])
    async def test_a_replayable_delivery_is_discarded_to_ignored_for_good(self, store, state):
        delivery = await delivery_in_state(store, state)
        assert await store.discard_delivery(delivery.id, now=at(10), note="discarded by ops: test order")
        stored = await store.get_delivery(delivery.id)
        assert (stored.state, stored.next_attempt_at, stored.updated_at) == (IGNORED, None, at(10))
        assert (stored.timeline[-1].state, stored.timeline[-1].note) == (IGNORED, "discarded by ops: test order")
        assert not await store.replay_delivery(delivery.id, now=at(11), note="replay")
        assert await store.replay_state(state, now=at(12), note="replay all") == 0
        assert await store.claim_delivery(now=at(13), lease_until=at(13) + LEASE) is None

    @pytest.mark.parametrize("state", [DONE, IGNORED, RETRYING])
    async def test_a_delivery_that_is_not_replayable_is_left_alone(self, store, state):
        delivery = await delivery_in_state(store, state)
        assert not await store.discard_delivery(delivery.id, now=at(10), note="discard")
        assert await store.get_delivery(delivery.id) == delivery

    async def test_discarding_an_unknown_delivery_is_not_found(self, store):
        with pytest.raises(NotFound, match="delivery 404 does not exist"):
            await store.discard_delivery(404, now=T0, note="discard")


@pytest.mark.anyio
class TestFlags:
    async def test_flags_never_set_are_all_none(self, store):
        assert await store.get_flags() == FlagOverrides()

    async def test_setting_one_flag_leaves_the_other(self, store):
        first = await store.set_flags(enable_connector=False, dry_run=True, actor="ana", reason="incident", now=T0)
        assert (first.enable_connector, first.dry_run, first.actor, first.reason, first.updated_at) == (
            False, True, "ana", "incident", T0)
        second = await store.set_flags(enable_connector=None, dry_run=False, actor="bo", reason="go live", now=at(1))
        assert (second.enable_connector, second.dry_run, second.actor, second.updated_at) == (False, False, "bo", at(1))
        assert await store.get_flags() == second

    async def test_clearing_returns_both_to_the_environment(self, store):
        await store.set_flags(enable_connector=True, dry_run=False, actor="ana", reason="go", now=T0)
        await store.clear_flags(actor="bo", reason="back to env", now=at(1))
        flags = await store.get_flags()
        assert (flags.enable_connector, flags.dry_run) == (None, None)
        assert (flags.actor, flags.reason, flags.updated_at) == ("bo", "back to env", at(1))


@pytest.mark.anyio
class TestOutbox:
    async def test_nothing_to_send_gives_none(self, store):
        assert await store.claim_email(now=T0, lease_until=at(60)) is None

    async def test_emails_are_claimed_oldest_first_under_a_lease(self, store):
        first, second = await queue_email(store), await queue_email(store)
        claimed = await store.claim_email(now=at(1), lease_until=at(61))
        assert (claimed.id, claimed.state, claimed.lease_token) == (first, EMAIL_SENDING, 1)
        assert claimed.message.to == ("ops@example.com", "chef@example.com")
        assert (await store.claim_email(now=at(2), lease_until=at(62))).id == second
        assert await store.claim_email(now=at(61), lease_until=at(121)) is None

    async def test_a_sender_that_died_loses_the_email_to_the_next(self, store):
        email_id = await queue_email(store)
        stale = await store.claim_email(now=T0, lease_until=at(60))
        fresh = await store.claim_email(now=at(60.000001), lease_until=at(120))
        assert (fresh.id, fresh.lease_token) == (email_id, stale.lease_token + 1)
        assert not await store.finish_email(email_id, token=stale.lease_token, state=EMAIL_SENT, now=at(61))
        assert (await store.list_emails())[0].state == EMAIL_SENDING
        assert await store.finish_email(email_id, token=fresh.lease_token, state=EMAIL_SENT, now=at(62))

    async def test_a_sent_email_records_when_and_is_not_sent_again(self, store):
        email_id = await queue_email(store)
        claimed = await store.claim_email(now=T0, lease_until=at(60))
        assert await store.finish_email(email_id, token=claimed.lease_token, state=EMAIL_SENT, now=at(2), attempts=1)
        [sent] = await store.list_emails()
        assert (sent.state, sent.sent_at, sent.attempts) == (EMAIL_SENT, at(2), 1)
        assert await store.claim_email(now=at(3600), lease_until=at(3660)) is None
        assert not await store.finish_email(email_id, token=claimed.lease_token, state=EMAIL_SENT, now=at(3))

    async def test_a_retrying_email_waits_for_its_next_attempt(self, store):
        email_id = await queue_email(store)
        claimed = await store.claim_email(now=T0, lease_until=at(60))
        assert await store.finish_email(email_id, token=claimed.lease_token, state=EMAIL_RETRYING, now=at(1),
                                        error="429 Too Many Requests", attempts=1, next_attempt_at=at(30))
        [waiting] = await store.list_emails()
        assert (waiting.state, waiting.last_error, waiting.next_attempt_at, waiting.sent_at) == (
            EMAIL_RETRYING, "429 Too Many Requests", at(30), None)
        assert await store.claim_email(now=at(29), lease_until=at(89)) is None
        again = await store.claim_email(now=at(30), lease_until=at(90))
        assert (again.id, again.lease_token, again.attempts, again.last_error) == (
            email_id, 2, 1, "429 Too Many Requests")

    async def test_an_email_state_a_sender_cannot_set_is_refused(self, store):
        email_id = await queue_email(store)
        claimed = await store.claim_email(now=T0, lease_until=at(60))
        with pytest.raises(ValueError, match="cannot finish"):
            await store.finish_email(email_id, token=claimed.lease_token, state=EMAIL_SENDING, now=at(1))

    async def test_the_list_is_oldest_first_per_delivery_and_limited(self, store):
        ids = [await queue_email(store) for _ in range(3)]
        emails = await store.list_emails()
        assert [e.id for e in emails] == ids
        assert [e.id for e in await store.list_emails(limit=2)] == ids[:2]
        only = await store.list_emails(delivery_id=emails[1].message.delivery_id)
        assert [e.id for e in only] == [ids[1]]


@pytest.mark.anyio
class TestAudit:
    async def test_entries_are_listed_newest_first(self, store):
        await store.add_audit(actor="ana", action="set_flags", detail='{"dry_run": false}', reason="go live", now=T0)
        await store.add_audit(actor="bo", action="replay", detail="state=dead", reason="fixed mapping", now=at(1))
        entries = await store.list_audit()
        assert [(e.actor, e.action, e.detail, e.reason, e.at) for e in entries] == [
            ("bo", "replay", "state=dead", "fixed mapping", at(1)),
            ("ana", "set_flags", '{"dry_run": false}', "go live", T0),
        ]
        assert entries[0].id != entries[1].id
        assert [e.actor for e in await store.list_audit(limit=1)] == ["bo"]


@pytest.mark.anyio
class TestSharedDatabase:
    """What several processes on one database must see (for memory: several users of one instance)."""

    async def test_stores_racing_claims_hand_out_each_delivery_once(self, backend):
        # Enough contenders that a read-then-write without an up-front write lock would collide.
        stores = [await backend() for _ in range(4)]
        ids = [(await add(stores[0], event_id=f"evt-{n}")).id for n in range(30)]
        claims = await asyncio.gather(
            *(s.claim_delivery(now=T0, lease_until=at(60)) for _ in range(10) for s in stores)
        )
        claimed = [c for c in claims if c is not None]
        assert sorted(c.id for c in claimed) == ids
        assert {c.lease_token for c in claimed} == {1}
        assert await stores[1].count_by_state() == {PROCESSING: 30}

    async def test_flags_set_through_one_store_are_seen_by_another(self, backend):
        one, two = await backend(), await backend()
        assert (await two.get_flags()).enable_connector is None
        await one.set_flags(enable_connector=False, dry_run=None, actor="ana", reason="incident", now=T0)
        assert (await two.get_flags()).enable_connector is False

    async def test_a_claim_by_one_store_fences_the_other(self, backend):
        one, two = await backend(), await backend()
        delivery = await add(one)
        stale = await claim(one, T0)
        fresh = await claim(two, T0 + LEASE + timedelta(seconds=1))
        assert not await one.finish(delivery.id, token=stale.lease_token, now=at(62),
                                    outcome=Verdict(state=DONE, note="late"))
        assert await two.finish(delivery.id, token=fresh.lease_token, now=at(63),
                                outcome=Verdict(state=DONE, note="won"))

    @pytest.mark.parametrize("backend", DURABLE_BACKENDS, indirect=True)
    async def test_everything_survives_closing_and_reopening(self, backend):
        first = await backend()
        delivery = await add(first)
        claimed = await claim(first)
        await first.reserve_order(event_id="evt-1", reference="tripleseat-evt-1", establishment_id=4,
                                  delivery_id=delivery.id, token=claimed.lease_token, now=T0)
        await first.finish(delivery.id, token=claimed.lease_token, now=at(1),
                           outcome=Verdict(state=RETRYING, note="503", next_attempt_at=at(30), emails=[email(delivery.id)]))
        await first.set_flags(enable_connector=False, dry_run=None, actor="ana", reason="r", now=T0)
        await first.add_audit(actor="ana", action="a", detail="d", reason="r", now=T0)
        before = await first.get_delivery(delivery.id)
        await first.close()

        second = await backend()
        assert await second.get_delivery(delivery.id) == before
        assert (await second.get_order("evt-1")).delivery_id == delivery.id
        assert len(await second.list_emails()) == 1
        assert (await second.get_flags()).enable_connector is False
        assert len(await second.list_audit()) == 1
        assert (await claim(second, at(30))).lease_token == 2


# -- SQLite specifics ----------------------------------------------------------------------------


def test_sqlite_urls_name_relative_and_absolute_files():
    assert path_from_url("sqlite:///./var/tsrevel.db") == Path("./var/tsrevel.db")
    assert path_from_url("sqlite:////srv/tsrevel/db.sqlite") == Path("/srv/tsrevel/db.sqlite")
    assert SqliteStore.from_url("sqlite:///var/t.db").path == Path("var/t.db")
    for bad in ("postgresql://u@h/db", "sqlite:///", "sqlite://host/x.db"):
        with pytest.raises(ConfigError, match="not a SQLite file URL"):
            path_from_url(bad)


@pytest.mark.anyio
class TestSqliteStore:
    async def test_nothing_touches_the_disk_until_first_use(self, tmp_path):
        path = tmp_path / "t.db"
        store = SqliteStore(path)
        assert not path.exists()
        try:
            await store.migrate()
            assert path.exists()
        finally:
            await store.close()

    async def test_a_missing_directory_is_an_error_and_is_not_created(self, tmp_path):
        path = tmp_path / "new" / "dir" / "t.db"
        store = SqliteStore(path)
        try:
            with pytest.raises(StoreUnavailable, match=r"directory .*/new/dir does not exist \(tsrevel does not create it\)"):
                await store.migrate()
            assert not path.parent.exists()
        finally:
            await store.close()

    async def test_a_directory_in_place_of_the_file_is_an_error(self, tmp_path):
        store = SqliteStore(tmp_path)
        try:
            with pytest.raises(StoreUnavailable, match="is a directory, not a database file"):
                await store.migrate()
        finally:
            await store.close()

    async def test_without_create_a_missing_file_is_refused_and_not_created(self, tmp_path):
        path = tmp_path / "t.db"
        store = SqliteStore(path, create=False)
        try:
            with pytest.raises(DatabaseMissing, match=f"there is no database file at {path}"):
                await store.migrate()
            assert not path.exists()
        finally:
            await store.close()

    @pytest.mark.parametrize("configured", ["full", "normal"])
    async def test_the_synchronous_pragma_is_the_configured_one_full_by_default(self, tmp_path, configured):
        default = SqliteStore(tmp_path / "default.db")
        chosen = SqliteStore(tmp_path / "chosen.db", synchronous=configured)
        try:
            await default.migrate()
            await chosen.migrate()
            assert await default.synchronous_mode() == "full"
            assert await chosen.synchronous_mode() == configured
        finally:
            await default.close()
            await chosen.close()

    def test_an_unknown_synchronous_mode_is_a_configuration_error(self, tmp_path):
        with pytest.raises(ConfigError, match="'off' is not one of full, normal"):
            SqliteStore(tmp_path / "t.db", synchronous="off")

    async def test_the_file_is_in_wal_mode_and_migrations_are_recorded_once(self, tmp_path):
        path = tmp_path / "t.db"
        stores = [SqliteStore(path) for _ in range(3)]
        try:
            await asyncio.gather(*(s.migrate() for s in stores))
            await stores[0].migrate()
        finally:
            for s in stores:
                await s.close()
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            versions = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        conn.close()
        assert versions == list(range(1, len(MIGRATIONS) + 1))

    async def test_a_database_that_cannot_be_created_is_not_writable(self, tmp_path):
        # A path below a regular file fails for root too, unlike chmod.
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("x")
        store = SqliteStore(blocker / "t.db")
        try:
            with pytest.raises(StoreUnavailable, match="is not a directory"):
                await store.migrate()
            with pytest.raises(StoreUnavailable, match="is not a directory"):
                await store.check_writable()
        finally:
            await store.close()

    async def test_check_writable_really_writes(self, tmp_path):
        path = tmp_path / "t.db"
        store = SqliteStore(path, busy_timeout_ms=50)
        await store.migrate()
        # Another connection holding the write lock: reads still work, a real write cannot.
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            assert await store.count_by_state() == {}
            with pytest.raises(StoreUnavailable, match="database is locked"):
                await store.check_writable()
            blocker.execute("ROLLBACK")
            await store.check_writable()
            assert blocker.execute("SELECT COUNT(*) FROM heartbeat").fetchone()[0] == 1
        finally:
            blocker.close()
            await store.close()

    async def test_a_committed_delivery_survives_sigkill(self, tmp_path):
        path = tmp_path / "t.db"
        script = textwrap.dedent(
            f"""
            import asyncio, os, signal
            from datetime import datetime, timezone
            from tsrevel.adapters.sqlite_store import SqliteStore
            from tsrevel.domain.deliveries import NewDelivery

            async def main():
                store = SqliteStore({str(path)!r})
                await store.migrate()
                await store.add_delivery(NewDelivery(
                    key="killed", body=b"{{}}", correlation_id="c", trigger_type=None, event_id="e",
                    state="queued", received_at=datetime(2025, 1, 1, tzinfo=timezone.utc)))
                os.kill(os.getpid(), signal.SIGKILL)

            asyncio.run(main())
            """
        )
        finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert finished.returncode == -9, finished.stderr
        store = SqliteStore(path)
        try:
            [delivery] = await store.list_deliveries()
            assert (delivery.key, delivery.state) == ("killed", QUEUED)
        finally:
            await store.close()


@pytest.mark.anyio
class TestValuesAndPruning:
    async def test_a_named_value_is_kept_and_replaced(self, store):
        assert await store.get_value("tripleseat.refresh_token") is None
        await store.put_value("tripleseat.refresh_token", "r1", now=T0)
        await store.put_value("tripleseat.refresh_token", "r2", now=at(1))
        assert await store.get_value("tripleseat.refresh_token") == "r2"

    async def test_pruning_removes_old_terminal_deliveries_only(self, store):
        old_done = await add(store, event_id="evt-old")
        claimed = await claim(store, at(1))
        assert await store.finish(old_done.id, token=claimed.lease_token, now=at(2),
                                  outcome=Verdict(state=DONE, note="done"))
        pending = await add(store, event_id="evt-pending")
        assert await store.prune_history(older_than=at(1)) == 0
        assert await store.prune_history(older_than=at(3)) == 1
        with pytest.raises(NotFound):
            await store.get_delivery(old_done.id)
        assert (await store.get_delivery(pending.id)).state == QUEUED
        # The same body can no longer be recognised as a duplicate, but the ledger still guards the order.
        assert await store.prune_history(older_than=at(3)) == 0

    async def test_pruning_keeps_the_delivery_that_owns_an_order_and_never_fails_on_it(self, store):
        owner = await add(store, event_id="evt-ordered")
        claimed = await claim(store, at(1))
        await store.reserve_order(event_id="evt-ordered", reference="tripleseat-evt-ordered", establishment_id=4,
                                  delivery_id=owner.id, token=claimed.lease_token, now=at(1))
        assert await store.complete_order(event_id="evt-ordered", delivery_id=owner.id, token=claimed.lease_token,
                                          ref=OrderRef(77, "/resources/Order/77/"), snapshot="{}", now=at(2), note="created")
        later = await add(store, event_id="evt-ordered")
        again = await claim(store, at(3))
        assert await store.finish(later.id, token=again.lease_token, now=at(3),
                                  outcome=Verdict(state=DONE, note="no change"))
        assert await store.prune_history(older_than=at(10)) == 1
        assert (await store.get_order("evt-ordered")).revel_order_id == 77
        assert (await store.get_delivery(owner.id)).state == DONE


# -- event versions and named leases (catch-up sync) ---------------------------------------------


def versioned(source: str, note: str | None = None, **fields) -> NewDelivery:
    from tsrevel.domain.deliveries import event_version

    version = event_version("evt-1", "12/28/2025 12:56 PM")
    return attrs_evolve(new_delivery(**fields), source=source, event_version=version, note=note)


def attrs_evolve(new: NewDelivery, **changes) -> NewDelivery:
    import attrs

    return attrs.evolve(new, **changes)


@pytest.mark.anyio
class TestEventVersions:
    """One delivery per event version between a webhook and the poll, whichever comes first."""

    async def test_a_webhook_then_the_poll_of_the_same_version_make_one_delivery(self, store):
        hook, created = await store.add_delivery(versioned("webhook"))
        assert created and hook.source == "webhook"
        polled, created = await store.add_delivery(versioned("catchup", body=b'{"other": "body"}'))
        assert not created and polled.id == hook.id
        assert await store.count_by_state() == {QUEUED: 1}

    async def test_the_poll_then_a_webhook_of_the_same_version_make_one_delivery(self, store):
        polled, created = await store.add_delivery(versioned("catchup", note="found by the catch-up poll"))
        assert created and polled.source == "catchup"
        assert polled.timeline[0].note == "found by the catch-up poll"
        hook, created = await store.add_delivery(versioned("webhook", body=b'{"other": "body"}'))
        assert not created and hook.id == polled.id

    async def test_two_webhooks_of_one_version_keep_the_body_hash_rule(self, store):
        first, _ = await store.add_delivery(versioned("webhook"))
        second, created = await store.add_delivery(versioned("webhook", body=b'{"status": "change"}'))
        assert created and second.id != first.id

    async def test_a_sync_always_stores_and_a_later_poll_of_its_version_does_not(self, store):
        hook, _ = await store.add_delivery(versioned("webhook"))
        synced, created = await store.add_delivery(versioned("sync"))
        assert created and synced.id != hook.id and synced.source == "sync"
        _, created = await store.add_delivery(versioned("catchup"))
        assert not created

    async def test_a_new_version_is_a_new_delivery(self, store):
        await store.add_delivery(versioned("webhook"))
        newer = attrs_evolve(new_delivery(), source="catchup", event_version="evt-1@12/29/2025 9:00 AM")
        assert not await store.version_seen("evt-1@12/29/2025 9:00 AM")
        _, created = await store.add_delivery(newer)
        assert created
        assert await store.version_seen("evt-1@12/29/2025 9:00 AM")

    async def test_version_seen_answers_what_was_stored(self, store):
        assert not await store.version_seen("evt-1@12/28/2025 12:56 PM")
        await store.add_delivery(versioned("webhook"))
        assert await store.version_seen("evt-1@12/28/2025 12:56 PM")

    async def test_pruning_forgets_versions_first_seen_before_the_cut(self, store):
        await store.add_delivery(versioned("webhook", received_at=T0))
        await store.prune_history(older_than=T0)
        assert await store.version_seen("evt-1@12/28/2025 12:56 PM")
        await store.prune_history(older_than=at(1))
        assert not await store.version_seen("evt-1@12/28/2025 12:56 PM")

    async def test_a_plain_webhook_reads_back_as_a_webhook(self, store):
        assert (await add(store)).source == "webhook"

    async def test_racing_stores_give_one_delivery_per_version(self, backend):
        stores = [await backend() for _ in range(4)]
        outcomes = await asyncio.gather(
            # One webhook and eleven polls of one version, each with its own body, from four stores.
            *(stores[n % 4].add_delivery(versioned("webhook" if n == 5 else "catchup", body=f'{{"n": {n}}}'.encode()))
              for n in range(12))
        )
        assert len({d.id for d, _ in outcomes}) == 1
        assert sum(created for _, created in outcomes) == 1


@pytest.mark.anyio
class TestLeases:
    async def test_one_holder_at_a_time_and_each_take_has_a_newer_token(self, backend):
        one, two = await backend(), await backend()
        first = await one.take_lease("catchup", holder="a", now=T0, until=at(60))
        assert first is not None
        assert await two.take_lease("catchup", holder="b", now=at(30), until=at(90)) is None
        second = await two.take_lease("catchup", holder="b", now=at(61), until=at(120))
        assert second is not None and second > first

    async def test_a_lost_lease_can_neither_be_kept_nor_record_its_result(self, backend):
        one, two = await backend(), await backend()
        stale = await one.take_lease("catchup", holder="a", now=T0, until=at(60))
        fresh = await two.take_lease("catchup", holder="b", now=at(61), until=at(120))
        assert not await one.keep_lease("catchup", token=stale, now=at(62), until=at(200))
        assert not await one.end_lease("catchup", token=stale, now=at(63), value_name="catchup.last", value="stale")
        assert await two.get_value("catchup.last") is None
        assert await two.keep_lease("catchup", token=fresh, now=at(64), until=at(200))
        assert await two.end_lease("catchup", token=fresh, now=at(65), value_name="catchup.last", value="fresh")
        assert await one.get_value("catchup.last") == "fresh"

    async def test_an_ended_lease_is_free_at_once(self, store):
        token = await store.take_lease("catchup", holder="a", now=T0, until=at(600))
        assert await store.end_lease("catchup", token=token, now=at(1), value_name="v", value="x")
        assert await store.take_lease("catchup", holder="b", now=at(2), until=at(60)) is not None

    async def test_racing_takes_hand_the_lease_to_one(self, backend):
        stores = [await backend() for _ in range(4)]
        tokens = await asyncio.gather(*(s.take_lease("catchup", holder=f"h{i}", now=T0, until=at(60)) for i, s in enumerate(stores * 3)))
        assert len([t for t in tokens if t is not None]) == 1


class TestMemoryStore:
    """What the in-memory store promises beyond the contract: ready at once, one database each, atomic across threads."""

    @pytest.mark.anyio
    async def test_a_new_store_is_usable_without_migrate_and_holds_its_own_database(self):
        first, second = MemoryStore(), MemoryStore()
        delivery = await add(first)
        assert (await first.get_delivery(delivery.id)).key == delivery.key
        assert await second.list_deliveries() == []
        await first.close()
        assert await second.count_by_state() == {}

    def test_threads_sharing_one_store_never_interleave_two_operations(self):
        # An app under a test client and a worker thread: each operation is one whole transaction.
        store, threads = MemoryStore(), 4
        claimed: list[list[int]] = [[] for _ in range(threads)]

        async def take_and_claim(mine: list[int]) -> None:
            for _ in range(25):
                await store.add_delivery(new_delivery(event_id=None))
            while (delivery := await store.claim_delivery(now=T0, lease_until=T0 + LEASE)) is not None:
                mine.append(delivery.id)

        workers = [threading.Thread(target=asyncio.run, args=(take_and_claim(mine),)) for mine in claimed]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        ids = sorted(i for mine in claimed for i in mine)
        assert ids == list(range(1, 25 * threads + 1))  # every delivery stored, and claimed exactly once
