"""Hypothesis strategies (and a builder) for mapping configs, safety flags and order policies; needs the dev extra."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from hypothesis import strategies as st

from tsrevel.domain.events import LineItem, TripleSeatEvent
from tsrevel.domain.mapping import MENU_ITEM_PREFIX, MappingConfig, mapping_from_dict, normalise_name
from tsrevel.domain.safety import KNOWN_STATUSES, ORDER_TRIGGERS, OrderPolicy, SafetyFlags
from tsrevel.testing.payload_strategies import BILLING_TABLE, CATALOG, LOCATION_IDS, SITE_ID, SITE_ZONE



def mapping_for(
    event: TripleSeatEvent,
    *,
    establishment: int = 4,
    dining_option: int = 3,
    timezone_name: str = SITE_ZONE,
    leave_out: Collection[str | None] = (),
    billing: Mapping[str, str] | None = None,
    revel_ids: Mapping[str, int] | None = None,
) -> MappingConfig:
    """A MappingConfig for the event's venue and items, except those whose line id is in leave_out.

    billing is the [billing] table (BILLING_TABLE by default); revel_ids go to [defaults]
    (revel_user, revel_station, payment_type, discount).
    """
    # An item that shares a menu item id or a name with a left-out item stays unmapped too.
    excluded: set[str] = set()
    for item in event.line_items:
        if item.id in leave_out:
            excluded.add(normalise_name(item.display_name))
            if item.menu_item_id is not None:
                excluded.add(f"{MENU_ITEM_PREFIX}{item.menu_item_id}")
    products: dict[str, int] = {}
    for index, item in enumerate(event.line_items):
        key = _product_key(item)
        if item.id not in leave_out and key and key not in excluded:
            products.setdefault(key, 1000 + index)
    venue = {"name": "Test venue", "revel_establishment": establishment, "dining_option": dining_option}
    data: dict[str, Any] = {
        "defaults": {"timezone": timezone_name, "dining_option": dining_option, **dict(revel_ids or {})},
        "products": products,
        "billing": dict(BILLING_TABLE if billing is None else billing),
    }
    if event.location_id is not None and event.location_id.isdigit():
        data["locations"] = {event.location_id: venue}
    elif event.site_id is not None and event.site_id.isdigit():
        data["sites"] = {event.site_id: venue}
    return mapping_from_dict(data)


def _product_key(item: LineItem) -> str:
    if item.menu_item_id is not None:
        return f"{MENU_ITEM_PREFIX}{item.menu_item_id}"
    return normalise_name(item.display_name)  # normalised, so two spellings of one name share a key


_ZONES = ("America/Los_Angeles", "America/New_York", "America/Chicago", "Europe/London", "UTC")


@st.composite
def mapping_configs(
    draw: st.DrawFn, *, location_ids: Sequence[int] = LOCATION_IDS, site_ids: Sequence[int] = (SITE_ID,)
) -> MappingConfig:
    """A valid mapping covering the catalog (by menu_item id and name) with per-location overrides."""
    products: dict[str, int] = {}
    for menu_id, name, _category in CATALOG:
        product = draw(st.integers(100, 999))
        if draw(st.booleans()):
            products[f"{MENU_ITEM_PREFIX}{menu_id}"] = product
        products[name] = product
    locations: dict[str, Any] = {}
    for loc in draw(st.lists(st.sampled_from(tuple(location_ids)), min_size=1, unique=True)):
        table: dict[str, Any] = {"name": f"Location {loc}", "revel_establishment": draw(st.integers(1, 50))}
        if draw(st.booleans()):
            table["dining_option"] = draw(st.integers(1, 200))
        if draw(st.booleans()):
            table["timezone"] = draw(st.sampled_from(_ZONES))
        overrides = draw(st.lists(st.sampled_from(CATALOG), max_size=3, unique=True))
        if overrides:
            table["products"] = {f"{MENU_ITEM_PREFIX}{m}": draw(st.integers(1000, 1999)) for m, _n, _c in overrides}
        locations[str(loc)] = table
    sites = {str(s): {"revel_establishment": draw(st.integers(1, 50))} for s in site_ids if draw(st.booleans())}
    return mapping_from_dict(
        {
            "defaults": {"timezone": draw(st.sampled_from(_ZONES)), "dining_option": draw(st.integers(1, 10))},
            "locations": locations,
            "sites": sites,
            "products": products,
            "billing": dict(BILLING_TABLE),
        }
    )


def safety_flags(*, location_ids: Sequence[int | str] = LOCATION_IDS) -> st.SearchStrategy[SafetyFlags]:
    """Any combination of kill switch, dry run and allow-list (empty, known location ids, or strangers)."""
    ids = st.sampled_from(tuple(str(i) for i in location_ids)) | st.integers(1, 999).map(str)
    return st.builds(
        SafetyFlags,
        enable_connector=st.booleans(),
        dry_run=st.booleans(),
        allowed_locations=st.frozensets(ids, max_size=4),
    )


def order_policies() -> st.SearchStrategy[OrderPolicy]:
    """An ``ORDER_ON_STATUSES`` choice (possibly empty or odd) with the default or a reduced trigger set."""
    statuses = st.frozensets(st.sampled_from(KNOWN_STATUSES) | st.text(max_size=8), max_size=4)
    triggers = st.just(ORDER_TRIGGERS) | st.frozensets(st.sampled_from(sorted(ORDER_TRIGGERS)), max_size=5)
    return st.builds(OrderPolicy, order_on_statuses=statuses, order_triggers=triggers)
