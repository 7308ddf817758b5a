"""In-memory, recording fakes of Revel, the mailer, TripleSeat and the clock, with scriptable faults; performs no I/O.

They are for unit tests and for rehearsing incidents (a Revel outage, a timeout after a create,
revoked keys) without touching a real system. Assert on their state (``.created``, ``.sent``),
not on call order, unless the order is the point.

Faults: ``fake.script(Fault.transient(n=2), Fault.create_then_timeout())`` queues faults. Every
call of the fake (``find``, ``create``, ``send``, ``fetch``) looks at the *head* of the queue
only: if the head applies to the call it is used (one of its ``n``), otherwise the call runs
normally and the head waits. A fault applies to every kind of call unless limited with
``on="find"`` (or ``"create"``, ``"send"``, ``"fetch"``); ``create_then_timeout`` applies only
to calls with a side effect (``create``, ``send``), so a lookup just before the create passes.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from collections import deque
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import attrs

from tsrevel.domain.errors import GatewayError, StoreUnavailable
from tsrevel.domain.events import TripleSeatEvent
from tsrevel.domain.orders import OrderRef, RevelOrder
from tsrevel.domain.ports import Clock, EmailMessage

TRANSIENT = "transient"
PERMANENT = "permanent"
RATE_LIMITED = "rate_limited"
CREDENTIALS = "credentials"
TIMEOUT = "timeout"
CREATE_THEN_TIMEOUT = "create_then_timeout"

# Calls that change the far side; only they can "succeed, then time out".
_SIDE_EFFECTS = frozenset({"create", "send"})


@attrs.frozen(kw_only=True)
class Fault:
    """One scripted failure, used by the next ``times`` calls it applies to."""

    kind: str
    times: int = 1
    on: str | None = None
    status: int | None = None
    retry_after_s: float | None = None
    message: str = ""

    @classmethod
    def transient(cls, n: int = 1, *, status: int = 503, on: str | None = None) -> Fault:
        """An HTTP 5xx; on a create, Revel may or may not have kept the order (nothing is stored)."""
        return cls(kind=TRANSIENT, times=n, on=on, status=status)

    @classmethod
    def timeout(cls, n: int = 1, *, on: str | None = None) -> Fault:
        """No answer in time; nothing is stored."""
        return cls(kind=TIMEOUT, times=n, on=on)

    @classmethod
    def permanent(cls, *, status: int = 422, message: str = "invalid order", on: str | None = None) -> Fault:
        """The request itself is refused (400/404/422)."""
        return cls(kind=PERMANENT, on=on, status=status, message=message)

    @classmethod
    def rate_limited(cls, retry_after_s: float, n: int = 1, *, on: str | None = None) -> Fault:
        """HTTP 429 asking to come back after retry_after_s seconds of the fake's clock."""
        return cls(kind=RATE_LIMITED, times=n, on=on, status=429, retry_after_s=retry_after_s)

    @classmethod
    def credentials(cls, *, status: int = 401, on: str | None = None) -> Fault:
        """The keys are refused (401/403)."""
        return cls(kind=CREDENTIALS, on=on, status=status)

    @classmethod
    def create_then_timeout(cls) -> Fault:
        """The far side does the work (stores the order, sends the mail), then the caller times out."""
        return cls(kind=CREATE_THEN_TIMEOUT)

    def applies_to(self, operation: str) -> bool:
        if self.on is not None and self.on != operation:
            return False
        return self.kind != CREATE_THEN_TIMEOUT or operation in _SIDE_EFFECTS

    def error(self, what: str, *, operation: str, now: datetime) -> GatewayError:
        """The GatewayError the real adapter would raise for this fault."""
        # The real adapters flag every transient create failure after sending as outcome unknown.
        unknown = operation == "create"
        if self.kind == TRANSIENT:
            return GatewayError.transient(f"{what}: HTTP {self.status} (scripted)", status=self.status, outcome_unknown=unknown)
        if self.kind in (TIMEOUT, CREATE_THEN_TIMEOUT):
            return GatewayError.transient(f"{what}: timed out (scripted)", outcome_unknown=unknown)
        if self.kind == RATE_LIMITED:
            retry_after = now + timedelta(seconds=self.retry_after_s or 0)
            return GatewayError.transient(f"{what}: rate limited (scripted)", status=429, retry_after=retry_after)
        if self.kind == CREDENTIALS:
            return GatewayError.credentials(f"{what}: HTTP {self.status}: key refused (scripted)", status=self.status)
        return GatewayError.permanent(f"{what}: HTTP {self.status}: {self.message} (scripted)", status=self.status)


@attrs.define
class _Queued:
    fault: Fault
    left: int


class FaultScript:
    """A queue of faults; each call takes the head if it applies (see the module docstring)."""

    def __init__(self) -> None:
        self._queue: deque[_Queued] = deque()

    def add(self, *faults: Fault) -> None:
        self._queue.extend(_Queued(fault, fault.times) for fault in faults if fault.times > 0)

    def take(self, operation: str) -> Fault | None:
        """The fault for this call, or None when the head of the queue does not apply to it."""
        if not self._queue or not self._queue[0].fault.applies_to(operation):
            return None
        head = self._queue[0]
        head.left -= 1
        if head.left == 0:
            self._queue.popleft()
        return head.fault

    def clear(self) -> None:
        self._queue.clear()

    @property
    def pending(self) -> list[Fault]:
        """Faults not used up yet, in order (one entry per scripted fault)."""
        return [queued.fault for queued in self._queue]


class ManualClock:
    """A clock that stands still until told to move; always timezone-aware UTC."""

    def __init__(self, start: datetime = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start.astimezone(timezone.utc)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move forward by seconds and return the new time."""
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("ManualClock needs timezone-aware times")
        self._now = moment.astimezone(timezone.utc)


# A fixed clock is a manual clock nobody advances; the second name reads better in some tests.
FixedClock = ManualClock


class _UtcClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


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
        self.delay_s = delay_s
        self._clock: Clock = clock or _UtcClock()
        self._faults = FaultScript()
        self._ids = itertools.count(first_id)

    def script(self, *faults: Fault) -> None:
        """Queue faults for the next calls."""
        self._faults.add(*faults)

    @property
    def pending_faults(self) -> list[Fault]:
        return self._faults.pending

    def seed(self, order: RevelOrder) -> OrderRef:
        """Put an order in Revel as if someone had created it earlier (not recorded as a call)."""
        return self._store(order)

    async def find_order(self, establishment_id: int, reference: str, *, correlation_id: str) -> OrderRef | None:
        self.calls.append(f"find {reference}")
        self.lookups.append(reference)
        self.correlation_ids.append(correlation_id)
        await self._delay()
        fault = self._faults.take("find")
        if fault is not None:
            raise fault.error(f"FakeRevel lookup of {reference}", operation="find", now=self._clock.now())
        found = self.orders.get(reference)
        # Revel filters by establishment too; an order under another establishment is not found.
        return self.refs[reference] if found is not None and found.establishment_id == establishment_id else None

    async def create_order(self, order: RevelOrder, *, correlation_id: str) -> OrderRef:
        self.calls.append(f"create {order.local_id}")
        self.correlation_ids.append(correlation_id)
        await self._delay()
        fault = self._faults.take("create")
        if fault is None:
            try:
                revel_shows(_wire_body(order))
            except RefusedOrder as exc:
                raise GatewayError.permanent(f"FakeRevel create of {order.local_id}: HTTP 400: {exc}", status=400) from None
            return self._store(order)
        if fault.kind == CREATE_THEN_TIMEOUT:
            self._store(order)
        raise fault.error(f"FakeRevel create of {order.local_id}", operation="create", now=self._clock.now())

    async def list_products(self, establishment_id: int) -> list[tuple[int, str]]:
        """ProductCatalog: ``products[establishment_id]`` as (id, name); recorded as ``"products <id>"``."""
        self.calls.append(f"products {establishment_id}")
        fault = self._faults.take("find")
        if fault is not None:
            raise fault.error(f"FakeRevel product list of establishment {establishment_id}", operation="find", now=self._clock.now())
        return list(self.products.get(establishment_id, []))

    def _store(self, order: RevelOrder) -> OrderRef:
        order_id = next(self._ids)
        ref = OrderRef(order_id, f"/resources/Order/{order_id}/")
        self.orders[order.local_id] = order
        self.refs[order.local_id] = ref
        self.created.append(order)
        try:
            self.shown[order.local_id] = revel_shows(_wire_body(order))
        except RefusedOrder:
            self.shown.pop(order.local_id, None)  # seeded as-is (someone typed it in Revel)
        return ref

    async def _delay(self) -> None:
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)


def _wire_body(order: RevelOrder) -> dict[str, Any]:
    # The real adapter's wire mapping (pure, no I/O): the fake checks exactly what would be sent.
    from tsrevel.adapters.revel_http import order_body

    return order_body(order)


class FakeMailer:
    """Mailer in memory: ``sent`` holds every message delivered, ``calls`` every attempt as ``"send <outbox id>"``."""

    def __init__(self, *, clock: Clock | None = None, delay_s: float = 0.0) -> None:
        self.sent: list[EmailMessage] = []
        self.outbox_ids: list[int] = []
        self.calls: list[str] = []
        self.delay_s = delay_s
        self._clock: Clock = clock or _UtcClock()
        self._faults = FaultScript()

    def script(self, *faults: Fault) -> None:
        """Queue faults for the next sends; create_then_timeout means "delivered, then timed out"."""
        self._faults.add(*faults)

    @property
    def pending_faults(self) -> list[Fault]:
        return self._faults.pending

    async def send(self, message: EmailMessage, *, outbox_id: int) -> None:
        self.calls.append(f"send {outbox_id}")
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        fault = self._faults.take("send")
        if fault is None or fault.kind == CREATE_THEN_TIMEOUT:
            self.sent.append(message)
            self.outbox_ids.append(outbox_id)
        if fault is not None:
            raise fault.error(f"FakeMailer send of {message.kind}", operation="send", now=self._clock.now())


class FakeTripleSeat:
    """EventSource and EventFeed in memory: ``events`` by id, and raw ``payloads`` by id for the feed.

    ``fetched`` records every requested id (faulted ones included), ``searched`` every search's
    day. The search answers each payload updated on or after the day (by its ``updated_at``,
    MM/DD/YYYY first) without ``documents`` and ``financials``, as TripleSeat's search does.
    """

    def __init__(self, *events: TripleSeatEvent, clock: Clock | None = None, delay_s: float = 0.0) -> None:
        self.events: dict[str, TripleSeatEvent] = {event.id: event for event in events}
        self.payloads: dict[str, Mapping[str, Any]] = {}
        self.searched: list[date] = []
        self.fetched: list[str] = []
        self.delay_s = delay_s
        self._clock: Clock = clock or _UtcClock()
        self._faults = FaultScript()

    def add(self, event: TripleSeatEvent) -> None:
        self.events[event.id] = event

    def add_payload(self, payload: Mapping[str, Any]) -> None:
        """Serve this raw event object (fetch and search); it replaces an earlier one with its id."""
        event = TripleSeatEvent.from_payload(payload)
        self.payloads[event.id] = payload
        self.events[event.id] = event

    async def fetch_event_data(self, event_id: str, *, correlation_id: str) -> Mapping[str, Any]:
        await self._call("fetch", f"fetch of event {event_id}", event_id)
        try:
            return self.payloads[event_id]
        except KeyError:
            raise GatewayError.permanent(f"FakeTripleSeat fetch of event {event_id}: HTTP 404: no such event", status=404) from None

    async def search_events(self, *, updated_since: date, correlation_id: str) -> list[Mapping[str, Any]]:
        self.searched.append(updated_since)
        await self._call("search", "event search", None)
        return [
            {k: v for k, v in payload.items() if k not in ("documents", "financials")}
            for payload in self.payloads.values()
            if (_us_day(payload.get("updated_at")) or updated_since) >= updated_since
        ]

    async def _call(self, operation: str, what: str, event_id: str | None) -> None:
        if event_id is not None:
            self.fetched.append(event_id)
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        fault = self._faults.take(operation)
        if fault is not None:
            raise fault.error(f"FakeTripleSeat {what}", operation=operation, now=self._clock.now())

    def script(self, *faults: Fault) -> None:
        """Queue faults for the next fetches."""
        self._faults.add(*faults)

    @property
    def pending_faults(self) -> list[Fault]:
        return self._faults.pending

    async def fetch_event(self, event_id: str, *, correlation_id: str) -> TripleSeatEvent:
        self.fetched.append(event_id)
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        fault = self._faults.take("fetch")
        if fault is not None:
            raise fault.error(f"FakeTripleSeat fetch of event {event_id}", operation="fetch", now=self._clock.now())
        try:
            return self.events[event_id]
        except KeyError:
            raise GatewayError.permanent(f"FakeTripleSeat fetch of event {event_id}: HTTP 404: no such event", status=404) from None


def _us_day(value: object) -> date | None:
    try:
        return datetime.strptime(str(value or "")[:10], "%m/%d/%Y").date()
    except ValueError:
        return None


__all__ = [
    "Fault",
    "FaultScript",
    "FakeMailer",
    "FakeRevel",
    "FakeTripleSeat",
    "FixedClock",
    "ManualClock",
    "RefusedOrder",
    "RevelShown",
    "revel_shows",
]


@attrs.define
class _StoreFault:
    operations: frozenset[str]  # empty: every call
    left: int | None  # None: until heal()
    error: BaseException


class FlakyStore:
    """A Store wrapper whose calls fail as scripted (StoreUnavailable unless told otherwise); the rest reach inner.

    ``store.fail("finish", "complete_order", times=2)`` fails the next two such calls;
    ``store.fail()`` fails every call until ``store.heal()``. ``failed`` records each failed call's name.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failed: list[str] = []
        self._faults: list[_StoreFault] = []

    def fail(self, *operations: str, times: int | None = None, error: BaseException | None = None) -> None:
        self._faults.append(
            _StoreFault(frozenset(operations), times, error or StoreUnavailable("database is locked (scripted)"))
        )

    def heal(self) -> None:
        self._faults.clear()

    def _take(self, operation: str) -> BaseException | None:
        for fault in self._faults:
            if not fault.operations or operation in fault.operations:
                if fault.left is not None:
                    fault.left -= 1
                    if fault.left <= 0:
                        self._faults.remove(fault)
                self.failed.append(operation)
                return fault.error
        return None

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            error = self._take(name)
            if error is not None:
                raise error
            return await attr(*args, **kwargs)

        return call
