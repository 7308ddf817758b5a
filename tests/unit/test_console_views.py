"""The console's reads (console_views) over a Processor on fakes: pages, detail, unmapped items and their TOML."""

from __future__ import annotations

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from tests.helpers import definite, example
from tsrevel.domain import deliveries as st
from tsrevel.entrypoints import console_views as views
from tsrevel.testing import fake_world

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class TestDeliveryPage:
    async def test_pages_go_backwards_from_the_newest_with_a_cursor_until_the_last(self):
        world = fake_world()
        ids = [(await world.deliver(definite())).delivery_id for _ in range(5)]
        first = await views.delivery_page(world.processor, state=None, event_id=None, before=None, size=2)
        assert [r.delivery.id for r in first.rows] == [ids[4], ids[3]] and first.older == ids[3]
        second = await views.delivery_page(world.processor, state=None, event_id=None, before=first.older, size=2)
        assert [r.delivery.id for r in second.rows] == [ids[2], ids[1]]
        last = await views.delivery_page(world.processor, state=None, event_id=None, before=second.older, size=2)
        assert [r.delivery.id for r in last.rows] == [ids[0]] and last.older is None
        assert first.link(before=first.older) == f"before={ids[3]}"

    async def test_the_event_search_and_state_filter_keep_in_the_next_pages_link(self):
        world = fake_world(enable_connector=False)
        await world.deliver(definite(event_id=4242))
        await world.deliver(definite())
        await world.drain()
        page = await views.delivery_page(world.processor, state=st.HELD, event_id="4242", before=None)
        assert [r.delivery.event_id for r in page.rows] == ["4242"]
        assert page.link(before=7) == "state=held&event=4242&before=7"

    async def test_each_row_names_its_location_with_the_mapped_name(self):
        world = fake_world()
        await world.deliver(definite())
        page = await views.delivery_page(world.processor, state=None, event_id=None, before=None)
        assert page.rows[0].location == "201 Tropicana"

    async def test_replay_all_counts_what_it_would_touch_only_for_replayable_states(self):
        world = fake_world(enable_connector=False)
        for _ in range(3):
            await world.deliver(definite())
        await world.drain()
        held = await views.delivery_page(world.processor, state=st.HELD, event_id=None, before=None)
        assert (held.can_replay_all, held.replay_count) == (True, 3)
        done = await views.delivery_page(world.processor, state=st.DONE, event_id=None, before=None)
        assert done.can_replay_all is False


class TestDeliveryDetail:
    async def test_a_done_delivery_shows_its_mapped_order_and_ledger_entry_and_no_buttons(self):
        world = fake_world()
        delivery_id = (await world.deliver(definite(event_id=81))).delivery_id
        await world.drain()
        detail = await views.delivery_detail(world.processor, delivery_id)
        assert detail.delivery.state == st.DONE
        assert (detail.can_replay, detail.can_discard) == (False, False)
        assert detail.order is not None and detail.order.reference == "tripleseat-81"
        facts = dict(detail.order_facts)
        assert facts["local_id"] == "tripleseat-81" and "total" in facts
        names = [name for name, _, _ in detail.order_tables]
        assert names[0] == "items"
        assert detail.emails and detail.emails[0].message.kind == "order_created"

    def test_a_mapped_orders_lists_and_tables_become_tables_and_its_single_values_facts(self):
        from tsrevel.domain.deliveries import Delivery
        from tsrevel.testing import ManualClock

        result = {"total": "10.00", "items": [{"name": "Ring", "price": "2.50"}], "unmapped": ["'Fruit tower'"],
                  "history": {"opened": "2026-01-01T10:00:00", "closed": False}, "payments": []}
        delivery = Delivery(id=1, key="k", body=b"{}", correlation_id="c", received_at=ManualClock().now(), trigger_type=None,
                            event_id=None, state=st.DRY_RUN)
        detail = views.DeliveryDetail(delivery=delivery, location=None, emails=(), order=None, result=result)
        assert detail.order_facts == [("total", "10.00")]
        assert detail.order_tables == [
            ("items", ["name", "price"], [["Ring", "2.50"]]),
            ("unmapped", ["unmapped"], [["'Fruit tower'"]]),
            ("history", ["field", "value"], [["opened", "2026-01-01T10:00:00"], ["closed", False]]),
        ]

    @pytest.mark.parametrize("enable_connector, state", [(False, st.HELD)])
    async def test_the_buttons_follow_the_domains_replayable_and_discardable_states(self, enable_connector, state):
        world = fake_world(enable_connector=enable_connector)
        delivery_id = (await world.deliver(definite())).delivery_id
        await world.drain()
        detail = await views.delivery_detail(world.processor, delivery_id)
        assert detail.delivery.state == state
        assert detail.can_replay == (state in st.REPLAYABLE_STATES)
        assert detail.can_discard == (state in st.DISCARDABLE_STATES)


class TestUnmappedSeen:
    async def test_unmapped_items_are_counted_with_the_toml_lines_that_would_map_them(self):
        world = fake_world()
        first = (await world.deliver(example("unmapped"))).delivery_id
        again = example("unmapped")
        again["object"]["id"] = 55530002
        second = (await world.deliver(again)).delivery_id
        await world.drain()
        found = {u.toml: u for u in await views.unmapped_seen(world.processor)}
        assert set(found) == {'"menu_item:7777" = <Revel product id>', '"Egg bites (dozen)" = <Revel product id>'}
        assert found['"menu_item:7777" = <Revel product id>'].count == 2
        assert found['"menu_item:7777" = <Revel product id>'].delivery_ids == (first, second)
        assert "Fruit tower" in found['"menu_item:7777" = <Revel product id>'].what

    async def test_an_unmapped_location_gives_its_locations_table(self):
        world = fake_world(mapping={"defaults": {"timezone": "America/Los_Angeles"}, "products": {"menu_item:5501": 579}})
        await world.deliver(definite())
        await world.drain()
        [location] = [u for u in await views.unmapped_seen(world.processor) if u.toml.startswith("[")]
        assert location.toml.splitlines()[0] == "[locations.201]"
        assert "revel_establishment = <Revel establishment id>" in location.toml

    async def test_nothing_is_listed_when_the_mapping_covers_everything(self):
        world = fake_world()
        await world.deliver(definite())
        await world.drain()
        assert await views.unmapped_seen(world.processor) == []


@given(hs.text(min_size=1))
def test_toml_string_reads_back_as_the_same_text(text):
    assert tomllib.loads(f"key = {views.toml_string(text)}")["key"] == text


@given(hs.text(min_size=1).filter(lambda t: t.strip()), hs.integers(min_value=0, max_value=2**31))
def test_a_product_line_with_the_id_filled_in_is_valid_toml_for_that_name(name, product_id):
    from tsrevel.domain.orders import UnmappedItem

    line = views.product_line(UnmappedItem(line_item_id="1", menu_item_id=None, display_name=name, document_index=0))
    parsed = tomllib.loads(line.replace(views.PRODUCT_PLACEHOLDER, str(product_id)))
    assert parsed == {name.strip(): product_id}
