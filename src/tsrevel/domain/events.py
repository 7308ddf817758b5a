"""TripleSeat webhook envelope and event, parsed from decoded JSON by named constructors; performs no I/O."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import attrs

from tsrevel.domain.errors import PayloadError
from tsrevel.domain.text import may_hold_surrogates, without_lone_surrogates

# Keys under which captured deliveries and the API directory put the nested object.
EVENT_KEYS = ("event", "object")
OTHER_OBJECT_KEYS = ("booking", "lead")

LOCAL_FORMAT = "%m/%d/%Y %I:%M %p"
# LOCAL_FORMAT as the regex strptime builds for it: strptime costs tens of microseconds a call,
# twice per event at intake and again in the worker (docs/performance.md, P1).
_LOCAL_TIME = re.compile(r"(1[0-2]|0[1-9]|[1-9])/(3[01]|[12]\d|0[1-9]|[1-9])/(\d\d\d\d) (1[0-2]|0[1-9]|[1-9]):([0-5]\d|\d) (AM|PM)")
# Years far enough from datetime's limits that shifting by any UTC offset cannot overflow.
_YEARS = range(2, 9999)
# Numeric ids are bounded like string ids (64 characters): int() of 1e999999 would exhaust memory.
_MAX_NUMERIC_ID = Decimal("1e64")
_MAX_AMOUNT = Decimal("1e12")  # built once, not on every amount parsed
CENT = Decimal("0.01")
# A quantity has at most this many decimal places (2.5 hours, 0.125 kg); 1E-999999999 is no quantity.
_QUANTITY_PLACES = 6
# Commas only as thousands separators: "38,50" (a decimal comma) must not become 3850.
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")


@attrs.frozen(kw_only=True)
class Contact:
    """The event's contact person, as far as TripleSeat told us."""

    first_name: str = ""
    last_name: str = ""
    email: str | None = None
    phone: str | None = None

    @property
    def full_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p)


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


def cents(value: Decimal) -> Decimal:
    """An amount rounded half up to the cent: the one rounding rule, used for a line's quantity x price."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@attrs.frozen(kw_only=True)
class BillingTotal:
    """A charge named by the venue (tax, gratuity, service fee): per document, or summed per event.

    ``document_index`` is None for the event-level figure (``{name, total}``); ``rate`` is the
    detail's ``value`` (such as 8.375 for a percentage), kept as evidence only.
    """

    name: str
    amount: Decimal
    document_index: int | None = None
    billing_id: str | None = None
    rate: Decimal | None = None


# Payment states that mean the money was taken (docs/configuration.md, "Payments").
PAID_STATES = frozenset({"paid", "captured", "settled", "completed", "succeeded", "partially_refunded"})
# States that mean it was not (or no longer is): not counted, and not worth a warning.
UNPAID_STATES = frozenset(
    {"pending", "unpaid", "scheduled", "authorized", "failed", "declined", "void", "voided", "canceled", "cancelled", "refunded"}
)


@attrs.frozen(kw_only=True)
class Payment:
    """One ``payment_set.payments[]`` entry of a document (or of the event)."""

    id: str | None
    amount: Decimal
    state: str = ""  # lower case, as sent
    paid_at: str | None = None
    refunded_at: str | None = None
    amount_refunded: Decimal = Decimal("0.00")
    payment_method: str = ""
    document_index: int | None = None
    paid_time: datetime | None = None  # paid_at read: aware when it carried an offset, else the site's wall clock

    @property
    def state_known(self) -> bool:
        """False for a state we have no reading of; such a payment is never counted (and ops are told)."""
        return self.state in PAID_STATES or self.state in UNPAID_STATES or (not self.state and self.paid_at is not None)

    @property
    def counted(self) -> Decimal:
        """What the client has paid and kept paid: amount - amount_refunded once paid; 0 when unpaid, refunded or unknown.

        Paid means a state in PAID_STATES, or no state at all but a ``paid_at``. A ``refunded_at``
        without ``amount_refunded`` is a whole refund.
        """
        paid = self.state in PAID_STATES or (not self.state and self.paid_at is not None)
        if not paid:
            return Decimal("0.00")
        if self.refunded_at is not None and self.amount_refunded == 0:
            return Decimal("0.00")
        return max(self.amount - self.amount_refunded, Decimal("0.00"))


@attrs.frozen(kw_only=True)
class Document:
    """One event document's own money: its financials and the sum of its lines' discounts."""

    index: int
    id: str | None = None
    grand_total: Decimal | None = None
    amount_due: Decimal | None = None
    discounts_total: Decimal | None = None
    line_discounts: Decimal = Decimal("0.00")

    @property
    def discount(self) -> Decimal:
        """financials.discounts_total when sent (the lines' discounts are its breakdown), else the lines' sum; never both."""
        return self.discounts_total if self.discounts_total is not None else self.line_discounts


@attrs.frozen(kw_only=True)
class TripleSeatEvent:
    """A TripleSeat event, with times both as the site's local wall clock and as UTC when sent."""

    id: str
    name: str = ""
    status: str = ""
    site_id: str | None = None
    location_id: str | None = None
    room_ids: tuple[str, ...] = ()
    booking_id: str | None = None
    account_id: str | None = None
    contact_id: str | None = None
    contact: Contact = Contact()
    guest_count: int | None = None
    guaranteed_guest_count: int | None = None
    description: str = ""
    start_local: datetime | None = None
    end_local: datetime | None = None
    start_utc: datetime | None = None
    end_utc: datetime | None = None
    updated_at: str | None = None
    has_financials: bool = False
    line_items: tuple[LineItem, ...] = ()
    billing_totals: tuple[BillingTotal, ...] = ()  # per document when any document has them, else the event's
    event_billing_totals: tuple[BillingTotal, ...] = ()  # the event-level sums ({name, total}), as sent
    grand_total: Decimal | None = None
    documents: tuple[Document, ...] = ()
    payments: tuple[Payment, ...] = ()  # the documents' payments, else the event's own payment_set

    @property
    def discount_total(self) -> Decimal:
        """The whole discount of the event: each document's, added (see Document.discount)."""
        return sum((d.discount for d in self.documents), Decimal("0.00"))

    def discount_from(self, source: str) -> Decimal:
        """The discount read one way: "document_total" (discount_total) or "lines" (only the lines' discounts)."""
        if source == "lines":
            return sum((d.line_discounts for d in self.documents), Decimal("0.00"))
        return self.discount_total

    def billing_from(self, source: str) -> tuple[BillingTotal, ...]:
        """The billing details read one way: "documents" (billing_totals) or "event" (the event's sums when sent)."""
        if source == "event" and self.event_billing_totals:
            return self.event_billing_totals
        return self.billing_totals

    @property
    def amount_due(self) -> Decimal | None:
        """Σ the documents' financials.amount_due, or None when no document sent one."""
        dues = [d.amount_due for d in self.documents if d.amount_due is not None]
        return sum(dues, Decimal("0.00")) if dues else None

    @classmethod
    def from_payload(cls, data: object, *, path: str = "event") -> TripleSeatEvent:
        """Parse the nested event object; raises PayloadError naming the field path."""
        obj = _mapping(data, path)
        event_id = _id(obj.get("id"), f"{path}.id")
        if event_id is None:
            raise PayloadError(f"{path}.id", obj.get("id"), "is missing; every event needs an id")
        start_local, start_utc = _times(obj, "event_start", path)
        end_local, end_utc = _times(obj, "event_end", path)
        documents = obj.get("documents")
        items: list[LineItem] = []
        totals: list[BillingTotal] = []
        docs: list[Document] = []
        payments: list[Payment] = []
        grand_total = _money(obj.get("grand_total"), f"{path}.grand_total")
        documents_total: Decimal | None = None
        if documents is not None:
            for d_index, doc in enumerate(_sequence(documents, f"{path}.documents")):
                d_path = f"{path}.documents[{d_index}]"
                doc_map = _mapping(doc, d_path)
                first_item = len(items)
                raw_items = doc_map.get("line_items")
                if raw_items is not None:
                    for i_index, item in enumerate(_sequence(raw_items, f"{d_path}.line_items")):
                        items.append(_line_item(item, d_index, f"{d_path}.line_items[{i_index}]"))
                totals.extend(_billing_totals(doc_map.get("billing_totals"), f"{d_path}.billing_totals", d_index))
                payments.extend(_payments(doc_map.get("payment_set"), f"{d_path}.payment_set", d_index))
                fin = _mapping(doc_map.get("financials") or {}, f"{d_path}.financials")
                document = Document(
                    index=d_index,
                    id=_id(doc_map.get("id"), f"{d_path}.id"),
                    grand_total=_money(fin.get("grand_total"), f"{d_path}.financials.grand_total"),
                    amount_due=_money(fin.get("amount_due"), f"{d_path}.financials.amount_due"),
                    discounts_total=_money(fin.get("discounts_total"), f"{d_path}.financials.discounts_total"),
                    line_discounts=sum((i.discount for i in items[first_item:]), Decimal("0.00")),
                )
                docs.append(document)
                if document.grand_total is not None:
                    documents_total = document.grand_total + (documents_total or 0)
        # billing_totals and payments are per document and again per event: take one, never both.
        event_totals = _billing_totals(obj.get("billing_totals"), f"{path}.billing_totals", None)
        if not totals:
            totals.extend(event_totals)
        if not payments:
            payments.extend(_payments(obj.get("payment_set"), f"{path}.payment_set", None))
        return cls(
            id=event_id,
            name=_text(obj.get("name"), f"{path}.name"),
            status=_text(obj.get("status"), f"{path}.status").strip().upper(),
            site_id=_id(obj.get("site_id"), f"{path}.site_id"),
            location_id=_id(obj.get("location_id"), f"{path}.location_id"),
            room_ids=tuple(
                rid
                for i, r in enumerate(_sequence(obj.get("room_ids") or (), f"{path}.room_ids"))
                if (rid := _id(r, f"{path}.room_ids[{i}]")) is not None
            ),
            booking_id=_id(obj.get("booking_id"), f"{path}.booking_id"),
            account_id=_id(obj.get("account_id"), f"{path}.account_id"),
            contact_id=_id(obj.get("contact_id"), f"{path}.contact_id"),
            contact=_contact(obj.get("contact"), f"{path}.contact"),
            guest_count=_count(obj.get("guest_count"), f"{path}.guest_count"),
            guaranteed_guest_count=_count(
                obj.get("guaranteed_guest_count"), f"{path}.guaranteed_guest_count"
            ),
            description=_text(obj.get("description"), f"{path}.description"),
            start_local=start_local,
            end_local=end_local,
            start_utc=start_utc,
            end_utc=end_utc,
            updated_at=_text(obj.get("updated_at"), f"{path}.updated_at") or None,
            has_financials=documents is not None,
            line_items=tuple(items),
            billing_totals=tuple(totals),
            event_billing_totals=tuple(event_totals),
            # The documents' own totals, summed, win over the event-level figure.
            grand_total=documents_total if documents_total is not None else grand_total,
            documents=tuple(docs),
            payments=tuple(payments),
        )


@attrs.frozen(kw_only=True)
class WebhookEnvelope:
    """A TripleSeat webhook: its trigger type and the nested object it carries.

    ``event`` is set when the nested object is an event (key ``event`` or ``object``); a
    ``booking`` or ``lead`` object is recorded by its key and id only, since it makes no order.
    """

    trigger_type: str
    object_key: str | None
    event: TripleSeatEvent | None
    object_id: str | None = None
    message: str | None = None

    @classmethod
    def from_payload(cls, data: object) -> WebhookEnvelope:
        """Parse a decoded webhook body; raises PayloadError naming the field path."""
        obj = _mapping(data, "$")
        trigger = obj.get("webhook_trigger_type")
        if not isinstance(trigger, str) or not trigger.strip():
            raise PayloadError("webhook_trigger_type", trigger, "is missing or not a non-empty string")
        message = obj.get("message")
        message = message if isinstance(message, str) else None
        for key in EVENT_KEYS:
            if obj.get(key) is not None:
                event = TripleSeatEvent.from_payload(obj[key], path=key)
                return cls(
                    trigger_type=trigger.strip().upper(),
                    object_key=key,
                    event=event,
                    object_id=event.id,
                    message=message,
                )
        for key in OTHER_OBJECT_KEYS:
            if obj.get(key) is not None:
                other = _mapping(obj[key], key)
                return cls(
                    trigger_type=trigger.strip().upper(),
                    object_key=key,
                    event=None,
                    object_id=_id(other.get("id"), f"{key}.id"),
                    message=message,
                )
        return cls(trigger_type=trigger.strip().upper(), object_key=None, event=None, message=message)

    @classmethod
    def from_json_bytes(cls, body: bytes) -> WebhookEnvelope:
        """Decode and parse a raw webhook body; malformed JSON is a PayloadError too."""
        return cls.from_payload(decode_json(body))


def decode_json(body: bytes) -> Any:
    """Decode a JSON document, turning every decoding failure into a PayloadError."""
    try:
        decoded = json.loads(body, parse_float=Decimal)
    except RecursionError:
        raise PayloadError("$", body[:40], "is nested too deeply to be a TripleSeat payload") from None
    except (UnicodeDecodeError, ValueError, ArithmeticError) as exc:  # 1e999999999999999999999 -> InvalidOperation
        raise PayloadError("$", body[:40], f"is not valid JSON ({exc})") from None
    # A lone "\ud800" cannot be stored, emailed or logged as UTF-8: it becomes U+FFFD here, once.
    return without_lone_surrogates(decoded) if may_hold_surrogates(body) else decoded


# ---- field parsers: each takes the value and its path, and raises PayloadError on bad input ----


def _mapping(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadError(path, value, "is not a JSON object")
    return value


def _sequence(value: object, path: str) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise PayloadError(path, value, "is not a JSON array")
    return value


def _text(value: object, path: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return str(value)
    raise PayloadError(path, value, "is not text")


def _id(value: object, path: str) -> str | None:
    """Normalise an id sent as an integer or a string (8803 and "8803" are the same id)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise PayloadError(path, value, "is not an id")
    if isinstance(value, int):
        if value.bit_length() > 212 and abs(value) >= 10**64:  # like string ids: at most 64 digits
            raise PayloadError(path, value, "is not an id (more than 64 digits)")
        return str(value)
    if isinstance(value, (float, Decimal)):
        number = Decimal(repr(value)) if isinstance(value, float) else value
        # NaN and infinities (JSON's NaN/Infinity) and huge exponents would break or stall int().
        if number.is_finite() and number.copy_abs() < _MAX_NUMERIC_ID and number == number.to_integral_value():
            return str(int(number))
        raise PayloadError(path, value, "is not an id")
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 64 or any(ch.isspace() for ch in text):
            raise PayloadError(path, value, "is not an id")
        if text.isascii() and text.isdigit():  # "²".isdigit() is True, but int("²") fails
            return str(int(text))
        return text
    raise PayloadError(path, value, "is not an id")


def _decimal(value: object, path: str) -> Decimal | None:
    """Parse a number sent as a number or a string, never through float; refuses non-finite and absurd values."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise PayloadError(path, value, "is not a number")
    if isinstance(value, (int, Decimal)):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("$"):
            text = text[1:]
        if "," in text:
            if not _THOUSANDS.fullmatch(text):
                raise PayloadError(path, value, "is not a number")
            text = text.replace(",", "")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise PayloadError(path, value, "is not a number") from None
    else:
        raise PayloadError(path, value, "is not a number")
    if not number.is_finite():
        raise PayloadError(path, value, "is not a finite number")
    if number.copy_abs() >= _MAX_AMOUNT:  # copy_abs: abs() overflows on 1e999999999
        raise PayloadError(path, value, "is too large to be an amount")
    if _places(number) > 12:  # 1E-999999999: its digits would not even fit in memory when printed
        raise PayloadError(path, value, "has an absurd exponent (more than 12 decimal places)")
    return number


def _places(number: Decimal) -> int:
    """Decimal places that carry a digit: 3.2500 -> 2, 1E-9 -> 9, 0E-999 -> 0; read off the tuple, no arithmetic."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite: checked by the callers
    if exponent >= 0:
        return 0
    trailing = 0
    for digit in reversed(digits):
        if digit:
            return max(0, -(exponent + trailing))
        trailing += 1
    return 0  # all zeros


def _money(value: object, path: str) -> Decimal | None:
    """An amount of money, quantised to the cent here, once: non-negative, and no digit beyond the cent."""
    number = _decimal(value, path)
    if number is None:
        return None
    if number < 0:
        raise PayloadError(path, value, "is negative; an amount of money must be 0 or more")
    if _places(number) > 2:
        raise PayloadError(path, value, "has more than 2 decimals; money is exact to the cent")
    return number.quantize(CENT)


def _required_decimal(value: object, path: str) -> Decimal:
    number = _decimal(value, path)
    if number is None:
        raise PayloadError(path, value, "is missing; a number is required")
    return number


def _required_money(value: object, path: str) -> Decimal:
    number = _money(value, path)
    if number is None:
        raise PayloadError(path, value, "is missing; a number is required")
    return number


def _quantity(value: object, path: str) -> Decimal:
    number = _required_decimal(value, path)
    if _places(number) > _QUANTITY_PLACES:
        raise PayloadError(path, value, f"has more than {_QUANTITY_PLACES} decimal places; not a quantity")
    return number


def _count(value: object, path: str) -> int | None:
    number = _decimal(value, path)
    if number is None:
        return None
    if number != number.to_integral_value() or number < 0:
        raise PayloadError(path, value, "is not a whole, non-negative count")
    return int(number)


def _contact(value: object, path: str) -> Contact:
    if value is None:
        return Contact()
    obj = _mapping(value, path)
    return Contact(
        first_name=_text(obj.get("first_name"), f"{path}.first_name").strip(),
        last_name=_text(obj.get("last_name"), f"{path}.last_name").strip(),
        email=_first(obj.get("email_addresses"), "address", f"{path}.email_addresses"),
        phone=_first(obj.get("phone_numbers"), "number", f"{path}.phone_numbers"),
    )


def _first(value: object, key: str, path: str) -> str | None:
    if value is None:
        return None
    for index, entry in enumerate(_sequence(value, path)):
        if isinstance(entry, str) and entry.strip():
            return entry.strip()
        text = _text(_mapping(entry, f"{path}[{index}]").get(key), f"{path}[{index}].{key}").strip()
        if text:
            return text
    return None


def _line_item(value: object, document_index: int, path: str) -> LineItem:
    fast = _plain_line_item(value, document_index) if type(value) is dict else None
    return fast if fast is not None else _general_line_item(value, document_index, path)


def _general_line_item(value: object, document_index: int, path: str) -> LineItem:
    obj = _mapping(value, path)
    category = obj.get("category")
    category_name = None
    if isinstance(category, Mapping):
        category_name = _text(category.get("name"), f"{path}.category.name") or None
    elif category is not None:
        category_name = _text(category, f"{path}.category") or None
    return LineItem(
        id=_id(obj.get("id"), f"{path}.id"),
        document_index=document_index,
        quantity=_quantity(obj.get("quantity"), f"{path}.quantity"),
        price=_required_money(obj.get("price"), f"{path}.price"),
        total_price=_money(obj.get("total_price"), f"{path}.total_price"),
        discount=_discount(obj.get("discount"), f"{path}.discount"),
        display_name=_text(obj.get("display_name"), f"{path}.display_name").strip(),
        description=_text(obj.get("description"), f"{path}.description"),
        category=category_name,
        menu_item_id=_id(obj.get("menu_item_id"), f"{path}.menu_item_id"),
        section=_text(obj.get("section"), f"{path}.section") or None,
    )


# ---- the fast path: the common shapes of a line item, parsed without building a field path ------
#
# Each helper returns _SLOW for anything but the plainest input (a digits-only string, an int, a
# finite JSON number), and the line item is then parsed again by the general parsers above, which
# accept and refuse exactly as before and name the field path. So the fast path changes no
# outcome: it only skips work when nothing can go wrong (tests/unit/test_events_fast_path.py).

_SLOW: Any = object()
_ZERO_CENTS = Decimal("0.00")
_MAX_PLAIN_ID_BITS = 212  # below 10**64, like _id's bound


@functools.lru_cache(maxsize=2048)
def _plain_number_text(text: str, max_places: int) -> Decimal | None:
    """A digits-and-one-dot string ("3.25", "48") as a Decimal with at most max_places places; None otherwise."""
    if not (text.isascii() and text.replace(".", "", 1).isdigit()):
        return None
    number = Decimal(text)
    if number >= _MAX_AMOUNT or _places(number) > max_places:
        return None
    return number


def _plain_number(value: object, max_places: int) -> Decimal | None:
    kind = type(value)
    if kind is str:
        return _plain_number_text(value, max_places)  # type: ignore[arg-type]
    if kind is int:
        return Decimal(value) if 0 <= value < 10**12 else None  # type: ignore[operator,arg-type]
    if kind is Decimal:
        if value.is_finite() and 0 <= value < _MAX_AMOUNT and _places(value) <= max_places:  # type: ignore[union-attr,operator,arg-type]
            return value  # type: ignore[return-value]
    return None


def _plain_money(value: object) -> Decimal | None:
    """Money on the fast path: what _money returns for a plain non-negative amount (quantised to the cent), else None."""
    number = _plain_number(value, 2)
    return None if number is None else number.quantize(CENT)


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


def _plain_text(value: object) -> Any:
    if value is None:
        return ""
    return value if type(value) is str else _SLOW


def _plain_line_item(obj: dict[str, Any], document_index: int) -> LineItem | None:
    """The line item exactly as the general path parses it, or None when any field is not of a plain shape."""
    category = obj.get("category")
    if type(category) is dict:
        category = category.get("name")
    category_name = _plain_text(category)
    item_id = _plain_id(obj.get("id"))
    menu_item_id = _plain_id(obj.get("menu_item_id"))
    display_name = _plain_text(obj.get("display_name"))
    description = _plain_text(obj.get("description"))
    section = _plain_text(obj.get("section"))
    if (category_name is _SLOW or item_id is _SLOW or menu_item_id is _SLOW or display_name is _SLOW
            or description is _SLOW or section is _SLOW):
        return None
    quantity = _plain_number(obj.get("quantity"), _QUANTITY_PLACES)
    price = _plain_money(obj.get("price"))
    if quantity is None or price is None:
        return None
    total_price = _plain_optional_money(obj.get("total_price"))
    discount = _plain_optional_money(obj.get("discount"))
    if total_price is _SLOW or discount is _SLOW:
        return None
    return LineItem(
        id=item_id,
        document_index=document_index,
        quantity=quantity,
        price=price,
        total_price=total_price,
        discount=discount or _ZERO_CENTS,  # absent, or 0: Decimal("0.00") as _discount gives
        display_name=display_name.strip(),
        description=description,
        category=category_name or None,
        menu_item_id=menu_item_id,
        section=section or None,
    )


def _discount(value: object, path: str) -> Decimal:
    """A line's discount: an amount, or an object carrying one ({amount} or {total}); absent is 0."""
    if isinstance(value, Mapping):
        for key in ("amount", "total", "value"):
            if value.get(key) is not None:
                return _money(value.get(key), f"{path}.{key}") or Decimal("0.00")
        return Decimal("0.00")
    return _money(value, path) or Decimal("0.00")


def _billing_totals(value: object, path: str, document_index: int | None) -> list[BillingTotal]:
    if value is None:
        return []
    return [
        _billing_total(total, f"{path}[{index}]", document_index)
        for index, total in enumerate(_sequence(value, path))
    ]


def _billing_total(value: object, path: str, document_index: int | None = None) -> BillingTotal:
    """``{billing_id, description, value, total_price}`` per document, ``{name, total}`` per event."""
    obj = _mapping(value, path)
    name = ""
    for key in ("name", "description", "display_name"):
        name = _text(obj.get(key), f"{path}.{key}").strip()
        if name:
            break
    amount = None
    for key in ("total_price", "amount", "total"):
        amount = _money(obj.get(key), f"{path}.{key}")
        if amount is not None:
            break
    return BillingTotal(
        name=name,
        amount=amount if amount is not None else Decimal("0.00"),
        document_index=document_index,
        billing_id=_id(obj.get("billing_id"), f"{path}.billing_id"),
        rate=_rate(obj.get("value"), f"{path}.value"),
    )


def _rate(value: object, path: str) -> Decimal | None:
    """A billing detail's ``value`` (a rate such as 8.375, or "8.375%"): evidence only, so unreadable is None, not an error."""
    if isinstance(value, str):
        value = value.strip().removesuffix("%")
    try:
        return _decimal(value, path)
    except PayloadError:
        return None


def _payments(value: object, path: str, document_index: int | None) -> list[Payment]:
    """``payment_set`` as ``{payments: [...]}`` or as the list itself."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        raw = value.get("payments")
        if raw is None:
            return []
        path = f"{path}.payments"
    else:
        raw = value
    result = []
    for index, entry in enumerate(_sequence(raw, path)):
        p_path = f"{path}[{index}]"
        obj = _mapping(entry, p_path)
        method = obj.get("payment_method")
        if isinstance(method, Mapping):
            method = method.get("name")
        result.append(
            Payment(
                id=_id(obj.get("id"), f"{p_path}.id"),
                amount=_required_money(obj.get("amount"), f"{p_path}.amount"),
                state=_text(obj.get("state"), f"{p_path}.state").strip().lower(),
                paid_at=_text(obj.get("paid_at"), f"{p_path}.paid_at").strip() or None,
                refunded_at=_text(obj.get("refunded_at"), f"{p_path}.refunded_at").strip() or None,
                amount_refunded=_money(obj.get("amount_refunded"), f"{p_path}.amount_refunded") or Decimal("0.00"),
                payment_method=_text(method, f"{p_path}.payment_method").strip(),
                document_index=document_index,
                paid_time=_moment(obj.get("paid_at")),
            )
        )
    return result


def _moment(value: object) -> datetime | None:
    """A payment time in any shape TripleSeat may use (ISO with or without offset, or its local format); None if unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return _local_time(text, "")
    except PayloadError:
        pass
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None  # evidence only: the payment still counts, without a date
    return parsed if parsed.year in _YEARS else None


def _times(obj: Mapping[str, Any], field: str, path: str) -> tuple[datetime | None, datetime | None]:
    """The site-local wall-clock time and the UTC instant of ``event_start``/``event_end``."""
    local = _local_time(obj.get(field), f"{path}.{field}")
    utc = _utc_time(obj.get(f"{field}_utc"), f"{path}.{field}_utc")
    iso = _iso_time(obj.get(f"{field}_iso8601"), f"{path}.{field}_iso8601")
    if iso is not None:
        if local is None:
            local = iso.replace(tzinfo=None)
        if utc is None:
            utc = iso.astimezone(timezone.utc)
    return local, utc


def _local_time(value: object, path: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError(path, value, "is not a time like '12/28/2025 6:00 PM'")
    text = " ".join(value.split()).upper()
    fast = _LOCAL_TIME.fullmatch(text)
    if fast is not None:
        month, day, year, hour, minute, half = fast.groups()
        try:
            parsed = datetime(int(year), int(month), int(day), int(hour) % 12 + (12 if half == "PM" else 0), int(minute))
        except ValueError:
            pass  # such as 02/30: strptime below refuses it the same way
        else:
            return _in_range(parsed, value, path)
    for fmt in (LOCAL_FORMAT, "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M"):
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return _in_range(parsed, value, path)
    raise PayloadError(path, value, "is not a time like '12/28/2025 6:00 PM'")


def _utc_time(value: object, path: str) -> datetime | None:
    if value is None or value == "":
        return None
    parsed = _iso_time(value, path)
    if parsed is None:
        return None
    return parsed.astimezone(timezone.utc)


def _iso_time(value: object, path: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError(path, value, "is not an ISO 8601 time")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(path, value, "is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise PayloadError(path, value, "has no UTC offset")
    return _in_range(parsed, value, path)


def _in_range(parsed: datetime, value: object, path: str) -> datetime:
    if parsed.year not in _YEARS:
        raise PayloadError(path, value, "is out of range")
    return parsed
