"""Catch-up sync at the service level on fakes (memory store, FakeTripleSeat, FakeRevel), and its pure rules."""

from __future__ import annotations

import copy
import json
import tomllib
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from tests.helpers import definite
from tsrevel.adapters.fakes import Fault, FakeRevel
from tsrevel.domain import catchup
from tsrevel.domain import deliveries as st
from tsrevel.domain.deliveries import duplicate_by_version, event_version
from tsrevel.domain.errors import NotFound
from tsrevel.domain.events import WebhookEnvelope
from tsrevel.entrypoints import mapping_suggest as assist
from tsrevel.testing import fake_world

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def api_event(world: Any, **changes: Any) -> dict[str, Any]:
    """A full event object served by the world's fake TripleSeat, updated at the world's current time."""
    obj = definite(updated_at=world.clock.now().strftime("%m/%d/%Y %I:%M %p"), **changes)["event"]
    world.tripleseat.add_payload(obj)
    return obj


async def poll(world: Any) -> catchup.PollReport:
    report = await catchup.catch_up(world.processor, since=world.clock.now() - timedelta(hours=48), holder="test")
    assert report is not None
    return report


class TestVersions:
    def test_a_version_is_the_id_and_updated_at_with_spacing_and_case_folded(self):
        assert event_version("7", " 12/28/2025  12:56 pm") == event_version("7", "12/28/2025 12:56 PM") == "7@12/28/2025 12:56 PM"
        assert event_version("7", None) is None and event_version(None, "x") is None and event_version("7", "  ") is None

    @given(hs.sampled_from(st.SOURCES))
    def test_a_poll_never_repeats_a_seen_version_and_a_sync_always_stores(self, seen):
        assert duplicate_by_version(st.SOURCE_CATCHUP, seen)
        assert not duplicate_by_version(st.SOURCE_SYNC, seen)

    def test_a_webhook_repeats_only_what_a_poll_or_a_sync_brought(self):
        assert not duplicate_by_version(st.SOURCE_WEBHOOK, st.SOURCE_WEBHOOK)
        assert duplicate_by_version(st.SOURCE_WEBHOOK, st.SOURCE_CATCHUP)
        assert duplicate_by_version(st.SOURCE_WEBHOOK, st.SOURCE_SYNC)

    @given(hs.dictionaries(hs.text(min_size=1, max_size=5), hs.integers() | hs.text(max_size=5), max_size=5))
    def test_the_delivery_body_is_a_webhook_envelope_around_the_event_and_canonical(self, extra):
        obj = {**definite(55)["event"], **{f"x_{k}": v for k, v in extra.items()}}
        body = catchup.webhook_body(obj)
        assert json.loads(body)["event"] == obj
        assert body == catchup.webhook_body(dict(reversed(list(obj.items()))))
        assert WebhookEnvelope.from_json_bytes(body).trigger_type == catchup.SYNC_TRIGGER


class TestPollOnFakes:
    async def test_a_missed_event_is_ordered_once_and_a_second_poll_finds_nothing_new(self):
        world = fake_world()
        obj = api_event(world)
        report = await poll(world)
        assert (report.events_seen, report.deliveries_created, report.errors) == (1, 1, ())
        await world.settle()
        assert [o.local_id for o in world.revel.created] == [f"tripleseat-{obj['id']}"]
        assert (await poll(world)).already_seen == 1
        assert len(world.revel.created) == 1

    async def test_a_webhook_then_the_poll_then_a_duplicate_webhook_make_one_delivery(self):
        world = fake_world()
        obj = api_event(world)
        hook = await world.deliver({"webhook_trigger_type": "UPDATE_EVENT", "event": obj})
        assert (await poll(world)).deliveries_created == 0
        assert world.tripleseat.fetched == []  # seen versions are not even fetched
        await world.settle()
        assert [d.id for d in await world.store.list_deliveries(event_id=str(obj["id"]))] == [hook.delivery_id]

    async def test_a_delete_webhook_does_not_stand_for_a_version(self):
        world = fake_world()
        obj = api_event(world)
        await world.deliver({"webhook_trigger_type": "DELETE_EVENT", "event": obj})
        assert (await poll(world)).deliveries_created == 1

    async def test_a_fetch_failure_is_an_error_of_the_pass_and_the_next_pass_retries(self):
        world = fake_world()
        api_event(world)
        world.tripleseat.script(Fault.transient(on="fetch"))
        first = await poll(world)
        assert first.deliveries_created == 0 and len(first.errors) == 1 and "HTTP 503" in first.errors[0]
        assert (await poll(world)).deliveries_created == 1

    async def test_a_search_failure_is_recorded_and_the_report_is_kept(self):
        world = fake_world()
        world.tripleseat.script(Fault.transient(on="search"))
        report = await poll(world)
        assert report.errors and await catchup.last_poll(world.processor) == report

    async def test_a_replica_holding_the_lease_makes_the_other_stand_down(self):
        world = fake_world()
        now = world.clock.now()
        assert await world.store.take_lease(catchup.POLL_LEASE, holder="other", now=now, until=now + timedelta(seconds=60)) is not None
        assert await catchup.catch_up(world.processor, since=now, holder="me") is None
        world.clock.advance(61)
        assert await catchup.catch_up(world.processor, since=now, holder="me") is not None

    async def test_the_scheduled_poll_skips_its_turn_when_any_replica_polled_within_the_interval(self):
        world = fake_world()
        api_event(world)
        assert await catchup.scheduled_poll(world.processor, holder="a", interval_s=900, lookback_h=48) is not None
        world.clock.advance(60)
        assert await catchup.scheduled_poll(world.processor, holder="b", interval_s=900, lookback_h=48) is None
        world.clock.advance(900)
        assert await catchup.scheduled_poll(world.processor, holder="b", interval_s=900, lookback_h=48) is not None

    async def test_dry_run_rehearses_a_polled_event_without_using_its_order_slot(self):
        world = fake_world(dry_run=True)
        api_event(world)
        await poll(world)
        await world.settle()
        assert world.revel.calls == [] and await world.store.count_by_state() == {st.DRY_RUN: 1}


class TestSyncOnFakes:
    async def test_a_synced_event_goes_the_webhooks_way_and_is_audited(self):
        world = fake_world(enable_connector=False)
        obj = api_event(world)
        result = await catchup.sync_event(world.processor, str(obj["id"]), actor="ana", reason="missing")
        await world.settle()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert (delivery.source, delivery.state) == (st.SOURCE_SYNC, st.HELD)  # the kill switch holds it
        assert (await world.store.list_audit())[0].action == "sync"

    async def test_an_unknown_or_malformed_event_id_is_refused(self):
        world = fake_world()
        with pytest.raises(NotFound, match="TripleSeat has no event 5"):
            await catchup.sync_event(world.processor, "5", actor="a", reason="r")
        with pytest.raises(Exception, match="is not a TripleSeat event id"):
            await catchup.sync_event(world.processor, "../5", actor="a", reason="r")


PRODUCTS = [
    assist.Product(product_id=579, name="OG - Glazed raised ring", establishment_id=4),
    assist.Product(product_id=590, name="Cold brew, 96 oz box", establishment_id=4),
    assist.Product(product_id=601, name="Assorted pastry platter", establishment_id=4),
    assist.Product(product_id=702, name="Bagel", establishment_id=4),
]


class TestSuggest:
    def test_misspelt_and_recased_names_get_the_right_product_and_an_unrelated_one_gets_none(self):
        items = [assist.ItemSeen(name=n) for n in ("og - glazd raised rng", "COLD BREW 96 OZ BOX", "Unicorn tacos")]
        ring, brew, tacos = assist.suggest(items, PRODUCTS)
        assert ring.proposal is not None and ring.proposal.product.product_id == 579
        assert brew.proposal is not None and brew.proposal.product.product_id == 590
        assert tacos.proposal is None and "80" in (tacos.why_none or "")
        assert len(ring.candidates) == 3  # the proposal and the two next

    def test_two_products_scoring_alike_make_no_proposal(self):
        twins = [*PRODUCTS, assist.Product(product_id=703, name="Bagel", establishment_id=5)]
        [bagel] = assist.suggest([assist.ItemSeen(name="bagel")], twins)
        assert bagel.proposal is None and "within" in (bagel.why_none or "")

    def test_the_fragment_is_toml_with_menu_item_keys_and_commented_scores(self):
        items = [assist.ItemSeen(name="og - glazd raised rng", menu_item_id="5599", waiting=2, locations=("201",)), assist.ItemSeen(name="x \"y\"")]
        text = assist.render_toml(assist.suggest(items, PRODUCTS), table="products", min_score=80, establishments=[4], now=fake_world().clock.now())
        assert tomllib.loads(text) == {"products": {"menu_item:5599": 579}}
        assert "2 deliveries waiting, seen at 201" in text and "95.0" in text

    def test_names_already_mapped_are_not_proposed_again(self):
        world = fake_world()
        items = assist.items_to_map([], {"OG - Glazed raised ring": None, "Brand new thing": None, "x": "5501"}, world.processor.mapping)
        assert [i.name for i in items] == ["Brand new thing"]


class TestFakes:
    async def test_the_fake_revel_lists_each_establishments_products(self):
        revel = FakeRevel(products={4: [(1, "A")], 5: [(2, "B")]})
        assert await revel.list_products(4) == [(1, "A")] and await revel.list_products(9) == []

    async def test_the_fake_tripleseat_searches_by_day_and_answers_partly(self):
        world = fake_world()
        obj = api_event(world)
        old = copy.deepcopy(obj)
        old.update(id=obj["id"] + 1, updated_at="01/01/2020 9:00 AM")
        world.tripleseat.add_payload(old)
        found = await world.tripleseat.search_events(updated_since=world.clock.now().date(), correlation_id="c")
        assert [e["id"] for e in found] == [obj["id"]] and "documents" not in found[0]


class TestSettings:
    def test_the_poll_runs_only_with_a_period_and_the_tripleseat_api(self):
        from tsrevel.entrypoints.settings import Settings
        from tsrevel.entrypoints.worker import catch_up_options

        processor = fake_world().processor
        api = {"tripleseat_client_id": "id", "tripleseat_client_secret": "secret"}
        assert catch_up_options(processor, Settings(**api))["catch_up_interval_s"] == 900.0
        assert catch_up_options(processor, Settings(catchup_interval_s=0, **api)) == {}
        assert catch_up_options(processor, Settings()) == {}

    def test_the_two_variables_are_read_and_bad_values_refused(self):
        from tsrevel.domain.errors import ConfigError
        from tsrevel.entrypoints.settings import Settings

        read = Settings.from_env({"TSREVEL_CATCHUP_INTERVAL_S": "0", "TSREVEL_CATCHUP_LOOKBACK_H": "72"})
        assert (read.catchup_interval_s, read.catchup_lookback_h) == (0.0, 72.0)
        assert (Settings.from_env({}).catchup_interval_s, Settings.from_env({}).catchup_lookback_h) == (900.0, 48.0)
        with pytest.raises(ConfigError, match="TSREVEL_CATCHUP_INTERVAL_S"):
            Settings.from_env({"TSREVEL_CATCHUP_INTERVAL_S": "-1"})
        with pytest.raises(ConfigError, match="TSREVEL_CATCHUP_LOOKBACK_H"):
            Settings.from_env({"TSREVEL_CATCHUP_LOOKBACK_H": "soon"})
