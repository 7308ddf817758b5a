"""Issue 11 item 4: a store outage or an unexpected error never kills a healthy delivery on its first try.

Store unavailability leaves the delivery to be retried (rescheduled, or taken again when its lease
runs out), never dead and never a "FAILED: no Revel order" email; a repeated internal error goes
dead only after the usual TSREVEL_MAX_ATTEMPTS. On the memory store with scripted faults, and on
a real SQLite file locked by another connection.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from tests.helpers import definite
from tsrevel.adapters.sqlite_store import SqliteStore
from tsrevel.domain import deliveries as st
from tsrevel.domain.errors import StoreUnavailable
from tsrevel.domain.mapping import mapping_from_dict
from tsrevel.domain.processing import ProcessingSettings, Processor
from tsrevel.domain.retry import RetryPolicy
from tsrevel.domain.safety import SafetyFlags
from tsrevel.testing import EXAMPLE_MAPPING, FakeMailer, FakeRevel, FlakyStore, ManualClock, fake_world

pytestmark = pytest.mark.anyio


def flaky_world():
    world = fake_world()
    flaky = FlakyStore(world.store)
    world.processor.store = flaky
    return world, flaky


async def emails_of(world, delivery_id: int) -> list[str]:
    return [e.message.kind for e in await world.store.list_emails(delivery_id=delivery_id)]


class TestStoreUnavailable:
    async def test_an_outage_after_the_revel_create_leaves_the_delivery_to_be_retried_not_dead(self):
        world, flaky = flaky_world()
        result = await world.deliver(definite())
        flaky.fail("complete_order", "finish")  # the store goes away right after Revel answered
        await world.drain()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.state in st.PENDING_STATES and delivery.state != st.DEAD
        assert "failure" not in await emails_of(world, result.delivery_id)
        assert len(world.revel.created) == 1
        flaky.heal()
        await world.settle()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.state == st.DONE
        assert len(world.revel.created) == 1  # found by reference on the retry, not created twice
        assert await emails_of(world, result.delivery_id) == ["order_created"]

    async def test_a_brief_outage_reschedules_the_delivery_without_spending_an_attempt(self):
        world, flaky = flaky_world()
        result = await world.deliver(definite())
        flaky.fail("reserve_order", times=1)
        await world.drain()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert (delivery.state, delivery.attempts) == (st.RETRYING, 0)
        assert "the store was unavailable (database is locked (scripted))" in delivery.timeline[-1].note
        await world.settle()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DONE
        assert world.mailer.sent and all(m.kind != "failure" for m in world.mailer.sent)

    async def test_a_long_outage_never_makes_a_delivery_dead(self):
        world, flaky = flaky_world()
        result = await world.deliver(definite())
        flaky.fail("reserve_order", "finish", "complete_order", "add_note")  # claims work, every other write fails
        for _ in range(20):
            world.clock.advance(120)  # past the lease: another worker takes it over, and fails the same way
            await world.processor.process_next()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.state == st.PROCESSING and delivery.attempts == 0
        assert await world.store.list_emails() == []
        assert world.revel.created == []

    async def test_the_worker_step_surfaces_a_store_outage_at_claim_time_as_store_unavailable(self):
        world, flaky = flaky_world()
        await world.deliver(definite())
        flaky.fail("claim_delivery", times=1)
        with pytest.raises(StoreUnavailable):
            await world.processor.process_next()
        assert await world.processor.process_next() is not None


class TestInternalErrors:
    async def test_an_internal_error_once_is_retried_and_the_delivery_is_done(self):
        world = fake_world()
        original = world.revel.create_order
        calls = 0

        async def explode_once(order, *, correlation_id):
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("boom")
            return await original(order, correlation_id=correlation_id)

        world.revel.create_order = explode_once  # type: ignore[method-assign]
        result = await world.deliver(definite())
        await world.drain()
        first = await world.store.get_delivery(result.delivery_id)
        assert (first.state, first.attempts) == (st.RETRYING, 1)
        assert "internal error: RuntimeError: boom" in first.last_error
        await world.settle()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DONE
        assert [m.kind for m in world.mailer.sent] == ["order_created"]

    async def test_a_repeated_internal_error_goes_dead_after_max_attempts_not_the_first(self):
        world = fake_world()  # max_attempts=5
        attempts_seen = []

        async def always_explode(order, *, correlation_id):
            attempts_seen.append(order.local_id)
            raise RuntimeError("boom")

        world.revel.create_order = always_explode  # type: ignore[method-assign]
        result = await world.deliver(definite())
        await world.settle()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.state == st.DEAD
        assert delivery.attempts == 5 and len(attempts_seen) == 5
        assert "gave up after 5 attempts" in delivery.last_error
        assert [m.kind for m in world.mailer.sent] == ["failure"]


class TestRealSqliteLocked:
    async def test_a_locked_database_leaves_the_claimed_delivery_for_later_and_it_is_done_after(self, tmp_path: Path):
        path = tmp_path / "tsrevel.db"
        store = SqliteStore(path, busy_timeout_ms=50)
        await store.migrate()
        clock, revel, mailer = ManualClock(), FakeRevel(), FakeMailer()
        processor = Processor(
            store=store, revel=revel, mapping=mapping_from_dict(EXAMPLE_MAPPING), boot_flags=SafetyFlags(dry_run=False),
            settings=ProcessingSettings(retry=RetryPolicy(max_attempts=2), email_to=("ops@example.com",)),
            clock=clock, mailer=mailer, unit_random=lambda: 0.5,
        )
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            result = await processor.accept(json.dumps(definite()).encode(), signature=None, correlation_id="cid-locked")
            now = clock.now()
            claimed = await store.claim_delivery(now=now, lease_until=now.replace(minute=now.minute + 1))
            assert claimed is not None
            blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock past the busy timeout
            await processor.process_claimed(claimed)
            delivery = await store.get_delivery(result.delivery_id)  # reads still work in WAL mode
            assert delivery.state == st.PROCESSING and delivery.attempts == 0
            blocker.execute("ROLLBACK")
            assert await store.list_emails() == []
            clock.advance(120)  # the lease runs out: a worker takes it again
            while await processor.process_next() is not None:
                pass
            delivery = await store.get_delivery(result.delivery_id)
            assert delivery.state == st.DONE and len(revel.created) == 1
            assert [e.message.kind for e in await store.list_emails()] == ["order_created"]
        finally:
            blocker.close()
            await store.close()

    async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(self, tmp_path: Path, caplog):
        path = tmp_path / "tsrevel.db"
        store = SqliteStore(path, busy_timeout_ms=20)
        await store.migrate()
        blocker = sqlite3.connect(path, isolation_level=None)
        caplog.set_level(logging.INFO, logger="tsrevel.store")
        try:
            blocker.execute("BEGIN IMMEDIATE")
            for _ in range(5):
                with pytest.raises(StoreUnavailable, match="locked"):
                    await store.check_writable()
            blocker.execute("ROLLBACK")
            await store.check_writable()
            await store.check_writable()
        finally:
            blocker.close()
            await store.close()
        lines = [r.getMessage() for r in caplog.records if r.name == "tsrevel.store"]
        assert len(lines) == 2, lines
        assert "unavailable: database is locked" in lines[0]
        assert "available again after" in lines[1]
