"""What changed in an event since its order was placed: a pure comparison of order snapshots."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from tsrevel.domain.mapping import MappingFailure
from tsrevel.domain.orders import RevelOrder

_COMPARED = (
    ("establishment_id", "Revel establishment"),
    ("location_id", "location"),
    ("pickup_time", "pickup time"),
    ("dining_option", "dining option"),
    ("call_name", "call name"),
    ("notes", "notes (guest count, contact, description)"),
)


def order_changes(ordered: Mapping[str, Any], current: RevelOrder | MappingFailure) -> list[str]:
    """Human-readable differences between the snapshot that was ordered and the event as it is now."""
    if isinstance(current, MappingFailure):
        return [f"the event no longer maps to an order: {current.describe()}"]
    now = current.to_snapshot()
    changes = [
        f"{label}: {ordered.get(key)!r} -> {now.get(key)!r}"
        for key, label in _COMPARED
        if ordered.get(key) != now.get(key)
    ]
    before = _items(ordered.get("items", []))
    after = _items(now["items"])  # type: ignore[arg-type]
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        product, name = key
        label = f"{name or 'item'} (product {product})"
        if old is None:
            changes.append(f"added {label}: {new[0]} x {new[1]}")  # type: ignore[index]
        elif new is None:
            changes.append(f"removed {label}: was {old[0]} x {old[1]}")
        else:
            changes.append(f"changed {label}: {old[0]} x {old[1]} -> {new[0]} x {new[1]}")
    return changes


def _items(items: object) -> dict[tuple[int, str], tuple[str, str]]:
    """Items keyed by (product, name) with (quantity, price) as exact decimal strings."""
    result: dict[tuple[int, str], tuple[str, str]] = {}
    if not isinstance(items, list):
        return result
    for item in items:
        if not isinstance(item, Mapping):
            continue
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
    return format(number.normalize(), "f")
