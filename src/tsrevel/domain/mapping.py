"""Mapping configuration (locations, products, policies) and map_event(): TripleSeat event -> Revel order."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from tsrevel.domain.errors import ConfigError
from tsrevel.domain.events import LineItem, Payment, TripleSeatEvent
from tsrevel.domain.ids import order_reference
from tsrevel.domain.invoice import GRATUITY, SERVICE_FEE, SKIPPED, TAX, ZERO, BillingLine, BillingTarget, balance, toml_line
from tsrevel.domain.orders import OrderLine, OrderPayment, RevelOrder, UnmappedItem

UNMAPPED_FAIL = "fail"
UNMAPPED_SKIP = "skip"
MENU_ITEM_PREFIX = "menu_item:"
CALL_NAME_LIMIT = 60
NOTES_LIMIT = 1000


def _frozen_map(value: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class ProductMap:
    """Product ids by TripleSeat menu item id, and by display name (case and surrounding space ignored)."""

    by_menu_item: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen_map)
    by_name: Mapping[str, int] = attrs.field(factory=dict, converter=_frozen_map)

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


def _frozen_billing(value: Mapping[str, BillingTarget]) -> Mapping[str, BillingTarget]:
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class MappingConfig:
    """The whole mapping file, validated: defaults, locations, sites, product maps and billing details."""

    timezone: str = "America/Los_Angeles"
    dining_option: int = 3
    locations: Mapping[str, Venue] = attrs.field(factory=dict, converter=MappingProxyType)
    sites: Mapping[str, Venue] = attrs.field(factory=dict, converter=MappingProxyType)
    products: ProductMap = ProductMap()
    billing: Mapping[str, BillingTarget] = attrs.field(factory=dict, converter=_frozen_billing)  # by normalised name
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


@attrs.frozen(kw_only=True)
class MappingFailure:
    """Why an event cannot become an order: the missing location and every unmapped item."""

    event_id: str
    missing_location: str | None = None
    unmapped: tuple[UnmappedItem, ...] = ()
    problems: tuple[str, ...] = ()
    unmapped_billing: tuple[str, ...] = ()  # billing detail names missing from [billing]

    @property
    def billing_lines(self) -> tuple[str, ...]:
        """The exact TOML lines to add under [billing] for the unmapped billing details."""
        return tuple(toml_line(name) for name in self.unmapped_billing)

    def describe(self) -> str:
        parts = list(self.problems)
        if self.missing_location:
            parts.append(self.missing_location)
        if self.unmapped:
            parts.append(
                f"{len(self.unmapped)} unmapped item(s): " + "; ".join(i.describe() for i in self.unmapped)
            )
        if self.unmapped_billing:
            parts.append(
                f"{len(self.unmapped_billing)} billing detail(s) not in [billing]: "
                + ", ".join(repr(n) for n in self.unmapped_billing)
                + "; add to the mapping file's [billing] table: "
                + "; ".join(self.billing_lines)
            )
        return f"event {self.event_id}: " + " | ".join(parts)


MappingResult = RevelOrder | MappingFailure


@functools.lru_cache(maxsize=4096)  # a 500-line event repeats its few item names (P3, docs/performance.md)
def normalise_name(name: str) -> str:
    return " ".join(name.split()).casefold()


def map_event(
    event: TripleSeatEvent,
    mapping: MappingConfig,
    *,
    unmapped: str = UNMAPPED_FAIL,
    received_at: datetime | None = None,
    strict_money: bool = True,
) -> MappingResult:
    """Turn an event into a Revel order carrying TripleSeat's invoice, or a failure that lists every problem at once.

    ``received_at`` (when the webhook came) becomes the order history's "opened" time on the
    store's clock; without it the pickup time stands in. ``strict_money=False`` is for change
    detection only (the result is compared, never ordered): numbers that do not add up, billing
    details missing from [billing] and a discount without a discount id do not fail the mapping,
    so an order placed before any of them (or before tsrevel read money at all) is compared on
    what changed, not reported as "no longer maps".
    """
    venue = mapping.venue_for(event)
    missing_location = None
    if venue is None:
        missing_location = (
            f"location {event.location_id or '(none)'} (site {event.site_id or '(none)'}) "
            "is not in the mapping file's [locations] or [sites]"
        )
    lines: list[OrderLine] = []
    missing: list[UnmappedItem] = []
    problems: list[str] = []
    for item in event.line_items:
        product = venue.products.lookup(item) if venue else None
        if product is None:  # not `or`: a location may map an item to product id 0
            product = mapping.products.lookup(item)
        if product is None:
            missing.append(
                UnmappedItem(
                    line_item_id=item.id,
                    menu_item_id=item.menu_item_id,
                    display_name=item.display_name,
                    document_index=item.document_index,
                )
            )
            continue
        lines.append(
            OrderLine(
                product_id=product,
                quantity=item.quantity,
                price=item.price,
                name=item.display_name,
                special_request=item.description.strip()[:200],
                source_line_id=item.id,
            )
        )
    if not event.line_items:
        problems.append("the event has no line items (is include_event_financials on?)")
    elif not lines and missing:
        problems.append("no line item could be mapped to a Revel product")
    charges, unmapped_billing, warnings = _billing(event, mapping, unmapped)
    if unmapped_billing and (unmapped == UNMAPPED_SKIP or not strict_money):
        warnings.append(
            "left out (UNMAPPED_ITEMS=skip), not in [billing]: "
            + ", ".join(f"{c.name!r} {c.amount}" for c in charges if c.kind == SKIPPED)
            + "; the Revel order's total is short of TripleSeat's by as much"
        )
        unmapped_billing = []
    discount = event.discount_from(mapping.discounts)
    if strict_money and discount and venue is not None and venue.discount is None:
        problems.append(
            f"the event has a discount of {discount} but no Revel discount id is configured: "
            f"add `discount = <Revel discount id>` to [defaults] or [{_venue_table(venue)}]"
        )
    arithmetic = balance((i.line_total for i in event.line_items), discount, charges, event.grand_total)
    if strict_money and not arithmetic.ok:
        problems.append(f"TripleSeat's numbers do not add up: {arithmetic.describe()}")
    if venue is None or problems or unmapped_billing or (missing and unmapped != UNMAPPED_SKIP):
        return MappingFailure(
            event_id=event.id,
            missing_location=missing_location,
            unmapped=tuple(missing),
            problems=tuple(problems),
            unmapped_billing=tuple(unmapped_billing),
        )
    lines.extend(
        OrderLine(product_id=c.product_id, quantity=Decimal(1), price=c.amount, name=c.name, billing=c.name)
        for c in charges
        if c.kind == "product" and c.product_id is not None
    )
    payments, payment_warnings = _payments(event.payments, site_zone=mapping.timezone, store_zone=venue.timezone)
    warnings.extend(payment_warnings)
    if payments and venue.payment_type is None:
        warnings.append(
            f"{len(payments)} TripleSeat payment(s) of {sum((p.amount for p in payments), ZERO)} not recorded in Revel: "
            f"no payment_type in [defaults] or [{_venue_table(venue)}]; the order shows the whole total as due"
        )
    pickup = pickup_time(event, site_zone=mapping.timezone, store_zone=venue.timezone)
    order = RevelOrder(
        event_id=event.id,
        location_id=event.location_id,
        location_name=venue.name,
        establishment_id=venue.revel_establishment,
        local_id=order_reference(event.id),
        dining_option=venue.dining_option,
        call_name=_call_name(event),
        notes=_notes(event),
        pickup_time=pickup,
        items=tuple(lines),
        unmapped=tuple(missing),
        guest_count=guest_count(event),
        discount_amount=discount,
        discount_id=venue.discount if discount else None,
        tax=_sum(charges, TAX),
        service_charge=_sum(charges, SERVICE_FEE),
        gratuity=_sum(charges, GRATUITY),
        payments=tuple(payments),
        payments_read=len(event.payments),
        payment_type=venue.payment_type,
        user_id=venue.revel_user,
        station_id=venue.revel_station,
        opened_at=_store_clock(received_at, venue.timezone) if received_at is not None else pickup,
        billing=tuple(charges),
        grand_total=event.grand_total,
        arithmetic=arithmetic.describe(),
    )
    if strict_money and order.remaining_due < 0:
        return MappingFailure(
            event_id=event.id,
            problems=(f"TripleSeat payments of {order.paid} exceed the order's total {order.final_total}; check the payments in TripleSeat",),
        )
    due = event.amount_due
    if due is not None and order.recorded_payments and not order.unmapped and due != order.remaining_due:
        warnings.append(f"TripleSeat's amount_due is {due}; the counted payments leave {order.remaining_due} due")
    return attrs.evolve(order, warnings=tuple(warnings))


def money_reading(event: TripleSeatEvent, mapping: MappingConfig | None = None) -> str:
    """How tsrevel read the event's money, as evidence for the log (docs/configuration.md, "The invoice")."""
    mapping = mapping or MappingConfig()
    parts = []
    for doc in event.documents:
        if mapping.discounts == "lines":
            if doc.line_discounts or doc.discounts_total is not None:
                parts.append(f"document {doc.index}: discount {doc.line_discounts} from the lines' discounts ([invoice] discounts = \"lines\"; discounts_total {doc.discounts_total})")
        elif doc.discounts_total is not None:
            parts.append(f"document {doc.index}: discount {doc.discounts_total} from financials.discounts_total (lines' discounts {doc.line_discounts}, its breakdown)")
        elif doc.line_discounts:
            parts.append(f"document {doc.index}: discount {doc.line_discounts} from the lines' discounts")
    billing = event.billing_from(mapping.billing_source)
    per_document = any(b.document_index is not None for b in billing)
    parts.append(
        f"{len(billing)} billing detail(s) "
        + ("from the documents (event-level sums not added)" if per_document else "from the event-level billing_totals")
    )
    counted = [p for p in event.payments if p.counted > 0]
    parts.append(f"{len(event.payments)} payment(s) read, {len(counted)} counted ({sum((p.counted for p in counted), ZERO)})")
    return "; ".join(parts)


def _billing(event: TripleSeatEvent, mapping: MappingConfig, unmapped: str) -> tuple[list[BillingLine], list[str], list[str]]:
    """Each billing detail with its target, the names missing from [billing], and warnings."""
    charges: list[BillingLine] = []
    missing: list[str] = []
    warnings: list[str] = []
    for total in event.billing_from(mapping.billing_source):
        target = mapping.billing.get(normalise_name(total.name))
        if target is None:
            if total.amount == 0:
                warnings.append(f"billing detail {total.name!r} is 0.00 and not in [billing]: ignored")
                continue
            if total.name not in missing:
                missing.append(total.name)
            charges.append(BillingLine(name=total.name, amount=total.amount, kind=SKIPPED))
            continue
        charges.append(BillingLine(name=total.name, amount=total.amount, kind=target.kind, product_id=target.product_id))
    return charges, missing, warnings


def _sum(charges: list[BillingLine], kind: str) -> Decimal:
    return sum((c.amount for c in charges if c.kind == kind), ZERO)


def _payments(payments: tuple[Payment, ...], *, site_zone: str, store_zone: str) -> tuple[list[OrderPayment], list[str]]:
    """The counted payments, and a warning for each payment whose state we cannot read (never counted)."""
    counted: list[OrderPayment] = []
    warnings: list[str] = []
    for payment in payments:
        if not payment.state_known:
            warnings.append(
                f"TripleSeat payment {payment.id or '(no id)'} of {payment.amount} has state {payment.state!r}, "
                "which tsrevel does not read as paid: not counted (docs/configuration.md, Payments)"
            )
            continue
        if payment.counted > 0:
            counted.append(
                OrderPayment(
                    source_id=payment.id,
                    amount=payment.counted,
                    paid_at=_paid_at(payment.paid_time, site_zone=site_zone, store_zone=store_zone),
                    method=payment.payment_method,
                )
            )
    return counted, warnings


def _paid_at(moment: datetime | None, *, site_zone: str, store_zone: str) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(site_zone))
    return _store_clock(moment, store_zone)


def _store_clock(moment: datetime, store_zone: str) -> datetime:
    """An instant on the store's wall clock, without offset (how Revel reads local times)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(ZoneInfo(store_zone)).replace(tzinfo=None, microsecond=0)


def _venue_table(venue: Venue) -> str:
    kind, key = venue.key.split(" ", 1)
    return f"{kind}s.{key}"


def pickup_time(event: TripleSeatEvent, *, site_zone: str, store_zone: str) -> datetime | None:
    """The event's start on the store's wall clock (no offset), from UTC when sent, else site-local."""
    if event.start_utc is not None:
        return event.start_utc.astimezone(ZoneInfo(store_zone)).replace(tzinfo=None)
    if event.start_local is None:
        return None
    if site_zone == store_zone:
        return event.start_local
    aware = event.start_local.replace(tzinfo=ZoneInfo(site_zone))
    return aware.astimezone(timezone.utc).astimezone(ZoneInfo(store_zone)).replace(tzinfo=None)


def guest_count(event: TripleSeatEvent) -> int | None:
    """The guest count the order is for: the guaranteed count when TripleSeat has one, else the expected one."""
    return event.guaranteed_guest_count if event.guaranteed_guest_count is not None else event.guest_count


def _call_name(event: TripleSeatEvent) -> str:
    name = event.contact.full_name or event.name or f"TripleSeat {event.id}"
    return name[:CALL_NAME_LIMIT]


def _notes(event: TripleSeatEvent) -> str:
    parts = [f"TripleSeat event {event.id}: {event.name}".rstrip(": ")]
    guests = guest_count(event)
    if guests is not None:
        parts.append(f"guests: {guests}")
    if event.contact.full_name:
        contact = event.contact.full_name
        extra = ", ".join(x for x in (event.contact.phone, event.contact.email) if x)
        parts.append(f"contact: {contact}" + (f" ({extra})" if extra else ""))
    if event.description.strip():
        parts.append(event.description.strip())
    return "; ".join(parts)[:NOTES_LIMIT]


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
