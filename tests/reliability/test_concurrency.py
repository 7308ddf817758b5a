"""R1 (50 identical deliveries at once, against the service) and R22 (two workers racing on a stale lease, real SQLite)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from pathlib import Path

import attrs
import pytest

from tests.helpers import body, definite
from tests.reliability.conftest import orders_by_local_id, wait_until
from tsrevel.adapters.fakes import FakeMailer, FakeRevel, ManualClock
from tsrevel.adapters.sqlite_store import SqliteStore
from tsrevel.domain import deliveries as st
from tsrevel.domain.mapping import mapping_from_dict
from tsrevel.domain.orders import OrderRef, RevelOrder
from tsrevel.domain.processing import ProcessingSettings, Processor
from tsrevel.domain.safety import SafetyFlags
from tsrevel.testing import EXAMPLE_MAPPING

pytestmark = pytest.mark.reliability

CONCURRENT = 50


@pytest.mark.e2e
def test_R1_fifty_concurrent_identical_signed_deliveries_make_one_delivery_one_order_one_email(
    start_service, service_env, fake_revel, fake_sendgrid
):
    service = start_service(service_env)
    payload = definite()
    raw = body(payload)
    start = threading.Barrier(CONCURRENT)

    def deliver(_: int):
        start.wait(timeout=30)  # all 50 leave together
        return service.signed_post(raw)

    with concurrent.futures.ThreadPoolExecutor(max_workers=CONCURRENT) as pool:
        answers = list(pool.map(deliver, range(CONCURRENT)))
    assert [a.status_code for a in answers] == [200] * CONCURRENT
    statuses = sorted(a.json()["status"] for a in answers)
    assert statuses == ["accepted"] + ["duplicate"] * (CONCURRENT - 1)
    assert len({a.json()["delivery_id"] for a in answers}) == 1
    delivery_id = answers[0].json()["delivery_id"]

    assert service.admin("GET", "/admin/deliveries").json()["count"] == 1
    service.wait_state(delivery_id, "done")
    wait_until(
        lambda: all(e["state"] == "sent" for e in service.delivery(delivery_id)["emails"]) and fake_sendgrid.mails,
        timeout_s=15, what="the order email",
    )
    assert orders_by_local_id(fake_revel) == {f"tripleseat-{payload['event']['id']}": 1}
    assert len([r for r in fake_revel.requests if r.method == "POST"]) == 1
    assert len(fake_sendgrid.mails) == 1
    assert service.stop() == 0


# ---- R22: a worker stalls past its lease, another takes over --------------------------------


@attrs.define
class GatedRevel:
    """FakeRevel whose first lookup (or first create, after storing the order) waits for a gate: a worker stalling."""

    inner: FakeRevel
    stall_on: str  # "find" (stalls before Revel answers a lookup) or "create" (Revel stored it, the answer stalls)
    gate: asyncio.Event = attrs.field(factory=asyncio.Event)
    stalled: asyncio.Event = attrs.field(factory=asyncio.Event)

    async def find_order(self, establishment_id: int, reference: str, *, correlation_id: str) -> OrderRef | None:
        if self.stall_on == "find" and not self.stalled.is_set():
            self.stalled.set()
            await self.gate.wait()
        return await self.inner.find_order(establishment_id, reference, correlation_id=correlation_id)

    async def create_order(self, order: RevelOrder, *, correlation_id: str) -> OrderRef:
        ref = await self.inner.create_order(order, correlation_id=correlation_id)
        if self.stall_on == "create" and not self.stalled.is_set():
            self.stalled.set()
            await self.gate.wait()
        return ref


def worker(db_path: Path, revel: GatedRevel, clock: ManualClock, mailer: FakeMailer) -> Processor:
    """One worker process: its own SqliteStore (its own connection) on the shared file."""
    return Processor(
        store=SqliteStore(db_path),
        revel=revel,
        mapping=mapping_from_dict(EXAMPLE_MAPPING),
        boot_flags=SafetyFlags(enable_connector=True, dry_run=False),
        settings=ProcessingSettings(lease_s=60.0, email_to=("ops@example.com",)),
        clock=clock,
        mailer=mailer,
        unit_random=lambda: 0.5,
    )


@pytest.fixture
async def racing_workers(tmp_path: Path):
    """A factory of (worker A, worker B, their shared gated Revel, the shared clock) on one SQLite file."""
    clock, mailer = ManualClock(), FakeMailer()
    made: list[tuple[Processor, Processor, GatedRevel]] = []

    def make(stall_on: str) -> tuple[Processor, Processor, GatedRevel, ManualClock]:
        revel = GatedRevel(FakeRevel(clock=clock), stall_on=stall_on)
        a, b = (worker(tmp_path / "shared.db", revel, clock, mailer) for _ in range(2))
        made.append((a, b, revel))
        return a, b, revel, clock

    yield make
    for a, b, revel in made:
        revel.gate.set()  # a test that failed half-way must not leave a worker waiting
        await a.store.close()
        await b.store.close()


@pytest.mark.anyio
@pytest.mark.parametrize("stall_on", ["find", "create"])
async def test_R22_a_worker_stalled_past_its_lease_loses_to_the_one_that_took_over_one_commit_one_order(racing_workers, stall_on):
    a, b, revel, clock = racing_workers(stall_on)
    await a.store.migrate()
    intake = await a.accept(body(definite()), signature=None, correlation_id="r22")

    stalled = asyncio.create_task(a.process_next())  # worker A claims, then stalls in the Revel call
    await asyncio.wait_for(revel.stalled.wait(), timeout=10)
    clock.advance(61)  # A's 60 s lease runs out while it is stuck
    taken = await b.process_next()  # worker B, another connection, takes the delivery over
    assert taken is not None and taken.id == intake.delivery_id
    after_b = await b.store.get_delivery(intake.delivery_id)
    assert after_b.state == st.DONE

    revel.gate.set()  # A wakes up and tries to commit its copy
    await asyncio.wait_for(stalled, timeout=10)
    final = await a.store.get_delivery(intake.delivery_id)
    assert final.state == st.DONE
    assert [e.state for e in final.timeline].count(st.DONE) == 1  # one commit won
    assert len(revel.inner.created) == 1  # one order
    entry = await a.store.get_order(final.event_id)
    assert entry is not None and entry.revel_order_id == next(iter(revel.inner.refs.values())).order_id
    if stall_on == "create":
        # A's create reached Revel before it stalled; B found that order by reference and recorded it.
        assert any(e.note.startswith("found existing Revel order") for e in final.timeline)
    assert len(await a.store.list_emails()) == 1


@pytest.mark.anyio
async def test_R22_an_update_of_the_same_event_racing_a_stalled_worker_still_makes_one_order(racing_workers):
    a, b, revel, clock = racing_workers("find")
    await a.store.migrate()
    first = definite()
    second = definite(first["event"]["id"], description="updated: same order")
    d1 = await a.accept(body(first), signature=None, correlation_id="r22-1")
    stalled = asyncio.create_task(a.process_next())  # A claims delivery 1 and stalls in its lookup
    await asyncio.wait_for(revel.stalled.wait(), timeout=10)
    d2 = await b.accept(body(second), signature=None, correlation_id="r22-2")
    clock.advance(61)  # A's lease on delivery 1 runs out
    while await b.process_next() is not None:  # B takes delivery 1 over, makes the order, then settles delivery 2
        pass
    assert (await b.store.get_delivery(d1.delivery_id)).state == st.DONE
    revel.gate.set()
    await asyncio.wait_for(stalled, timeout=10)  # A's commit is refused: its lease token is stale
    clock.advance(61)
    while await b.process_next() is not None:
        pass
    deliveries = await b.store.list_deliveries()
    assert {d.id for d in deliveries} == {d1.delivery_id, d2.delivery_id}
    assert all(d.state in st.TERMINAL_STATES for d in deliveries), [(d.id, d.state) for d in deliveries]
    assert [e.state for e in (await b.store.get_delivery(d1.delivery_id)).timeline].count(st.DONE) == 1
    assert len(revel.inner.created) == 1
