"""The optional order window (ORDER_WINDOW_HOURS): the pure arithmetic, the setting, and deferral at the service level."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import attrs
import pytest

from tests.helpers import definite
from tsrevel.adapters.fakes import ManualClock
from tsrevel.adapters.sqlite_store import SqliteStore
from tsrevel.domain import deliveries as st
from tsrevel.domain.errors import ConfigError
from tsrevel.domain.events import TripleSeatEvent
from tsrevel.domain.processing import ProcessingSettings, Processor
from tsrevel.domain.retry import RetryPolicy
from tsrevel.domain.safety import SafetyFlags
from tsrevel.domain.window import DEFERRED_NOTE_PREFIX, defer_until, deferred_note, event_start, window_opens_at
from tsrevel.entrypoints.container import processing_settings
from tsrevel.entrypoints.settings import Settings
from tsrevel.testing import EXAMPLE_MAPPING, FakeRevel, FakeTripleSeat, fake_world
from tsrevel.domain.mapping import mapping_from_dict

UTC = timezone.utc
LA = "America/Los_Angeles"
# The example event starts 12/28/2025 6:00 PM in Los Angeles = 2025-12-29T02:00:00Z.
START = datetime(2025, 12, 29, 2, 0, tzinfo=UTC)
WEEKS_BEFORE = datetime(2025, 12, 1, 12, 0, tzinfo=UTC)


def event(**fields: object) -> TripleSeatEvent:
    return TripleSeatEvent.from_payload({"id": 1, **fields})


class TestWhenTheWindowOpens:
    def test_it_opens_the_window_length_before_the_utc_start(self):
        opens = window_opens_at(event(event_start_utc="2025-12-29T02:00:00Z"), window_hours=48, site_zone=LA)
        assert opens == datetime(2025, 12, 27, 2, 0, tzinfo=UTC)

    def test_a_site_local_start_is_read_in_the_site_zone(self):
        # 6:00 PM in Los Angeles in December is 02:00 UTC the next day (UTC-8).
        start = event_start(event(event_start="12/28/2025 6:00 PM"), site_zone=LA)
        assert start == START
        summer = event_start(event(event_start="07/04/2026 6:00 PM"), site_zone=LA)
        assert summer == datetime(2026, 7, 5, 1, 0, tzinfo=UTC)  # UTC-7 in summer

    def test_the_utc_start_wins_over_the_local_one(self):
        both = event(event_start="12/28/2025 6:00 PM", event_start_utc="2025-12-29T05:00:00Z")
        assert event_start(both, site_zone=LA) == datetime(2025, 12, 29, 5, 0, tzinfo=UTC)

    def test_fractional_hours_are_allowed(self):
        opens = window_opens_at(event(event_start_utc="2025-12-29T02:00:00Z"), window_hours=1.5, site_zone=LA)
        assert opens == datetime(2025, 12, 29, 0, 30, tzinfo=UTC)

    def test_no_window_or_no_start_means_no_opening_time(self):
        assert window_opens_at(event(event_start_utc="2025-12-29T02:00:00Z"), window_hours=None, site_zone=LA) is None
        assert window_opens_at(event(), window_hours=48, site_zone=LA) is None

    def test_defer_until_answers_only_for_events_beyond_the_window(self):
        far = event(event_start_utc="2025-12-29T02:00:00Z")
        assert defer_until(far, now=WEEKS_BEFORE, window_hours=48, site_zone=LA) == datetime(2025, 12, 27, 2, 0, tzinfo=UTC)
        inside = datetime(2025, 12, 28, 0, 0, tzinfo=UTC)
        assert defer_until(far, now=inside, window_hours=48, site_zone=LA) is None
        exactly = datetime(2025, 12, 27, 2, 0, tzinfo=UTC)
        assert defer_until(far, now=exactly, window_hours=48, site_zone=LA) is None  # open at its first instant
        assert defer_until(far, now=START + timedelta(days=3), window_hours=48, site_zone=LA) is None  # already past

    def test_the_note_names_the_opening_time_in_utc(self):
        note = deferred_note(datetime(2025, 12, 26, 18, 0, tzinfo=timezone(timedelta(hours=-8))), 48)
        assert note == f"{DEFERRED_NOTE_PREFIX}2025-12-27T02:00:00+00:00 (48 h before the event starts)"


class TestSetting:
    def test_it_is_off_by_default(self):
        assert Settings.from_env({}).order_window_hours is None
        assert Settings().order_window_hours is None

    def test_hours_are_read_from_the_environment_and_reach_the_processor(self):
        settings = Settings.from_env({"ORDER_WINDOW_HOURS": "72"})
        assert settings.order_window_hours == 72.0
        assert processing_settings(settings).order_window_hours == 72.0
        assert ("ORDER_WINDOW_HOURS", "72.0") in settings.describe()

    @pytest.mark.parametrize("value", ["0", "-5", "abc", "nan"])
    def test_a_bad_value_stops_start_up_naming_the_variable(self, value):
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({"ORDER_WINDOW_HOURS": value})
        assert str(caught.value).startswith("ORDER_WINDOW_HOURS: ")


def windowed_world(hours: float = 48, *, now: datetime = WEEKS_BEFORE, api: bool = False, **kwargs: object):
    world = fake_world(dry_run=False, **kwargs)  # type: ignore[arg-type]
    world.processor.settings = attrs.evolve(world.processor.settings, order_window_hours=hours)
    if not api:
        world.processor.events = None
    world.clock.set(now)
    return world


@pytest.mark.anyio
class TestDeferral:
    async def test_an_event_beyond_the_window_waits_as_retrying_with_a_note_and_no_outside_call(self):
        world = windowed_world()
        result = await world.deliver(definite())
        await world.drain()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.state == st.RETRYING
        assert delivery.next_attempt_at == datetime(2025, 12, 27, 2, 0, tzinfo=UTC)
        assert delivery.attempts == 0 and delivery.last_error is None  # deferral is not a failure
        assert delivery.timeline[-1].note.startswith(DEFERRED_NOTE_PREFIX + "2025-12-27T02:00:00+00:00")
        assert world.revel.calls == [] and world.mailer.calls == []
        assert await world.store.list_emails(delivery_id=result.delivery_id) == []

    async def test_it_is_ordered_by_the_normal_worker_once_the_window_opens(self):
        world = windowed_world()
        result = await world.deliver(definite())
        await world.drain()
        world.clock.set(datetime(2025, 12, 27, 1, 59, tzinfo=UTC))
        await world.drain()
        assert world.revel.calls == []  # one minute early: still waiting
        world.clock.set(datetime(2025, 12, 27, 2, 0, tzinfo=UTC))
        await world.drain()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.state == st.DONE and len(world.revel.created) == 1
        assert [m.kind for m in world.mailer.sent] == ["order_created"]

    async def test_an_event_inside_the_window_or_in_the_past_is_ordered_at_once(self):
        world = windowed_world(now=datetime(2025, 12, 28, 12, 0, tzinfo=UTC))
        await world.deliver(definite())
        world.clock.set(datetime(2026, 3, 1, tzinfo=UTC))
        await world.deliver(definite())
        await world.drain()
        assert len(world.revel.created) == 2

    async def test_an_event_without_a_start_time_is_not_deferred(self):
        world = windowed_world()
        payload = definite()
        for key in ("event_start", "event_end", "event_start_utc", "event_end_utc", "event_start_iso8601"):
            payload["event"].pop(key, None)
        result = await world.deliver(payload)
        await world.drain()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DONE

    async def test_without_a_window_nothing_is_deferred(self):
        world = fake_world(dry_run=False)
        world.clock.set(WEEKS_BEFORE)
        result = await world.deliver(definite())
        await world.drain()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DONE

    async def test_deferral_uses_no_attempt_so_the_retry_budget_is_intact_when_the_window_opens(self):
        world = windowed_world()
        world.processor.settings = attrs.evolve(world.processor.settings, retry=RetryPolicy(max_attempts=2, base_s=1, cap_s=1))
        result = await world.deliver(definite())
        for _ in range(3):  # re-claimed early by nobody: drains before the window change nothing
            await world.drain()
        world.clock.set(datetime(2025, 12, 27, 2, 0, tzinfo=UTC))
        from tsrevel.testing import Fault

        world.revel.script(Fault.transient(n=1))
        await world.settle()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.state == st.DONE and delivery.attempts == 1

    async def test_the_kill_switch_still_holds_a_deferred_delivery_when_it_comes_due(self):
        world = windowed_world()
        result = await world.deliver(definite())
        await world.drain()
        await world.processor.set_flags(enable_connector=False, dry_run=None, actor="test", reason="incident")
        world.clock.set(datetime(2025, 12, 27, 2, 0, tzinfo=UTC))
        await world.drain()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.HELD
        assert world.revel.calls == []

    async def test_dry_run_defers_too_and_rehearses_when_the_window_opens(self):
        world = windowed_world()
        await world.processor.set_flags(enable_connector=None, dry_run=True, actor="test", reason="rehearsal")
        result = await world.deliver(definite())
        await world.drain()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.RETRYING
        world.clock.set(datetime(2025, 12, 27, 2, 0, tzinfo=UTC))
        await world.drain()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DRY_RUN
        assert world.revel.calls == []

    async def test_an_event_lost_while_deferred_is_never_ordered(self):
        world = windowed_world()
        payload = definite()
        first = await world.deliver(payload)
        await world.drain()
        lost = definite(payload["event"]["id"], status="LOST")
        lost_result = await world.deliver(lost)
        await world.drain()
        assert (await world.store.get_delivery(lost_result.delivery_id)).state == st.IGNORED
        world.clock.set(datetime(2025, 12, 27, 2, 0, tzinfo=UTC))
        await world.drain()
        delivery = await world.store.get_delivery(first.delivery_id)
        assert delivery.state == st.IGNORED
        assert "marked LOST by a later delivery" in delivery.timeline[-1].note
        assert world.revel.calls == []

    async def test_with_the_api_the_event_is_re_read_when_the_window_opens_and_ordered_as_it_is_then(self):
        world = windowed_world(api=True)
        payload = definite()
        result = await world.deliver(payload)
        await world.drain()
        assert world.tripleseat.fetched == []  # the webhook had its items: nothing fetched while waiting
        grown = definite(payload["event"]["id"], guest_count=55)
        world.tripleseat.add(TripleSeatEvent.from_payload(grown["event"]))
        world.clock.set(datetime(2025, 12, 27, 2, 0, tzinfo=UTC))
        await world.drain()
        assert world.tripleseat.fetched == [str(payload["event"]["id"])]
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DONE
        assert world.revel.created[0].guest_count == 55

    async def test_a_re_read_event_no_longer_definite_is_not_ordered(self):
        world = windowed_world(api=True)
        payload = definite()
        result = await world.deliver(payload)
        await world.drain()
        world.tripleseat.add(TripleSeatEvent.from_payload(definite(payload["event"]["id"], status="TENTATIVE")["event"]))
        world.clock.set(datetime(2025, 12, 27, 2, 0, tzinfo=UTC))
        await world.drain()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.state == st.IGNORED and "status TENTATIVE makes no order" in delivery.timeline[-1].note
        assert world.revel.calls == []

    async def test_a_re_read_event_that_moved_later_waits_for_its_new_window(self):
        world = windowed_world(api=True)
        payload = definite()
        result = await world.deliver(payload)
        await world.drain()
        moved = definite(payload["event"]["id"], event_start_utc="2026-01-10T02:00:00Z")
        world.tripleseat.add(TripleSeatEvent.from_payload(moved["event"]))
        world.clock.set(datetime(2025, 12, 27, 2, 0, tzinfo=UTC))
        await world.drain()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.state == st.RETRYING
        assert delivery.next_attempt_at == datetime(2026, 1, 8, 2, 0, tzinfo=UTC)
        assert world.revel.calls == []

    async def test_a_failing_re_read_is_retried_like_any_tripleseat_failure(self):
        from tsrevel.testing import Fault

        world = windowed_world(api=True)
        payload = definite()
        world.tripleseat.add(TripleSeatEvent.from_payload(payload["event"]))
        result = await world.deliver(payload)
        await world.drain()
        world.tripleseat.script(Fault.rate_limited(120))
        opens = datetime(2025, 12, 27, 2, 0, tzinfo=UTC)
        world.clock.set(opens)
        await world.drain()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.state == st.RETRYING and delivery.attempts == 1
        assert delivery.next_attempt_at >= opens + timedelta(seconds=120)
        await world.settle()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DONE


@pytest.mark.anyio
async def test_a_deferred_delivery_survives_a_restart_and_is_ordered_when_its_window_opens(tmp_path: Path):
    """Deferral lives in the database (state retrying, next_attempt_at): a new process picks it up."""
    path = tmp_path / "tsrevel.db"
    mapping = mapping_from_dict(EXAMPLE_MAPPING)
    settings = ProcessingSettings(order_window_hours=48, email_to=("ops@example.com",))

    def processor(store: SqliteStore, clock: ManualClock, revel: FakeRevel) -> Processor:
        return Processor(
            store=store, revel=revel, mapping=mapping, boot_flags=SafetyFlags(dry_run=False),
            settings=settings, clock=clock, events=FakeTripleSeat(), unit_random=lambda: 0.5,
        )

    store = SqliteStore(path)
    await store.migrate()
    first = processor(store, ManualClock(WEEKS_BEFORE), FakeRevel())
    payload = definite()
    result = await first.accept(json.dumps(payload).encode(), signature=None, correlation_id="cid-window")
    await first.process_next()
    assert (await store.get_delivery(result.delivery_id)).state == st.RETRYING
    await store.close()  # the process stops

    store = SqliteStore(path)
    await store.migrate()
    revel = FakeRevel()
    opened = ManualClock(datetime(2025, 12, 27, 2, 0, 1, tzinfo=UTC))
    second = processor(store, opened, revel)
    second.events.add(TripleSeatEvent.from_payload(payload["event"]))  # type: ignore[union-attr]
    try:
        assert await second.process_next() is not None
        delivery = await store.get_delivery(result.delivery_id)
        assert delivery.state == st.DONE and [o.local_id for o in revel.created] == [f"tripleseat-{payload['event']['id']}"]
    finally:
        await store.close()
