"""A TripleSeat event's line items, parsed by the general field parsers or, for the common shapes, a fast path."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import attrs

from tsrevel.domain.money_parsing import (
    CENT, MAX_AMOUNT, QUANTITY_PLACES, as_money, as_quantity, as_required_money, cents, decimal_places,
)
from tsrevel.domain.payload_fields import as_id, as_object, as_text


@attrs.frozen(kw_only=True)
class LineItem:
    """One line of a TripleSeat event document (``documents[].line_items[]``)."""

    id: str | None
    document_index: int
    quantity: Decimal
    price: Decimal
    total_price: Decimal | None = None
    display_name: str = ""
    description: str = ""
    category: str | None = None
    menu_item_id: str | None = None
    section: str | None = None
    discount: Decimal = Decimal("0.00")  # this line's share of its document's discount

    @property
    def line_total(self) -> Decimal:
        """Quantity times unit price, rounded half up to the cent (before the line's discount)."""
        return cents(self.quantity * self.price)


def line_item_from(value: object, document_index: int, items_path: str, index: int) -> LineItem:
    """``items_path[index]``: the fast path's line item, else the general parser's (the field path is built only then)."""
    fast = plain_line_item(value, document_index) if type(value) is dict else None
    return fast if fast is not None else general_line_item(value, document_index, f"{items_path}[{index}]")


def general_line_item(value: object, document_index: int, path: str) -> LineItem:
    obj = as_object(value, path)
    category = obj.get("category")
    category_name = None
    if isinstance(category, Mapping):
        category_name = as_text(category.get("name"), f"{path}.category.name") or None
    elif category is not None:
        category_name = as_text(category, f"{path}.category") or None
    return LineItem(
        id=as_id(obj.get("id"), f"{path}.id"),
        document_index=document_index,
        quantity=as_quantity(obj.get("quantity"), f"{path}.quantity"),
        price=as_required_money(obj.get("price"), f"{path}.price"),
        total_price=as_money(obj.get("total_price"), f"{path}.total_price"),
        discount=_discount(obj.get("discount"), f"{path}.discount"),
        display_name=as_text(obj.get("display_name"), f"{path}.display_name").strip(),
        description=as_text(obj.get("description"), f"{path}.description"),
        category=category_name,
        menu_item_id=as_id(obj.get("menu_item_id"), f"{path}.menu_item_id"),
        section=as_text(obj.get("section"), f"{path}.section") or None,
    )


def _discount(value: object, path: str) -> Decimal:
    """A line's discount: an amount, or an object carrying one ({amount} or {total}); absent is 0."""
    if isinstance(value, Mapping):
        for key in ("amount", "total", "value"):
            if value.get(key) is not None:
                return as_money(value.get(key), f"{path}.{key}") or Decimal("0.00")
        return Decimal("0.00")
    return as_money(value, path) or Decimal("0.00")



# ---- the fast path: the common shapes of a line item, parsed without building a field path ------
#
# Each helper returns _SLOW for anything but the plainest input (a digits-only string, an int, a
# finite JSON number), and the line item is then parsed again by the general parsers above, which
# accept and refuse exactly as before and name the field path. So the fast path changes no
# outcome: it only skips work when nothing can go wrong (tests/unit/test_events_fast_path.py).

_SLOW: Any = object()
_ZERO_CENTS = Decimal("0.00")
_MAX_PLAIN_ID_BITS = 212  # below 10**64, like as_id's bound
_PLAIN_TEXT = frozenset({str, type(None)})


@functools.lru_cache(maxsize=2048)
def _plain_number_text(text: str, max_places: int) -> Decimal | None:
    """A digits-and-one-dot string ("3.25", "48") as a Decimal with at most max_places places; None otherwise."""
    if not (text.isascii() and text.replace(".", "", 1).isdigit()):
        return None
    number = Decimal(text)
    if number >= MAX_AMOUNT or decimal_places(number) > max_places:
        return None
    return number


def _plain_number(value: object, max_places: int) -> Decimal | None:
    kind = type(value)
    if kind is str:
        return _plain_number_text(value, max_places)  # type: ignore[arg-type]
    if kind is int:
        return Decimal(value) if 0 <= value < 10**12 else None  # type: ignore[operator,arg-type]
    if kind is Decimal:
        if value.is_finite() and 0 <= value < MAX_AMOUNT and decimal_places(value) <= max_places:  # type: ignore[union-attr,operator,arg-type]
            return value  # type: ignore[return-value]
    return None


# typed: 48 and "48" are different keys (both give 48.00, but a cache must never mix types).
@functools.lru_cache(maxsize=4096, typed=True)
def _plain_money_of(value: str | int) -> Decimal | None:
    number = _plain_number(value, 2)
    return None if number is None else number.quantize(CENT)


def _plain_money(value: object) -> Decimal | None:
    """Money on the fast path: what as_money returns for a plain non-negative amount (quantised to the cent), else None."""
    kind = type(value)
    if kind is str or kind is int:
        return _plain_money_of(value)  # type: ignore[arg-type]
    # A JSON number is a Decimal (parse_float). Not cached: 0.0 == -0.0, yet they quantise to 0.00 and -0.00.
    if kind is Decimal and value.is_finite() and 0 <= value < MAX_AMOUNT:  # type: ignore[union-attr,operator]
        money = value.quantize(CENT)  # type: ignore[union-attr]
        if money == value:  # no digit beyond the cent: what decimal_places(value) <= 2 says, without reading the digits
            return money
    return None


def _plain_optional_money(value: object) -> Any:
    """None when absent (None or ""), the amount when plain, else _SLOW."""
    if value is None or value == "":
        return None
    money = _plain_money(value)
    return _SLOW if money is None else money


def _plain_id(value: object) -> Any:
    if value is None or value == "":
        return None
    kind = type(value)
    if kind is int and value.bit_length() <= _MAX_PLAIN_ID_BITS:  # type: ignore[union-attr]
        return str(value)
    if kind is str and len(value) <= 64 and value.isascii() and value.isdigit():  # type: ignore[arg-type]
        return str(int(value))  # type: ignore[arg-type]
    return _SLOW


def plain_line_item(obj: dict[str, Any], document_index: int) -> LineItem | None:
    """The line item exactly as the general path parses it, or None when any field is not of a plain shape."""
    get = obj.get
    category = get("category")
    if type(category) is dict:
        category = category.get("name")
    display_name = get("display_name")
    description = get("description")
    section = get("section")
    # Text fields: a string, or absent (None, read as "").
    if (type(category) not in _PLAIN_TEXT or type(display_name) not in _PLAIN_TEXT
            or type(description) not in _PLAIN_TEXT or type(section) not in _PLAIN_TEXT):
        return None
    item_id = _plain_id(get("id"))
    menu_item_id = _plain_id(get("menu_item_id"))
    if item_id is _SLOW or menu_item_id is _SLOW:
        return None
    quantity = _plain_number(get("quantity"), QUANTITY_PLACES)
    price = _plain_money(get("price"))
    if quantity is None or price is None:
        return None
    total_price = _plain_optional_money(get("total_price"))
    discount = _plain_optional_money(get("discount"))
    if total_price is _SLOW or discount is _SLOW:
        return None
    return LineItem(
        id=item_id,
        document_index=document_index,
        quantity=quantity,
        price=price,
        total_price=total_price,
        discount=discount or _ZERO_CENTS,  # absent, or 0: Decimal("0.00") as _discount gives
        display_name=display_name.strip() if display_name else "",
        description=description or "",
        category=category or None,
        menu_item_id=menu_item_id,
        section=section or None,
    )
