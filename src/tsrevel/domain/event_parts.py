"""The parts of a TripleSeat event besides its line items (contact, billing details, payments, documents), with their parsers."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

import attrs

from tsrevel.domain.errors import PayloadError
from tsrevel.domain.money_parsing import as_decimal, as_money, as_required_money
from tsrevel.domain.payload_fields import as_array, as_id, as_moment, as_object, as_text


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


def contact_from(value: object, path: str) -> Contact:
    if value is None:
        return Contact()
    obj = as_object(value, path)
    return Contact(
        first_name=as_text(obj.get("first_name"), f"{path}.first_name").strip(),
        last_name=as_text(obj.get("last_name"), f"{path}.last_name").strip(),
        email=_first(obj.get("email_addresses"), "address", f"{path}.email_addresses"),
        phone=_first(obj.get("phone_numbers"), "number", f"{path}.phone_numbers"),
    )


def _first(value: object, key: str, path: str) -> str | None:
    if value is None:
        return None
    for index, entry in enumerate(as_array(value, path)):
        if isinstance(entry, str) and entry.strip():
            return entry.strip()
        text = as_text(as_object(entry, f"{path}[{index}]").get(key), f"{path}[{index}].{key}").strip()
        if text:
            return text
    return None


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


def billing_totals_from(value: object, path: str, document_index: int | None) -> list[BillingTotal]:
    if value is None:
        return []
    return [
        _billing_total(total, f"{path}[{index}]", document_index)
        for index, total in enumerate(as_array(value, path))
    ]


def _billing_total(value: object, path: str, document_index: int | None = None) -> BillingTotal:
    """``{billing_id, description, value, total_price}`` per document, ``{name, total}`` per event."""
    obj = as_object(value, path)
    name = ""
    for key in ("name", "description", "display_name"):
        name = as_text(obj.get(key), f"{path}.{key}").strip()
        if name:
            break
    amount = None
    for key in ("total_price", "amount", "total"):
        amount = as_money(obj.get(key), f"{path}.{key}")
        if amount is not None:
            break
    return BillingTotal(
        name=name,
        amount=amount if amount is not None else Decimal("0.00"),
        document_index=document_index,
        billing_id=as_id(obj.get("billing_id"), f"{path}.billing_id"),
        rate=_rate(obj.get("value"), f"{path}.value"),
    )


def _rate(value: object, path: str) -> Decimal | None:
    """A billing detail's ``value`` (a rate such as 8.375, or "8.375%"): evidence only, so unreadable is None, not an error."""
    if isinstance(value, str):
        value = value.strip().removesuffix("%")
    try:
        return as_decimal(value, path)
    except PayloadError:
        return None


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


def payments_from(value: object, path: str, document_index: int | None) -> list[Payment]:
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
    for index, entry in enumerate(as_array(raw, path)):
        p_path = f"{path}[{index}]"
        obj = as_object(entry, p_path)
        method = obj.get("payment_method")
        if isinstance(method, Mapping):
            method = method.get("name")
        result.append(
            Payment(
                id=as_id(obj.get("id"), f"{p_path}.id"),
                amount=as_required_money(obj.get("amount"), f"{p_path}.amount"),
                state=as_text(obj.get("state"), f"{p_path}.state").strip().lower(),
                paid_at=as_text(obj.get("paid_at"), f"{p_path}.paid_at").strip() or None,
                refunded_at=as_text(obj.get("refunded_at"), f"{p_path}.refunded_at").strip() or None,
                amount_refunded=as_money(obj.get("amount_refunded"), f"{p_path}.amount_refunded") or Decimal("0.00"),
                payment_method=as_text(method, f"{p_path}.payment_method").strip(),
                document_index=document_index,
                paid_time=as_moment(obj.get("paid_at")),
            )
        )
    return result


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

