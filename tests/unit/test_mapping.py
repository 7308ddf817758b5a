"""Mapping a TripleSeat event to a Revel order: venues, products, unmapped items, pickup time, the mapping file."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsrevel.domain.errors import ConfigError
from tsrevel.domain.events import TripleSeatEvent
from tsrevel.domain.mapping import (
    MappingConfig,
    MappingFailure,
    map_event,
    mapping_from_dict,
    pickup_time,
)
from tsrevel.domain.orders import RevelOrder
from tsrevel.testing.strategies import event_payloads, mapping_configs, mapping_for

GLAZED = {"id": 1, "quantity": 48, "price": "3.25", "display_name": "OG - Glazed raised ring", "menu_item_id": 5501}
COLD_BREW = {"id": 2, "quantity": 4, "price": 38.5, "display_name": "Cold brew, 96 oz box", "menu_item_id": None}
FRUIT_TOWER = {"id": 3, "quantity": 1, "price": "45", "display_name": "Fruit tower", "menu_item_id": 7777}
EGG_BITES = {"id": 4, "quantity": 2, "price": "19.5", "display_name": "Egg bites (dozen)", "menu_item_id": None}


def config(**overrides: Any) -> MappingConfig:
    data: dict[str, Any] = {
        "defaults": {"timezone": "America/Los_Angeles", "dining_option": 3},
        "locations": {
            "201": {
                "name": "Tropicana",
                "revel_establishment": 4,
                "dining_option": 113,
                "products": {"menu_item:5501": 580},
            },
            "202": {"name": "Harbor Room", "revel_establishment": 5, "timezone": "America/New_York"},
        },
        "sites": {"15691": {"revel_establishment": 9}},
        "products": {"menu_item:5501": 579, "OG - Glazed raised ring": 579, "Cold brew, 96 oz box": 590},
    }
    data.update(overrides)
    return mapping_from_dict(data)


def event(*items: dict[str, Any], location_id: object = 201, site_id: object = 15691, **fields: Any) -> TripleSeatEvent:
    payload: dict[str, Any] = {
        "id": 55521609,
        "name": "Ponder family brunch",
        "status": "DEFINITE",
        "site_id": site_id,
        "location_id": location_id,
        "contact": {"first_name": "Jon", "last_name": "Ponder"},
        "documents": [{"line_items": list(items)}],
    }
    payload.update(fields)
    return TripleSeatEvent.from_payload(payload)


def order_of(result: RevelOrder | MappingFailure) -> RevelOrder:
    assert isinstance(result, RevelOrder), result.describe() if isinstance(result, MappingFailure) else result
    return result


def failure_of(result: RevelOrder | MappingFailure) -> MappingFailure:
    assert isinstance(result, MappingFailure), f"expected a failure, got {result!r}"
    return result


class TestVenue:
    def test_a_location_product_override_wins_over_the_global_product(self) -> None:
        order = order_of(map_event(event(GLAZED, location_id=201), config()))
        assert [line.product_id for line in order.items] == [580]
        assert (order.establishment_id, order.location_name, order.dining_option) == (4, "Tropicana", 113)

    def test_a_location_without_overrides_uses_the_global_products(self) -> None:
        order = order_of(map_event(event(GLAZED, location_id="202"), config()))
        assert [line.product_id for line in order.items] == [579]
        assert (order.establishment_id, order.dining_option) == (5, 3)

    def test_an_unmapped_location_falls_back_to_its_site(self) -> None:
        order = order_of(map_event(event(GLAZED, location_id=999), config()))
        assert (order.establishment_id, order.location_name, order.location_id) == (9, "site 15691", "999")
        assert [line.product_id for line in order.items] == [579]

    def test_an_event_without_a_location_falls_back_to_its_site(self) -> None:
        order = order_of(map_event(event(GLAZED, location_id=None, site_id="15691"), config()))
        assert (order.establishment_id, order.location_id) == (9, None)

    def test_the_order_carries_the_events_reference_and_people(self) -> None:
        order = order_of(map_event(event(GLAZED, guest_count=40, description="Side door"), config()))
        assert order.local_id == "tripleseat-55521609"
        assert order.event_id == "55521609"
        assert order.call_name == "Jon Ponder"
        assert order.notes == "TripleSeat event 55521609: Ponder family brunch; guests: 40; contact: Jon Ponder; Side door"


class TestProductLookup:
    def test_an_item_is_found_by_its_menu_item_id(self) -> None:
        item = GLAZED | {"display_name": "something else entirely"}
        assert order_of(map_event(event(item, location_id=202), config())).items[0].product_id == 579

    @pytest.mark.parametrize("name", ["cold brew, 96 oz box", "  COLD BREW, 96 OZ BOX ", "Cold   brew,\t96 oz box"])
    def test_an_item_is_found_by_display_name_ignoring_case_and_spaces(self, name: str) -> None:
        item = COLD_BREW | {"display_name": name}
        line = order_of(map_event(event(item), config())).items[0]
        assert line.product_id == 590
        assert line.name == name.strip()

    def test_an_unknown_menu_item_id_falls_back_to_the_display_name(self) -> None:
        item = COLD_BREW | {"menu_item_id": 123456}
        assert order_of(map_event(event(item), config())).items[0].product_id == 590

    def test_a_location_name_mapping_wins_over_a_global_menu_item_mapping(self) -> None:
        mapping = config(
            locations={"201": {"revel_establishment": 4, "products": {"og - glazed raised ring": 700}}}
        )
        assert order_of(map_event(event(GLAZED), mapping)).items[0].product_id == 700

    def test_a_mapped_line_keeps_quantity_price_and_description(self) -> None:
        item = COLD_BREW | {"description": "  oat milk on the side "}
        line = order_of(map_event(event(item), config())).items[0]
        assert (line.quantity, line.price, line.special_request, line.source_line_id) == (
            Decimal("4"),
            Decimal("38.5"),
            "oat milk on the side",
            "2",
        )


class TestUnmappedItems:
    def test_a_failure_lists_every_unmapped_item_and_the_missing_location_at_once(self) -> None:
        result = map_event(event(GLAZED, FRUIT_TOWER, COLD_BREW, EGG_BITES, location_id=404, site_id=505), config())
        failure = failure_of(result)
        assert failure.missing_location is not None
        assert "location 404 (site 505)" in failure.missing_location
        assert [(u.line_item_id, u.menu_item_id, u.display_name) for u in failure.unmapped] == [
            ("3", "7777", "Fruit tower"),
            ("4", None, "Egg bites (dozen)"),
        ]
        text = failure.describe()
        assert text.startswith("event 55521609: ")
        for expected in (
            "location 404",
            "2 unmapped item(s)",
            "'Fruit tower' menu_item:7777 line item 3",
            "'Egg bites (dozen)' line item 4",
        ):
            assert expected in text

    def test_by_default_one_unmapped_item_fails_the_whole_order(self) -> None:
        failure = failure_of(map_event(event(GLAZED, EGG_BITES), config()))
        assert failure.missing_location is None
        assert [u.line_item_id for u in failure.unmapped] == ["4"]

    def test_skip_maps_what_it_can_and_reports_the_rest_on_the_order(self) -> None:
        order = order_of(map_event(event(GLAZED, FRUIT_TOWER, COLD_BREW, EGG_BITES), config(), unmapped="skip"))
        assert [line.source_line_id for line in order.items] == ["1", "2"]
        assert [u.line_item_id for u in order.unmapped] == ["3", "4"]
        assert order.to_snapshot()["unmapped"] == [
            "'Fruit tower' menu_item:7777 line item 3",
            "'Egg bites (dozen)' line item 4",
        ]

    def test_skip_still_fails_when_nothing_can_be_mapped(self) -> None:
        failure = failure_of(map_event(event(FRUIT_TOWER, EGG_BITES), config(), unmapped="skip"))
        assert failure.problems == ("no line item could be mapped to a Revel product",)
        assert len(failure.unmapped) == 2

    def test_skip_still_fails_on_a_missing_location(self) -> None:
        failure = failure_of(map_event(event(GLAZED, location_id=404, site_id=505), config(), unmapped="skip"))
        assert failure.missing_location is not None
        assert failure.unmapped == ()

    @pytest.mark.parametrize("documents", [[], [{"line_items": []}], None])
    def test_an_event_without_line_items_is_a_failure(self, documents: object) -> None:
        source = event(GLAZED)
        payload = {"id": source.id, "location_id": 201, "documents": documents}
        failure = failure_of(map_event(TripleSeatEvent.from_payload(payload), config(), unmapped="skip"))
        assert failure.problems == ("the event has no line items (is include_event_financials on?)",)


class TestPickupTime:
    @pytest.mark.parametrize(
        ("location_id", "store_time"), [(201, datetime(2025, 12, 28, 18, 0)), (202, datetime(2025, 12, 28, 21, 0))]
    )
    def test_utc_start_is_converted_to_the_store_zone(self, location_id: int, store_time: datetime) -> None:
        # The (deliberately inconsistent) local time is ignored when the UTC instant is known.
        utc_event = event(
            GLAZED, location_id=location_id, event_start_utc="2025-12-29T02:00:00Z", event_start="12/28/2025 9:00 AM"
        )
        assert order_of(map_event(utc_event, config())).pickup_time == store_time

    def test_the_iso_start_counts_as_utc(self) -> None:
        iso_event = event(GLAZED, location_id=202, event_start_iso8601="2025-07-04T18:00:00-07:00")
        assert order_of(map_event(iso_event, config())).pickup_time == datetime(2025, 7, 4, 21, 0)

    def test_local_start_is_used_as_is_when_site_and_store_share_a_zone(self) -> None:
        local_event = event(GLAZED, event_start="12/28/2025 6:00 PM")
        pickup = order_of(map_event(local_event, config())).pickup_time
        assert pickup == datetime(2025, 12, 28, 18, 0)
        assert pickup is not None and pickup.tzinfo is None

    def test_local_start_is_moved_from_the_site_zone_to_the_store_zone(self) -> None:
        local_event = event(GLAZED, location_id=202, event_start="07/04/2025 6:00 PM")
        assert order_of(map_event(local_event, config())).pickup_time == datetime(2025, 7, 4, 21, 0)

    def test_pickup_time_reads_the_local_time_in_the_site_zone(self) -> None:
        local_event = event(GLAZED, event_start="01/09/2026 11:30 AM")
        london_to_chicago = pickup_time(local_event, site_zone="Europe/London", store_zone="America/Chicago")
        assert london_to_chicago == datetime(2026, 1, 9, 5, 30)
        assert pickup_time(local_event, site_zone="UTC", store_zone="UTC") == datetime(2026, 1, 9, 11, 30)

    def test_an_event_without_a_start_has_no_pickup_time(self) -> None:
        assert order_of(map_event(event(GLAZED), config())).pickup_time is None


def mapping_dict(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "defaults": {"timezone": "America/Los_Angeles", "dining_option": 3},
        "locations": {"201": {"name": "Tropicana", "revel_establishment": 4}},
        "products": {"menu_item:5501": 579},
    }
    data.update(changes)
    return data


def config_error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as caught:
        mapping_from_dict(data)
    return str(caught.value)


class TestMappingFile:
    def test_an_empty_file_gives_the_defaults(self) -> None:
        mapping = mapping_from_dict({})
        assert (mapping.timezone, mapping.dining_option, dict(mapping.locations), dict(mapping.sites)) == (
            "America/Los_Angeles",
            3,
            {},
            {},
        )

    def test_ids_and_names_are_normalised(self) -> None:
        mapping = mapping_from_dict(
            mapping_dict(
                locations={" 0201": {"revel_establishment": 4}},
                products={"menu_item: 05501 ": 579, " Fruit  TOWER ": 12},
            )
        )
        assert set(mapping.locations) == {"201"}
        assert dict(mapping.products.by_menu_item) == {"5501": 579}
        assert dict(mapping.products.by_name) == {"fruit tower": 12}

    def test_a_location_inherits_the_default_zone_and_dining_option(self) -> None:
        venue = mapping_from_dict(mapping_dict()).locations["201"]
        assert (venue.timezone, venue.dining_option, venue.key) == ("America/Los_Angeles", 3, "location 201")

    @pytest.mark.parametrize(
        ("data", "message"),
        [
            (mapping_dict(colour="blue"), "colour: unknown key (allowed here: billing, defaults, invoice, locations, products, sites)"),
            (mapping_dict(defaults={"tz": "UTC"}), "defaults.tz: unknown key"),
            (
                mapping_dict(locations={"201": {"revel_establishment": 4, "establishment": 4}}),
                "locations.201.establishment: unknown key",
            ),
            (mapping_dict(products={"menu_item:5501": "579"}), "products.'menu_item:5501': '579' is not an integer id"),
            (mapping_dict(products={"Fruit tower": 12.5}), "products.'Fruit tower': 12.5 is not an integer id"),
            (mapping_dict(products={"Fruit tower": True}), "products.'Fruit tower': True is not an integer id"),
            (mapping_dict(products={"Fruit tower": -1}), "products.'Fruit tower': -1 is negative"),
            (
                mapping_dict(locations={"201": {"revel_establishment": "four"}}),
                "locations.201.revel_establishment: 'four' is not an integer id",
            ),
            (
                mapping_dict(locations={"201": {"revel_establishment": 4, "dining_option": "113"}}),
                "locations.201.dining_option: '113' is not an integer id",
            ),
            (
                mapping_dict(locations={"201": {"revel_establishment": 4, "products": {"menu_item:1": None}}}),
                "locations.201.products.'menu_item:1': None is not an integer id",
            ),
            (
                mapping_dict(defaults={"timezone": "Mars/Olympus"}),
                "defaults.timezone: 'Mars/Olympus' is not an IANA time zone name",
            ),
            (
                mapping_dict(locations={"201": {"revel_establishment": 4, "timezone": "PST8PDT "}}),
                "locations.201.timezone: 'PST8PDT ' is not an IANA time zone name",
            ),
            (mapping_dict(defaults={"timezone": "../etc"}), "defaults.timezone: '../etc' is not an IANA time zone name"),
            (
                mapping_dict(locations={"201": {"name": "Tropicana"}}),
                "locations.201.revel_establishment: missing (the Revel establishment id)",
            ),
            (mapping_dict(sites={"15691": {}}), "sites.15691.revel_establishment: missing"),
            (mapping_dict(locations={"tropicana": {"revel_establishment": 4}}), "locations.tropicana: the key must be"),
            (mapping_dict(locations={"²": {"revel_establishment": 4}}), "locations.²: the key must be a TripleSeat id"),
            (mapping_dict(locations=[201]), "locations: expected a table, got list"),
            (mapping_dict(products={"menu_item:": 5}), "products.'menu_item:': 'menu_item:' needs a menu item id"),
            (mapping_dict(products={"   ": 5}), "products.'   ': an empty product name"),
            (
                mapping_dict(products={"Fruit tower": 5, "FRUIT TOWER": 6}),
                "products.'FRUIT TOWER': the name is mapped twice, to different products",
            ),
        ],
    )
    def test_a_bad_mapping_file_names_the_key_and_the_problem(self, data: dict[str, Any], message: str) -> None:
        assert config_error(data).startswith(message)

    def test_a_menu_item_key_with_non_ascii_digits_is_kept_as_text(self) -> None:
        mapping = mapping_from_dict(mapping_dict(products={"menu_item:²": 5}))
        assert dict(mapping.products.by_menu_item) == {"²": 5}


def _event(payload: dict[str, Any]) -> TripleSeatEvent:
    # Through JSON, as the service sees it: floats become Decimals on the way in.
    return TripleSeatEvent.from_payload(json.loads(json.dumps(payload), parse_float=Decimal))


class TestMappingProperties:
    @given(event_payloads(), st.data())
    def test_a_skip_mode_order_keeps_every_mapped_line_exactly_and_never_an_unmapped_one(
        self, payload: dict[str, Any], data: st.DataObject
    ) -> None:
        source = _event(payload)
        ids = [item.id for item in source.line_items]
        left_out = data.draw(st.sets(st.sampled_from(ids)), label="left out")
        result = map_event(source, mapping_for(source, leave_out=left_out), unmapped="skip")
        by_id = {item.id: item for item in source.line_items}
        if isinstance(result, MappingFailure):
            assert len(result.unmapped) == len(ids)
            assert result.problems == ("no line item could be mapped to a Revel product",)
            return
        mapped = [line.source_line_id for line in result.items]
        unmapped = {u.line_item_id for u in result.unmapped}
        assert unmapped.isdisjoint(mapped)
        assert left_out <= unmapped
        assert sorted(mapped + list(unmapped)) == sorted(ids)
        for line in result.items:
            item = by_id[line.source_line_id]
            assert line.quantity.as_tuple() == item.quantity.as_tuple()
            assert line.price.as_tuple() == item.price.as_tuple()
        assert result.total == sum((by_id[i].line_total for i in mapped), Decimal(0))

    @given(event_payloads())
    def test_a_fully_mapped_order_preserves_the_total_of_every_line(self, payload: dict[str, Any]) -> None:
        source = _event(payload)
        order = order_of(map_event(source, mapping_for(source)))
        assert [line.source_line_id for line in order.items] == [item.id for item in source.line_items]
        assert order.total == sum((item.line_total for item in source.line_items), Decimal(0))
        assert order.unmapped == ()
        assert Decimal(order.to_snapshot()["total"]) == order.total

    @given(event_payloads(), st.data())
    def test_fail_mode_lists_every_left_out_line(self, payload: dict[str, Any], data: st.DataObject) -> None:
        source = _event(payload)
        left_out = data.draw(st.sets(st.sampled_from([item.id for item in source.line_items]), min_size=1))
        failure = failure_of(map_event(source, mapping_for(source, leave_out=left_out)))
        assert left_out <= {u.line_item_id for u in failure.unmapped}

    @given(event_payloads(location_ids=(201, 202, 203, 404, None)), mapping_configs(), st.sampled_from(["fail", "skip"]))
    def test_mapping_is_total_and_sends_the_order_to_the_events_venue(
        self, payload: dict[str, Any], mapping: MappingConfig, mode: str
    ) -> None:
        source = _event(payload)
        result = map_event(source, mapping, unmapped=mode)
        venue = mapping.venue_for(source)
        if isinstance(result, RevelOrder):
            assert venue is not None
            assert (result.establishment_id, result.dining_option) == (venue.revel_establishment, venue.dining_option)
            assert result.local_id == f"tripleseat-{source.id}"
            assert result.items
        else:
            assert venue is None or result.unmapped or result.problems

    @given(
        event_payloads(site_zone="America/Los_Angeles", with_utc=True, with_financials=False),
        st.sampled_from(["America/Los_Angeles", "America/New_York", "UTC", "Asia/Tokyo"]),
    )
    def test_utc_and_local_start_give_the_same_pickup_time(self, payload: dict[str, Any], store_zone: str) -> None:
        source = _event(payload)
        assert source.start_utc is not None
        local_only = _event({k: v for k, v in payload.items() if not k.endswith(("_utc", "_iso8601"))})
        assert local_only.start_utc is None
        from_utc = pickup_time(source, site_zone="America/Los_Angeles", store_zone=store_zone)
        from_local = pickup_time(local_only, site_zone="America/Los_Angeles", store_zone=store_zone)
        assert from_utc == from_local == source.start_utc.astimezone(ZoneInfo(store_zone)).replace(tzinfo=None)
