"""The mapping file, validated: locations and sites as venues, product maps, billing targets and [invoice] readings.

mapping_from_dict() takes the file already decoded from TOML (the adapter reads it and adds the
file name to errors); map_event() in mapping reads the result.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from tsrevel.domain.errors import ConfigError
from tsrevel.domain.events import LineItem, TripleSeatEvent
from tsrevel.domain.invoice import BillingTarget

MENU_ITEM_PREFIX = "menu_item:"

_T = TypeVar("_T")


def _frozen(value: Mapping[str, _T]) -> Mapping[str, _T]:
    return MappingProxyType(dict(value))



@attrs.frozen(kw_only=True)
class ProductMap:
    """Product ids by TripleSeat menu item id, and by display name (case and surrounding space ignored)."""

    by_menu_item: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen)
    by_name: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen)

    def lookup(self, item: LineItem) -> int | None:
        if item.menu_item_id is not None and item.menu_item_id in self.by_menu_item:
            return self.by_menu_item[item.menu_item_id]
        name = normalise_name(item.display_name)
        return self.by_name.get(name) if name else None


@attrs.frozen(kw_only=True)
class Venue:
    """Where an event's order goes in Revel: a mapped TripleSeat location or site."""

    key: str  # "location 201" or "site 15691", for messages
    name: str
    revel_establishment: int
    dining_option: int
    timezone: str
    products: ProductMap = ProductMap()
    revel_user: int | None = None  # created_by / updated_by / the history's order_opened_by
    revel_station: int | None = None  # station / the history's order_opened_at
    payment_type: int | None = None  # None: TripleSeat payments are not recorded in Revel
    discount: int | None = None  # None: a discounted event cannot be ordered



@attrs.frozen(kw_only=True)
class MappingConfig:
    """The whole mapping file, validated: defaults, locations, sites, product maps and billing details."""

    timezone: str = "America/Los_Angeles"
    dining_option: int = 3
    locations: Mapping[str, Venue] = attrs.field(factory=dict, converter=MappingProxyType)
    sites: Mapping[str, Venue] = attrs.field(factory=dict, converter=MappingProxyType)
    products: ProductMap = ProductMap()
    billing: Mapping[str, BillingTarget] = attrs.field(factory=dict, converter=_frozen)  # by normalised name
    # [invoice]: how TripleSeat's money is read, where a real payload may differ from our reading.
    discounts: str = "document_total"  # or "lines"
    billing_source: str = "documents"  # or "event"

    def venue_for(self, event: TripleSeatEvent) -> Venue | None:
        """The event's location mapping, else its site's, else None."""
        if event.location_id is not None and event.location_id in self.locations:
            return self.locations[event.location_id]
        if event.site_id is not None and event.site_id in self.sites:
            return self.sites[event.site_id]
        return None

    @property
    def location_ids(self) -> frozenset[str]:
        return frozenset(self.locations)



@functools.lru_cache(maxsize=4096)  # a 500-line event repeats its few item names (P3, docs/performance.md)
def normalise_name(name: str) -> str:
    return " ".join(name.split()).casefold()


# ---- the mapping file, already decoded from TOML into dicts; the adapter adds the file name ----

_TOP_KEYS = {"defaults", "locations", "sites", "products", "billing", "invoice"}
_INVOICE_READINGS = {"discounts": ("document_total", "lines"), "billing_totals": ("documents", "event")}
_REVEL_IDS = ("revel_user", "revel_station", "payment_type", "discount")  # in [defaults], overridable per venue
_DEFAULT_KEYS = {"timezone", "dining_option", *_REVEL_IDS}
_VENUE_KEYS = {"name", "revel_establishment", "dining_option", "timezone", "products", *_REVEL_IDS}


def mapping_from_dict(data: Mapping[str, Any]) -> MappingConfig:
    """Validate a decoded mapping file; raises ConfigError naming the key and what is wrong."""
    _no_unknown(data, _TOP_KEYS, "")
    defaults = _table(data.get("defaults", {}), "defaults")
    _no_unknown(defaults, _DEFAULT_KEYS, "defaults")
    zone = _zone(defaults.get("timezone", "America/Los_Angeles"), "defaults.timezone")
    dining = _int(defaults.get("dining_option", 3), "defaults.dining_option")
    products = _products(data.get("products", {}), "products")
    ids = {key: _optional_int(defaults.get(key), f"defaults.{key}") for key in _REVEL_IDS}
    locations = {
        _key_id(k, "locations"): _venue(v, f"locations.{k}", "location", zone, dining, ids)
        for k, v in _table(data.get("locations", {}), "locations").items()
    }
    sites = {
        _key_id(k, "sites"): _venue(v, f"sites.{k}", "site", zone, dining, ids)
        for k, v in _table(data.get("sites", {}), "sites").items()
    }
    invoice = _table(data.get("invoice", {}), "invoice")
    _no_unknown(invoice, set(_INVOICE_READINGS), "invoice")
    for key, allowed in _INVOICE_READINGS.items():
        if key in invoice and invoice[key] not in allowed:
            raise ConfigError(f"invoice.{key}: {invoice[key]!r} is not one of " + ", ".join(f'"{a}"' for a in allowed))
    return MappingConfig(
        timezone=zone, dining_option=dining, locations=locations, sites=sites, products=products,
        billing=_billing_table(data.get("billing", {}), "billing"),
        discounts=invoice.get("discounts", "document_total"),
        billing_source=invoice.get("billing_totals", "documents"),
    )


def _billing_table(value: object, path: str) -> dict[str, BillingTarget]:
    """[billing]: "TripleSeat name" = "tax" | "gratuity" | "service_fee" | "product:<id>", names case/space-insensitive."""
    result: dict[str, BillingTarget] = {}
    for raw_key, raw_target in _table(value, path).items():
        where = f"{path}.{raw_key!r}"
        name = normalise_name(raw_key)
        if not name:
            raise ConfigError(f"{where}: an empty billing detail name")
        target = BillingTarget.parse(raw_target) if isinstance(raw_target, str) else None
        if target is None:
            raise ConfigError(f'{where}: {raw_target!r} is not "tax", "gratuity", "service_fee" or "product:<Revel product id>"')
        if name in result and result[name] != target:
            raise ConfigError(f"{where}: the name is mapped twice, to different targets")
        result[name] = target
    return result


def _optional_int(value: object, path: str) -> int | None:
    return None if value is None else _int(value, path)


def _venue(value: object, path: str, kind: str, zone: str, dining: int, ids: Mapping[str, int | None]) -> Venue:
    table = _table(value, path)
    _no_unknown(table, _VENUE_KEYS, path)
    if "revel_establishment" not in table:
        raise ConfigError(f"{path}.revel_establishment: missing (the Revel establishment id)")
    key = path.split(".", 1)[1]
    return Venue(
        key=f"{kind} {key}",
        name=_str(table.get("name", f"{kind} {key}"), f"{path}.name"),
        revel_establishment=_int(table["revel_establishment"], f"{path}.revel_establishment"),
        dining_option=_int(table.get("dining_option", dining), f"{path}.dining_option"),
        timezone=_zone(table.get("timezone", zone), f"{path}.timezone"),
        products=_products(table.get("products", {}), f"{path}.products"),
        **{key: _optional_int(table[key], f"{path}.{key}") if key in table else ids[key] for key in _REVEL_IDS},
    )


def _products(value: object, path: str) -> ProductMap:
    table = _table(value, path)
    by_menu: dict[str, int] = {}
    by_name: dict[str, int] = {}
    for raw_key, raw_id in table.items():
        product = _int(raw_id, f"{path}.{raw_key!r}")
        if raw_key.startswith(MENU_ITEM_PREFIX):
            menu_id = raw_key[len(MENU_ITEM_PREFIX) :].strip()
            if not menu_id:
                raise ConfigError(f"{path}.{raw_key!r}: 'menu_item:' needs a menu item id after it")
            by_menu[str(int(menu_id)) if menu_id.isascii() and menu_id.isdigit() else menu_id] = product
        else:
            name = normalise_name(raw_key)
            if not name:
                raise ConfigError(f"{path}.{raw_key!r}: an empty product name")
            if name in by_name and by_name[name] != product:
                raise ConfigError(f"{path}.{raw_key!r}: the name is mapped twice, to different products")
            by_name[name] = product
    return ProductMap(by_menu_item=by_menu, by_name=by_name)


def _table(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: expected a table, got {type(value).__name__}")
    return value


def _no_unknown(table: Mapping[str, Any], allowed: set[str], path: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(
            f"{where}{unknown[0]}: unknown key (allowed here: {', '.join(sorted(allowed))})"
        )


def _int(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path}: {value!r} is not an integer id")
    if value < 0:
        raise ConfigError(f"{path}: {value!r} is negative")
    return value


def _str(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{path}: {value!r} is not text")
    return value


def _key_id(key: str, path: str) -> str:
    text = key.strip()
    if not (text.isascii() and text.isdigit()):  # "²".isdigit() is True, but int("²") fails
        raise ConfigError(f"{path}.{key}: the key must be a TripleSeat id (digits)")
    return str(int(text))


def _zone(value: object, path: str) -> str:
    name = _str(value, path)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{path}: {name!r} is not an IANA time zone name") from None
    return name
