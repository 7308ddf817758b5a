"""The in-memory fakes behave like the far side and like the real adapters' error classification."""

from __future__ import annotations

import ast
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import attrs
import pytest

from tsrevel.adapters import fake_parts, fake_revel, fakes, flaky_store
from tsrevel.adapters.fakes import Fault, FakeMailer, FakeRevel, FakeTripleSeat, FixedClock, ManualClock
from tsrevel.domain.errors import GatewayError
from tsrevel.domain.events import TripleSeatEvent
from tsrevel.domain.orders import OrderLine, OrderRef, RevelOrder
from tsrevel.domain.ports import EmailMessage, EventSource, Mailer, OrderGateway

START = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
ORDER = RevelOrder(
    event_id="55521609",
    location_id="201",
    location_name="Tropicana",
    establishment_id=4,
    local_id="tripleseat-55521609",
    dining_option=113,
    call_name="Jon Ponder",
    notes="",
    pickup_time=None,
    items=(OrderLine(product_id=579, quantity=Decimal(12), price=Decimal("2.75")),),
)
MESSAGE = EmailMessage(kind="order_created", subject="Order created", text="hello", delivery_id=7, correlation_id="corr-1")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def failure_of(awaitable) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await awaitable
    return caught.value


class TestFakeRevel:
    @pytest.mark.anyio
    async def test_a_created_order_is_found_again_by_its_reference(self):
        revel = FakeRevel()
        ref = await revel.create_order(ORDER, correlation_id="c")
        assert await revel.find_order(4, ORDER.local_id, correlation_id="c") == ref
        assert revel.orders == {ORDER.local_id: ORDER}
        assert revel.created == [ORDER]
        assert revel.lookups == [ORDER.local_id]
        assert revel.calls == [f"create {ORDER.local_id}", f"find {ORDER.local_id}"]
        assert revel.correlation_ids == ["c", "c"]
        assert ref == OrderRef(ref.order_id, f"/resources/Order/{ref.order_id}/")

    @pytest.mark.anyio
    async def test_lookup_is_scoped_to_the_establishment_like_revel(self):
        revel = FakeRevel()
        await revel.create_order(ORDER, correlation_id="c")
        assert await revel.find_order(5, ORDER.local_id, correlation_id="c") is None

    @pytest.mark.anyio
    async def test_a_second_create_is_a_second_order_because_revel_does_not_deduplicate(self):
        revel = FakeRevel()
        first = await revel.create_order(ORDER, correlation_id="c")
        second = await revel.create_order(ORDER, correlation_id="c")
        assert first != second
        assert len(revel.created) == 2 and len(revel.orders) == 1

    @pytest.mark.anyio
    async def test_seeded_orders_are_found_without_a_recorded_call(self):
        revel = FakeRevel()
        ref = revel.seed(ORDER)
        assert revel.calls == []
        assert await revel.find_order(4, ORDER.local_id, correlation_id="c") == ref

    @pytest.mark.anyio
    async def test_faults_are_used_in_order_by_lookups_and_creates_alike(self):
        revel = FakeRevel()
        revel.script(Fault.transient(n=2, status=502), Fault.permanent(status=422, message="bad dining option"))
        lookup = await failure_of(revel.find_order(4, ORDER.local_id, correlation_id="c"))
        create = await failure_of(revel.create_order(ORDER, correlation_id="c"))
        refused = await failure_of(revel.create_order(ORDER, correlation_id="c"))
        assert (lookup.failure.kind, lookup.failure.status, lookup.failure.outcome_unknown) == ("transient", 502, False)
        assert (create.failure.kind, create.failure.outcome_unknown) == ("transient", True)
        assert (refused.failure.kind, refused.failure.status) == ("permanent", 422)
        assert "bad dining option" in str(refused)
        assert revel.created == [] and revel.pending_faults == []
        await revel.create_order(ORDER, correlation_id="c")
        assert len(revel.created) == 1

    @pytest.mark.anyio
    async def test_a_fault_limited_to_creates_lets_lookups_pass_and_waits(self):
        revel = FakeRevel()
        revel.script(Fault.timeout(on="create"))
        assert await revel.find_order(4, ORDER.local_id, correlation_id="c") is None
        error = await failure_of(revel.create_order(ORDER, correlation_id="c"))
        assert error.failure.outcome_unknown and revel.created == []

    @pytest.mark.anyio
    async def test_create_then_timeout_stores_the_order_then_reports_an_unknown_outcome(self):
        revel = FakeRevel()
        revel.script(Fault.create_then_timeout())
        assert await revel.find_order(4, ORDER.local_id, correlation_id="c") is None  # passes the lookup
        error = await failure_of(revel.create_order(ORDER, correlation_id="c"))
        assert error.is_transient and error.failure.outcome_unknown
        assert revel.created == [ORDER]
        assert await revel.find_order(4, ORDER.local_id, correlation_id="c") is not None

    @pytest.mark.anyio
    async def test_rate_limit_asks_to_come_back_after_the_delay_on_the_fakes_clock(self):
        clock = ManualClock(START)
        revel = FakeRevel(clock=clock)
        revel.script(Fault.rate_limited(120))
        error = await failure_of(revel.create_order(ORDER, correlation_id="c"))
        assert error.failure.retry_after == START + timedelta(seconds=120)
        assert error.failure.status == 429 and not error.failure.outcome_unknown

    @pytest.mark.anyio
    async def test_credentials_fault_is_its_own_kind(self):
        revel = FakeRevel()
        revel.script(Fault.credentials(status=403))
        error = await failure_of(revel.find_order(4, "x", correlation_id="c"))
        assert (error.failure.kind, error.failure.status) == ("credentials", 403)

    @pytest.mark.anyio
    async def test_delay_makes_calls_slow(self):
        revel = FakeRevel(delay_s=0.01)
        assert await revel.find_order(4, "x", correlation_id="c") is None

    @pytest.mark.anyio
    async def test_a_delay_set_after_construction_slows_the_next_call(self):
        revel = FakeRevel()
        revel.delay_s = 0.05
        started = time.monotonic()
        await revel.find_order(4, "x", correlation_id="c")
        assert revel.delay_s == 0.05 and time.monotonic() - started >= 0.05


class TestFakeMailer:
    @pytest.mark.anyio
    async def test_sent_messages_are_recorded_with_their_outbox_ids(self):
        mailer = FakeMailer()
        await mailer.send(MESSAGE, outbox_id=3)
        assert mailer.sent == [MESSAGE] and mailer.outbox_ids == [3] and mailer.calls == ["send 3"]

    @pytest.mark.anyio
    async def test_scripted_failures_send_nothing_until_used_up(self):
        mailer = FakeMailer(clock=ManualClock(START))
        mailer.script(Fault.transient(n=2), Fault.rate_limited(300))
        for _ in range(2):
            assert (await failure_of(mailer.send(MESSAGE, outbox_id=1))).is_transient
        limited = await failure_of(mailer.send(MESSAGE, outbox_id=1))
        assert limited.failure.retry_after == START + timedelta(seconds=300)
        await mailer.send(MESSAGE, outbox_id=1)
        assert mailer.sent == [MESSAGE] and len(mailer.calls) == 4

    @pytest.mark.anyio
    async def test_create_then_timeout_delivers_the_mail_and_still_fails(self):
        mailer = FakeMailer()
        mailer.script(Fault.create_then_timeout())
        assert (await failure_of(mailer.send(MESSAGE, outbox_id=1))).is_transient
        assert mailer.sent == [MESSAGE]


class TestFakeTripleSeat:
    @pytest.mark.anyio
    async def test_known_events_are_served_and_every_fetch_recorded(self):
        event = TripleSeatEvent.from_payload({"id": 42, "status": "definite"})
        source = FakeTripleSeat(event)
        assert await source.fetch_event("42", correlation_id="c") == event
        assert source.fetched == ["42"]

    @pytest.mark.anyio
    async def test_an_unknown_event_is_a_permanent_404(self):
        error = await failure_of(FakeTripleSeat().fetch_event("9", correlation_id="c"))
        assert (error.failure.kind, error.failure.status) == ("permanent", 404)

    @pytest.mark.anyio
    async def test_faults_apply_to_fetches(self):
        source = FakeTripleSeat()
        source.add(TripleSeatEvent.from_payload({"id": 1}))
        source.script(Fault.transient())
        assert (await failure_of(source.fetch_event("1", correlation_id="c"))).is_transient
        assert (await source.fetch_event("1", correlation_id="c")).id == "1"
        assert source.fetched == ["1", "1"]


class TestClocks:
    def test_a_manual_clock_stands_still_until_advanced(self):
        clock = ManualClock(START)
        assert clock.now() == clock.now() == START
        assert clock.advance(90) == START + timedelta(seconds=90) == clock.now()
        clock.set(START)
        assert clock.now() == START

    def test_fixed_clock_is_the_same_timezone_aware_clock(self):
        assert FixedClock(START).now().tzinfo is not None
        assert ManualClock().now().utcoffset() == timedelta(0)

    def test_naive_times_are_refused(self):
        with pytest.raises(ValueError):
            ManualClock(datetime(2026, 1, 1))
        with pytest.raises(ValueError):
            ManualClock().set(datetime(2026, 1, 1))


class TestFaultValues:
    def test_faults_are_frozen_values(self):
        fault = Fault.transient(n=2)
        assert fault == Fault.transient(n=2)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            fault.times = 3  # type: ignore[misc]

    def test_create_then_timeout_applies_only_to_side_effects(self):
        fault = Fault.create_then_timeout()
        assert [op for op in ("find", "create", "send", "fetch") if fault.applies_to(op)] == ["create", "send"]


def test_the_fakes_satisfy_the_ports():
    gateway: OrderGateway = FakeRevel()
    mailer: Mailer = FakeMailer()
    source: EventSource = FakeTripleSeat()
    assert gateway and mailer and source


@pytest.mark.parametrize("module", [fakes, fake_parts, fake_revel, flaky_store], ids=lambda m: m.__name__)
def test_the_fakes_module_needs_no_test_framework(module):
    tree = ast.parse(Path(module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not imported & {"pytest", "hypothesis", "unittest"}
