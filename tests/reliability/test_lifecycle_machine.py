"""A hypothesis state machine over the delivery lifecycle on the fakes harness (R1-R4, R12-R14, R22, R23 together).

Rules deliver new events, re-send bodies, send updates, flip the kill switch and dry run, script
Revel and mailer faults, move the clock and drain, "crash" a worker (it dies at a named crash
point, or claims and walks away, leaving its lease to expire) and replay held, dead, dry-run or
skipped deliveries. Invariants hold after every step:

- at most one Revel order per event (``len(revel.created)`` equals the distinct local_ids);
- no Revel or mailer call while the kill switch is off, and no create while dry run is on;

and at teardown, once everything is switched on, the faults cleared and the world settled,
every delivery is in a terminal state.
"""

from __future__ import annotations

import asyncio
import copy
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, rule

from tests.helpers import definite
from tsrevel.domain import deliveries as ds
from tsrevel.domain.processing import CRASH_POINTS
from tsrevel.testing import Fault, fake_world

pytestmark = pytest.mark.reliability

REVEL_FAULTS = {
    "transient": lambda: Fault.transient(n=2),
    "timeout": lambda: Fault.timeout(),
    "permanent": lambda: Fault.permanent(status=422),
    "create_then_timeout": lambda: Fault.create_then_timeout(),
    "rate_limited": lambda: Fault.rate_limited(30),
    "credentials": lambda: Fault.credentials(),
}
UPDATES = ("same_items", "more_rings", "status_lost", "deleted", "tentative")


class WorkerDied(BaseException):
    """A simulated SIGKILL: a BaseException, so no ``except Exception`` in the code under test catches it."""


class DeliveryLifecycle(RuleBasedStateMachine):
    events = Bundle("events")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.world = fake_world()
        self.enabled, self.dry_run = True, False
        self.calls_when_switched_off: tuple[int, int] | None = None
        self.creates_when_dry: int | None = None

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    # ---- TripleSeat --------------------------------------------------------------------------

    @initialize(target=events)
    def first_event(self) -> dict[str, Any]:
        return self.deliver_new_event()

    @rule(target=events)
    def deliver_new_event(self) -> dict[str, Any]:
        payload = definite()
        self.run(self.world.deliver(payload))
        return payload

    @rule(payload=events)
    def send_the_same_body_again(self, payload: dict[str, Any]) -> None:
        result = self.run(self.world.deliver(payload))
        assert result.status == "duplicate"

    @rule(target=events, payload=events, change=st.sampled_from(UPDATES))
    def send_an_update(self, payload: dict[str, Any], change: str) -> dict[str, Any]:
        update = copy.deepcopy(payload)
        update["webhook_trigger_type"] = "UPDATE_EVENT"
        update["event"]["updated_at"] = f"01/{len(self.world.revel.calls) % 28 + 1:02d}/2026 9:00 AM"
        if change == "more_rings":
            update["event"]["documents"][0]["line_items"][0]["quantity"] = str(int(update["event"]["documents"][0]["line_items"][0]["quantity"]) + 1)
        elif change == "status_lost":
            update["event"]["status"] = "LOST"
        elif change == "deleted":
            update["webhook_trigger_type"] = "DELETE_EVENT"
        elif change == "tentative":
            update["event"]["status"] = "TENTATIVE"
        self.run(self.world.deliver(update))
        return update

    @rule()
    def crash_right_after_storing_a_delivery(self) -> None:
        self.world.processor.crash = _dies_at("after_store")
        try:
            with pytest.raises(WorkerDied):
                self.run(self.world.deliver(definite()))
        finally:
            self.world.processor.crash = _no_crash

    # ---- operators ---------------------------------------------------------------------------

    @rule()
    def flip_the_kill_switch(self) -> None:
        self.enabled = not self.enabled
        self.run(self.world.processor.set_flags(enable_connector=self.enabled, dry_run=None, actor="machine", reason="flip"))
        self.calls_when_switched_off = None if self.enabled else (len(self.world.revel.calls), len(self.world.mailer.calls))

    @rule()
    def flip_dry_run(self) -> None:
        self.dry_run = not self.dry_run
        self.run(self.world.processor.set_flags(enable_connector=None, dry_run=self.dry_run, actor="machine", reason="flip"))
        self.creates_when_dry = self._creates() if self.dry_run else None

    @rule(state=st.sampled_from([ds.HELD, ds.DEAD, ds.DRY_RUN, ds.SKIPPED]))
    def replay(self, state: str) -> None:
        self.run(self.world.processor.replay_state(state, actor="machine", reason="replay"))

    # ---- the far side ------------------------------------------------------------------------

    @rule(kind=st.sampled_from(sorted(REVEL_FAULTS)))
    def revel_fails(self, kind: str) -> None:
        self.world.revel.script(REVEL_FAULTS[kind]())

    @rule(n=st.integers(1, 3))
    def sendgrid_fails(self, n: int) -> None:
        self.world.mailer.script(Fault.transient(n=n))

    # ---- time, workers and crashes -----------------------------------------------------------

    @rule(seconds=st.sampled_from([0, 1, 5, 31, 61, 300]))
    def time_passes_and_workers_drain(self, seconds: int) -> None:
        self.world.clock.advance(seconds)
        self.run(self.world.drain(max_steps=200))

    @rule(point=st.sampled_from([p for p in CRASH_POINTS if p != "after_store"]))
    def a_worker_dies_at(self, point: str) -> None:
        self.world.processor.crash = _dies_at(point)
        try:
            step = self.world.processor.send_next_email() if point.endswith("_email") else self.world.processor.process_next()
            try:
                self.run(step)
            except WorkerDied:
                pass  # its lease (delivery or email) is left to expire
        finally:
            self.world.processor.crash = _no_crash

    @rule()
    def a_worker_claims_and_walks_away(self) -> None:
        now = self.world.clock.now()
        self.run(self.world.store.claim_delivery(now=now, lease_until=now + _lease(self.world)))

    # ---- invariants --------------------------------------------------------------------------

    @invariant()
    def at_most_one_revel_order_per_event(self) -> None:
        local_ids = [o.local_id for o in self.world.revel.created]
        assert len(local_ids) == len(set(local_ids)), f"duplicate orders: {sorted(local_ids)}"

    @invariant()
    def no_outside_call_while_the_kill_switch_is_off(self) -> None:
        if self.calls_when_switched_off is not None:
            assert (len(self.world.revel.calls), len(self.world.mailer.calls)) == self.calls_when_switched_off

    @invariant()
    def no_create_while_dry_run_is_on(self) -> None:
        if self.creates_when_dry is not None:
            assert self._creates() == self.creates_when_dry

    def _creates(self) -> int:
        return sum(1 for c in self.world.revel.calls if c.startswith("create"))

    # ---- the end: everything on, faults cleared, settled -------------------------------------

    def teardown(self) -> None:
        try:
            world = self.world
            # The fakes have no public "forget the script"; their FaultScript does.
            world.revel._faults.clear()
            world.mailer._faults.clear()
            self.run(world.processor.set_flags(enable_connector=True, dry_run=False, actor="machine", reason="teardown"))
            self.run(world.settle(max_rounds=500))
            states = self.run(world.states())
            stuck = {i: s for i, s in states.items() if s not in ds.TERMINAL_STATES}
            assert not stuck, f"deliveries not terminal after settling: {stuck}"
            self.at_most_one_revel_order_per_event()
            # Replaying everything that waits for an operator settles too, still one order per event.
            for state in (ds.HELD, ds.DEAD, ds.DRY_RUN, ds.SKIPPED):
                self.run(world.processor.replay_state(state, actor="machine", reason="teardown"))
            self.run(world.settle(max_rounds=500))
            assert all(s in ds.TERMINAL_STATES for s in self.run(world.states()).values())
            self.at_most_one_revel_order_per_event()
            emails = self.run(world.store.list_emails(limit=100_000))
            assert all(e.state in ("sent", "failed", "unsent") for e in emails), [(e.id, e.state) for e in emails]
        finally:
            self.loop.close()


def _dies_at(point: str):
    def crash(reached: str) -> None:
        if reached == point:
            raise WorkerDied(point)

    return crash


def _no_crash(point: str) -> None:
    pass


def _lease(world: Any) -> timedelta:
    return timedelta(seconds=world.processor.settings.lease_s)


DeliveryLifecycle.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestDeliveryLifecycle = DeliveryLifecycle.TestCase


def test_the_mail_window_a_send_that_succeeds_then_times_out_is_sent_again():
    """The documented window: SendGrid has no idempotency key, so a mail accepted but not acknowledged is sent twice."""
    world = fake_world()
    world.mailer.script(Fault.create_then_timeout())

    async def go() -> None:
        await world.deliver(definite())
        await world.settle()

    asyncio.run(go())
    assert len(world.revel.created) == 1
    assert [m.kind for m in world.mailer.sent] == ["order_created", "order_created"]
