"""Revel's wire format both ways, pure: OrderAllInOne bodies and URIs out, ids and amounts read back; no I/O.

The HTTP adapter (``adapters.revel_http``) sends and reads through these; the fakes check the
very body it would send (``adapters.fake_revel``), which is why none of this imports httpx.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from tsrevel.adapters.http_answers import body_excerpt
from tsrevel.domain.errors import GatewayError
from tsrevel.domain.orders import OrderLine, OrderPayment, RevelOrder

ORDERS_PATH = "/resources/Order/"
CREATE_PATH = "/resources/OrderAllInOne/"
ESTABLISHMENTS_PATH = "/enterprise/Establishment/"
PRODUCTS_PATH = "/resources/Product/"
# Order listings for reconcile: one listing over the whole date range, 500 orders a page (Tastypie's
# usual max_limit is 1000), up to 200 pages (100,000 orders) before refusing to read a partial list.
LISTING_PAGE_LIMIT = 500
LISTING_MAX_PAGES = 200

# uuid5 namespace for order uuids: the same local_id always gives the same uuid, so a retried
# create sends exactly what the first attempt sent.
ORDER_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "orders.tsrevel")

_TRAILING_ID = re.compile(r"/(\d+)/?$")


def order_uuid(local_id: str) -> str:
    """The deterministic order uuid Revel receives for a local_id."""
    return str(uuid.uuid5(ORDER_UUID_NAMESPACE, local_id))


def establishment_uri(establishment_id: int) -> str:
    return f"/enterprise/Establishment/{establishment_id}/"


def product_uri(product_id: int) -> str:
    return f"/resources/Product/{product_id}/"


# The other resources an order points at, by the mapping key that names their id.
_RESOURCE_PATHS = {"user": "/enterprise/User/", "station": "/resources/PosStation/", "discount": "/resources/Discount/"}


def resource_uri(kind: str, resource_id: int) -> str:
    """The URI of a Revel user, PosStation or discount: ``resource_uri("station", 4)`` -> "/resources/PosStation/4/"."""
    return f"{_RESOURCE_PATHS[kind]}{resource_id}/"


def money(value: Decimal) -> str:
    """Money on the wire: a string with exactly 2 decimals ("445.18")."""
    return f"{value.quantize(Decimal('0.01')):f}"


# ---- domain -> wire ---------------------------------------------------------------------------


def order_body(order: RevelOrder) -> dict[str, Any]:
    """The OrderAllInOne body for an order: orderInfo with the invoice's totals, items, payments, one history entry.

    Money is written as strings with 2 decimals; quantities as numbers. The body depends only on
    the order, so a retried create sends exactly what the first attempt sent.
    """
    info: dict[str, Any] = {
        "establishment": establishment_uri(order.establishment_id),
        "local_id": order.local_id,
        "uuid": order_uuid(order.local_id),
        "dining_option": order.dining_option,
        "call_name": order.call_name,
        "notes": order.notes,
        "web_order": True,
        "subtotal": money(order.subtotal),
        "discount_amount": money(order.discount_amount),
        "tax": money(order.tax),
        "service_charge": money(order.service_charge),
        "gratuity": money(order.gratuity),
        "final_total": money(order.final_total),
        "remaining_due": money(order.remaining_due),
    }
    if order.discount_id is not None:
        info["discount"] = resource_uri("discount", order.discount_id)
    if order.pickup_time is not None:
        info["pickup_time"] = local_time(order.pickup_time)
    if order.guest_count is not None:
        info["number_of_people"] = order.guest_count
    if order.user_id is not None:
        info["created_by"] = info["updated_by"] = resource_uri("user", order.user_id)
    if order.station_id is not None:
        info["station"] = resource_uri("station", order.station_id)
    return {
        "orderInfo": info,
        "items": [_item(line) for line in order.items],
        "history": [entry] if (entry := _history(order)) else [],
        "payments": [_payment(order, payment) for payment in order.recorded_payments],
    }


def _item(line: OrderLine) -> dict[str, Any]:
    quantity: int | Decimal = int(line.quantity) if line.quantity == line.quantity.to_integral_value() else line.quantity
    price = money(line.price)
    return {
        "product": product_uri(line.product_id),
        "quantity": quantity,
        "price": price,
        "initial_price": price,
        "price_to_display": price,
        "special_request": line.special_request,
    }


def _payment(order: RevelOrder, payment: OrderPayment) -> dict[str, Any]:
    assert order.payment_type is not None  # recorded_payments is empty without one
    entry: dict[str, Any] = {
        "payment_type": order.payment_type,
        "amount": money(payment.amount),
        "tip": "0.00",
        "transaction_id": payment.transaction_id,
        "establishment": establishment_uri(order.establishment_id),
    }
    if payment.paid_at is not None:
        entry["payment_date"] = local_time(payment.paid_at)
    if order.user_id is not None:
        entry["created_by"] = entry["updated_by"] = resource_uri("user", order.user_id)
    if order.station_id is not None:
        entry["station"] = resource_uri("station", order.station_id)
    return entry


def _history(order: RevelOrder) -> dict[str, Any]:
    """The one OrderHistory entry that makes the order appear in Revel's Order History screen."""
    entry: dict[str, Any] = {}
    if order.user_id is not None:
        entry["order_opened_by"] = resource_uri("user", order.user_id)
    if order.station_id is not None:
        entry["order_opened_at"] = resource_uri("station", order.station_id)
    if order.opened_at is not None:
        entry["opened"] = local_time(order.opened_at)
        if order.closed:
            entry["closed"] = local_time(order.opened_at)
    return entry


def local_time(value: datetime) -> str:
    """A moment as Revel reads it: the store's wall-clock digits, no offset."""
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def encode_json(value: Any) -> str:
    """JSON text with every Decimal written verbatim as a number; floats are refused (money never goes through float)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} cannot be sent as a JSON number")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("refusing to encode a float: money must stay Decimal")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{encode_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(encode_json(v) for v in value) + "]"
    return json.dumps(value)  # str, int, bool, None; anything else raises TypeError


# ---- wire -> domain ---------------------------------------------------------------------------


def object_id(obj: Mapping[str, Any]) -> int | None:
    """An object's id: its ``id`` (a number or digits), else the id its ``resource_uri`` ends with."""
    raw = obj.get("id")
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().isdigit():
        return int(raw)
    uri = obj.get("resource_uri")
    return trailing_id(uri) if isinstance(uri, str) else None


def trailing_id(path: str) -> int | None:
    """The id a Revel URI ends with ("/resources/Order/5001/" -> 5001), or None."""
    match = _TRAILING_ID.search(path)
    return int(match.group(1)) if match else None


def required_id(obj: Mapping[str, Any], kind: str) -> int:
    found = object_id(obj)
    if found is None:
        raise GatewayError.permanent(f"Revel answered a {kind} without an id: {body_excerpt(repr(dict(obj)).encode())}")
    return found


def amount_or_none(value: object) -> Decimal | None:
    """An amount Revel lists (a number or a string), to the cent; None when absent or unreadable."""
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        return None
    try:
        number = Decimal(value)
    except ArithmeticError:
        return None
    if not number.is_finite() or number.copy_abs() >= Decimal("1e12"):
        return None
    return number.quantize(Decimal("0.01"))


def text_or_none(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
