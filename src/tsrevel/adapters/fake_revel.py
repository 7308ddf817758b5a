"""Revel in memory (FakeRevel) and Revel's arithmetic (revel_shows): what the venue would see for an order; no I/O."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import attrs

from tsrevel.adapters.fake_parts import CREATE_THEN_TIMEOUT, CallFaults, Forwarded, forwarded
from tsrevel.adapters.revel_wire import order_body
from tsrevel.domain.errors import GatewayError
from tsrevel.domain.orders import OrderRef, RevelOrder
from tsrevel.domain.ports import Clock

_CENT = Decimal("0.01")
_MONEY_FIELDS = ("subtotal", "discount_amount", "tax", "service_charge", "gratuity", "final_total", "remaining_due")


class RefusedOrder(ValueError):
    """What Revel would answer 400 to: the order's parts do not add up (the message says how)."""


@attrs.frozen(kw_only=True)
class RevelShown:
    """An order the way Revel shows it to the venue, recomputed from what it was sent."""

    subtotal: Decimal
    discount_amount: Decimal
    tax: Decimal
    service_charge: Decimal
    gratuity: Decimal
    final_total: Decimal
    payments: tuple[tuple[str, Decimal], ...]  # (transaction_id, amount)
    remaining_due: Decimal
    has_history: bool
    closed: bool
    items: int

    @property
    def paid(self) -> Decimal:
        return sum((amount for _, amount in self.payments), Decimal("0.00"))

    def as_dict(self) -> dict[str, Any]:
        """The fields as Revel's Order lists them (money as 2-decimal strings)."""
        return {
            **{name: f"{getattr(self, name):f}" for name in _MONEY_FIELDS},
            "has_history": self.has_history,
            "closed": self.closed,
        }


def revel_shows(body: Mapping[str, Any]) -> RevelShown:
    """Recompute an OrderAllInOne body as Revel shows it; RefusedOrder when its parts do not add up.

    Each item's total is price × quantity rounded half up to the cent; subtotal must be their sum;
    subtotal − discount_amount + tax + service_charge + gratuity must be final_total; final_total −
    Σ payments must be remaining_due; a discount needs a Discount URI; nothing may be negative.
    """
    info = body.get("orderInfo")
    items = body.get("items")
    if not isinstance(info, Mapping) or not isinstance(items, list):
        raise RefusedOrder("orderInfo (an object) and items (a list) are required")
    # A field left out is computed, as Revel does; one that is sent must agree.
    amounts = {name: _amount(info[name], f"orderInfo.{name}") for name in _MONEY_FIELDS if name in info}
    lines = Decimal("0.00")
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise RefusedOrder(f"items[{index}] is not an object")
        price = _amount(item.get("price"), f"items[{index}].price")
        quantity = _amount(item.get("quantity"), f"items[{index}].quantity", places=None)
        lines += (price * quantity).quantize(_CENT, rounding=ROUND_HALF_UP)
    subtotal = amounts.get("subtotal", lines)
    if subtotal != lines:
        raise RefusedOrder(f"orderInfo.subtotal {subtotal} is not the items' total {lines}")
    discount, tax = amounts.get("discount_amount", Decimal("0.00")), amounts.get("tax", Decimal("0.00"))
    service, gratuity = amounts.get("service_charge", Decimal("0.00")), amounts.get("gratuity", Decimal("0.00"))
    if discount and not str(info.get("discount") or "").startswith("/resources/Discount/"):
        raise RefusedOrder(f"orderInfo.discount_amount {discount} without a Discount URI in orderInfo.discount")
    final = subtotal - discount + tax + service + gratuity
    stated = amounts.get("final_total", final)
    if stated != final:
        raise RefusedOrder(
            f"orderInfo.final_total {stated} is not subtotal {subtotal} - discount {discount} + tax {tax} "
            f"+ service charge {service} + gratuity {gratuity} = {final}"
        )
    payments = []
    for index, payment in enumerate(body.get("payments") or []):
        if not isinstance(payment, Mapping) or not isinstance(payment.get("payment_type"), int):
            raise RefusedOrder(f"payments[{index}] needs an integer payment_type")
        payments.append((str(payment.get("transaction_id") or ""), _amount(payment.get("amount"), f"payments[{index}].amount")))
    due = final - sum((amount for _, amount in payments), Decimal("0.00"))
    stated_due = amounts.get("remaining_due", due)
    if stated_due != due:
        raise RefusedOrder(f"orderInfo.remaining_due {stated_due} is not final_total {final} - payments {final - due} = {due}")
    history = body.get("history") or []
    return RevelShown(
        subtotal=subtotal, discount_amount=discount, tax=tax, service_charge=service, gratuity=gratuity,
        final_total=final, payments=tuple(payments), remaining_due=due, has_history=bool(history),
        closed=bool(history) and all(isinstance(h, Mapping) and h.get("closed") for h in history), items=len(items),
    )


def _amount(value: object, where: str, *, places: int | None = 2) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise RefusedOrder(f"{where} {value!r} is not an amount")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise RefusedOrder(f"{where} {value!r} is not an amount") from None
    if not number.is_finite() or number < 0:
        raise RefusedOrder(f"{where} {value!r} is not an amount of 0 or more")
    if places is not None:
        if number != number.quantize(_CENT):
            raise RefusedOrder(f"{where} {value!r} has more than 2 decimals")
        number = number.quantize(_CENT)
    return number


class FakeRevel:
    """OrderGateway in memory; like Revel it never deduplicates, so a second create is a second order.

    ``orders`` holds the latest order per local_id, ``created`` every order ever stored (a
    duplicate shows as ``len(created) > len(orders)``), ``lookups`` every find_order reference,
    ``calls`` every call as ``"find <ref>"`` / ``"create <ref>"``, faulted ones included.
    ``shown`` holds, per local_id, the order as Revel shows it (``RevelShown``), recomputed from
    the very body the HTTP adapter would send; an order whose parts do not add up is refused
    like Revel's 400.
    """

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        delay_s: float = 0.0,
        first_id: int = 1001,
        products: Mapping[int, Iterable[tuple[int, str]]] | None = None,
    ) -> None:
        self.products: dict[int, list[tuple[int, str]]] = {est: list(items) for est, items in (products or {}).items()}
        self.orders: dict[str, RevelOrder] = {}
        self.shown: dict[str, RevelShown] = {}
        self.refs: dict[str, OrderRef] = {}
        self.created: list[RevelOrder] = []
        self.lookups: list[str] = []
        self.calls: list[str] = []
        self.correlation_ids: list[str] = []
        self._faults = CallFaults(clock=clock, delay_s=delay_s)
        self._ids = itertools.count(first_id)

    # The part every fake holds (composition): the fault script and the delay of each call.
    script, pending_faults = forwarded("_faults.script", "add", "pending")
    delay_s = Forwarded("_faults", "delay_s")

    def seed(self, order: RevelOrder) -> OrderRef:
        """Put an order in Revel as if someone had created it earlier (not recorded as a call)."""
        return self._store(order)

    async def find_order(self, establishment_id: int, reference: str, *, correlation_id: str) -> OrderRef | None:
        self.calls.append(f"find {reference}")
        self.lookups.append(reference)
        self.correlation_ids.append(correlation_id)
        fault = await self._faults.next("find")
        if fault is not None:
            raise self._faults.error(fault, f"FakeRevel lookup of {reference}", operation="find")
        found = self.orders.get(reference)
        # Revel filters by establishment too; an order under another establishment is not found.
        return self.refs[reference] if found is not None and found.establishment_id == establishment_id else None

    async def create_order(self, order: RevelOrder, *, correlation_id: str) -> OrderRef:
        self.calls.append(f"create {order.local_id}")
        self.correlation_ids.append(correlation_id)
        fault = await self._faults.next("create")
        if fault is None:
            try:
                revel_shows(order_body(order))
            except RefusedOrder as exc:
                raise GatewayError.permanent(f"FakeRevel create of {order.local_id}: HTTP 400: {exc}", status=400) from None
            return self._store(order)
        if fault.kind == CREATE_THEN_TIMEOUT:
            self._store(order)
        raise self._faults.error(fault, f"FakeRevel create of {order.local_id}", operation="create")

    async def list_products(self, establishment_id: int) -> list[tuple[int, str]]:
        """ProductCatalog: ``products[establishment_id]`` as (id, name); recorded as ``"products <id>"``."""
        self.calls.append(f"products {establishment_id}")
        fault = self._faults.script.take("find")  # no delay: a listing for the CLI's checks
        if fault is not None:
            raise self._faults.error(fault, f"FakeRevel product list of establishment {establishment_id}", operation="find")
        return list(self.products.get(establishment_id, []))

    def _store(self, order: RevelOrder) -> OrderRef:
        order_id = next(self._ids)
        ref = OrderRef(order_id, f"/resources/Order/{order_id}/")
        self.orders[order.local_id] = order
        self.refs[order.local_id] = ref
        self.created.append(order)
        try:
            self.shown[order.local_id] = revel_shows(order_body(order))
        except RefusedOrder:
            self.shown.pop(order.local_id, None)  # seeded as-is (someone typed it in Revel)
        return ref

