"""What changed in an event since its order was placed: a pure comparison of order snapshots."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from tsrevel.domain.events import TripleSeatEvent
from tsrevel.domain.mapping import MappingConfig, MappingFailure, guest_count, map_event, pickup_time
from tsrevel.domain.orders import RevelOrder

_COMPARED = (
    ("establishment_id", "Revel establishment"),
    ("location_id", "location"),
    ("pickup_time", "pickup time"),
    ("guest_count", "guest count"),
    ("dining_option", "dining option"),
    ("call_name", "call name"),
    ("notes", "notes (guest count, contact, description)"),
)
# Compared only when the ordered snapshot has them (snapshots taken before guest_count existed do not).
_OPTIONAL = frozenset({"guest_count"})
# The invoice's totals (issue 12), compared only when the ordered snapshot has them, as exact decimals.
# Subtotal, tax, service charge and gratuity are not listed: the item and billing-detail lines
# already say what changed in them, and the same change is not reported twice.
_MONEY = (
    ("grand_total", "grand total (TripleSeat)"),
    ("discount_amount", "discount"),
)
# The guest count inside the notes (mapping._notes); a change there is already reported on its own line.
_NOTES_GUESTS = re.compile(r"guests: \d+")


def event_changes(ordered: Mapping[str, Any], event: TripleSeatEvent, mapping: MappingConfig, *, unmapped: str) -> list[str]:
    """What changed in the event since its order; an event without line items is compared on what it carries."""
    if event.line_items:
        return order_changes(ordered, map_event(event, mapping, unmapped=unmapped, strict_money=False))
    # A webhook without documents (and nothing fetched): its items are unknown, not removed.
    venue = mapping.venue_for(event)
    if venue is None:
        return [f"the event no longer maps to an order: location {event.location_id or '(none)'} (site {event.site_id or '(none)'}) is not in the mapping file"]
    pickup = pickup_time(event, site_zone=mapping.timezone, store_zone=venue.timezone)
    now = {
        "establishment_id": venue.revel_establishment,
        "location_id": event.location_id,
        "pickup_time": pickup.isoformat() if pickup else None,
        "guest_count": guest_count(event),
        "dining_option": venue.dining_option,
    }
    return _field_changes(ordered, now)


def order_changes(ordered: Mapping[str, Any], current: RevelOrder | MappingFailure) -> list[str]:
    """Human-readable differences between the snapshot that was ordered and the event as it is now."""
    if isinstance(current, MappingFailure):
        return [f"the event no longer maps to an order: {current.describe()}"]
    now = current.to_snapshot()
    changes = _field_changes(ordered, now)
    changes += _money_changes(ordered, now)
    changes += _payment_changes(ordered, now)
    changes += _billing_changes(ordered, now)
    before = _items(ordered.get("items", []))
    after = _items(now["items"])  # type: ignore[arg-type]

    def label(key: tuple[int, str]) -> str:
        return f"{key[1] or 'item'} (product {key[0]})"

    return changes + _diff(
        before, after,
        added=lambda key, new: f"added {label(key)}: {new[0]} x {new[1]}",
        removed=lambda key, old: f"removed {label(key)}: was {old[0]} x {old[1]}",
        changed=lambda key, old, new: f"changed {label(key)}: {old[0]} x {old[1]} -> {new[0]} x {new[1]}",
    )


def _diff(
    before: Mapping[Any, Any],
    after: Mapping[Any, Any],
    *,
    added: Callable[[Any, Any], str],
    removed: Callable[[Any, Any], str],
    changed: Callable[[Any, Any, Any], str],
    same: Callable[[Any, Any], bool] = operator.eq,
) -> list[str]:
    """One line per key added, removed or changed between two keyed views, in key order."""
    lines = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old is None and new is None or (old is not None and new is not None and same(old, new)):
            continue
        lines.append(added(key, new) if old is None else removed(key, old) if new is None else changed(key, old, new))
    return lines


def _field_changes(ordered: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """'label: old -> new' for each compared field present in now that differs from the ordered snapshot."""
    changes = []
    for key, label in _COMPARED:
        old, new = ordered.get(key), now.get(key)
        if key not in now or (key in _OPTIONAL and key not in ordered) or old == new:
            continue
        if key == "notes" and "guest_count" in ordered and _without_guests(old) == _without_guests(new):
            continue  # only the guest count changed in the notes: its own line says so
        changes.append(f"{label}: {_show(old)} -> {_show(new)}")
    return changes


def _money_changes(ordered: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """'final total: 445.18 -> 460.00' for each total the ordered snapshot has and that differs now."""
    return [
        f"{label}: {_normal(ordered[key])} -> {_normal(now.get(key))}"
        for key, label in _MONEY
        if key in ordered and _normal(ordered[key]) != _normal(now.get(key))
    ]


def _payment_changes(ordered: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """New payments, payments no longer counted (refunded, failed, removed) and partly refunded ones, by TripleSeat id."""
    if not isinstance(ordered.get("payments"), list):
        return []  # ordered before payments were read: nothing to compare with
    if ordered["payments"] and not now.get("payments_read"):
        return []  # this payload carries no payments at all: unknown, not refunded
    return _diff(
        _payments(ordered["payments"]), _payments(now.get("payments")),
        added=lambda key, new: f"new payment {key}: {new}",
        removed=lambda key, old: f"payment {key} of {old} no longer counts (refunded, failed or removed in TripleSeat)",
        changed=lambda key, old, new: f"payment {key}: {old} -> {new}" + (" (partly refunded)" if Decimal(new) < Decimal(old) else ""),
    )


def _payments(payments: object) -> dict[str, str]:
    result: dict[str, str] = {}
    for payment in payments if isinstance(payments, list) else []:
        if isinstance(payment, Mapping):
            result[str(payment.get("transaction_id") or payment.get("id"))] = _normal(payment.get("amount"))
    return result


def _billing_changes(ordered: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Billing details added, removed or changed in amount, by name (case and space ignored)."""
    if not isinstance(ordered.get("billing"), list):
        return []
    if ordered["billing"] and not now.get("billing"):
        return []  # this payload carries no billing details at all: unknown, not removed
    return _diff(
        _billing(ordered["billing"]), _billing(now.get("billing")),
        added=lambda key, new: f"new billing detail {new[0]!r}: {new[1]}",
        removed=lambda key, old: f"billing detail {old[0]!r} removed: was {old[1]}",
        changed=lambda key, old, new: f"billing detail {new[0]!r}: {old[1]} -> {new[1]}",
        same=lambda old, new: old[1] == new[1],  # the same amount under a respelled name is no change
    )


def _billing(billing: object) -> dict[str, tuple[str, str]]:
    result: dict[str, tuple[str, str]] = {}
    for detail in billing if isinstance(billing, list) else []:
        if isinstance(detail, Mapping):
            name = str(detail.get("name", ""))
            key = " ".join(name.split()).casefold()
            amount = _normal(detail.get("amount"))
            if key in result:
                amount = _normal(str(Decimal(result[key][1]) + Decimal(amount)))
            result[key] = (name, amount)
    return result


def _without_guests(notes: object) -> str:
    return _NOTES_GUESTS.sub("guests: ?", notes) if isinstance(notes, str) else repr(notes)


def _show(value: object) -> str:
    """Numbers bare (guest count: 40 -> 55), text quoted, absent values as 'none'."""
    if value is None:
        return "none"
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else repr(value)


def _items(items: object) -> dict[tuple[int, str], tuple[str, str]]:
    """Items keyed by (product, name) with (quantity, price) as exact decimal strings."""
    result: dict[tuple[int, str], tuple[str, str]] = {}
    if not isinstance(items, list):
        return result
    for item in items:
        if not isinstance(item, Mapping) or "billing" in item:
            continue  # a fee line: its billing detail is compared on its own
        key = (int(item.get("product_id", 0)), str(item.get("name", "")))
        qty, price = _normal(item.get("quantity")), _normal(item.get("price"))
        if key in result:  # the same product twice: compare the sums
            old_qty, _ = result[key]
            qty = _normal(str(Decimal(old_qty) + Decimal(qty)))
        result[key] = (qty, price)
    return result


def _normal(value: object) -> str:
    """An exact decimal string with no exponent and no trailing zeros ("3.50" -> "3.5")."""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    if not number.is_finite():
        return str(value)
    return format(number.normalize(), "f") if number else "0"
