"""TripleSeat webhook envelope and event, parsed from decoded JSON by named constructors; performs no I/O.

The event's parts and their parsers live in event_parts, line_items, money_parsing and
payload_fields; the names they had here are imported from here still.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import attrs

from tsrevel.domain.errors import PayloadError
from tsrevel.domain.event_parts import (
    PAID_STATES, UNPAID_STATES, BillingTotal, Contact, Document, Payment, billing_totals_from, contact_from, payments_from,
)
from tsrevel.domain.line_items import LineItem, line_item_from
from tsrevel.domain.money_parsing import CENT, as_count, as_money, cents
from tsrevel.domain.payload_fields import LOCAL_FORMAT, as_array, as_id, as_object, as_text, event_times
from tsrevel.domain.text import may_hold_surrogates, without_lone_surrogates

__all__ = [
    "CENT", "EVENT_KEYS", "LOCAL_FORMAT", "OTHER_OBJECT_KEYS", "PAID_STATES", "UNPAID_STATES", "BillingTotal", "Contact",
    "Document", "LineItem", "Payment", "TripleSeatEvent", "WebhookEnvelope", "cents", "decode_json",
]

# Keys under which captured deliveries and the API directory put the nested object.
EVENT_KEYS = ("event", "object")
OTHER_OBJECT_KEYS = ("booking", "lead")


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
        obj = as_object(data, path)
        event_id = as_id(obj.get("id"), f"{path}.id")
        if event_id is None:
            raise PayloadError(f"{path}.id", obj.get("id"), "is missing; every event needs an id")
        start_local, start_utc = event_times(obj, "event_start", path)
        end_local, end_utc = event_times(obj, "event_end", path)
        documents = obj.get("documents")
        items: list[LineItem] = []
        totals: list[BillingTotal] = []
        docs: list[Document] = []
        payments: list[Payment] = []
        grand_total = as_money(obj.get("grand_total"), f"{path}.grand_total")
        documents_total: Decimal | None = None
        if documents is not None:
            for d_index, doc in enumerate(as_array(documents, f"{path}.documents")):
                d_path = f"{path}.documents[{d_index}]"
                doc_map = as_object(doc, d_path)
                first_item = len(items)
                raw_items = doc_map.get("line_items")
                if raw_items is not None:
                    items_path = f"{d_path}.line_items"
                    for i_index, item in enumerate(as_array(raw_items, items_path)):
                        items.append(line_item_from(item, d_index, items_path, i_index))
                totals.extend(billing_totals_from(doc_map.get("billing_totals"), f"{d_path}.billing_totals", d_index))
                payments.extend(payments_from(doc_map.get("payment_set"), f"{d_path}.payment_set", d_index))
                fin = as_object(doc_map.get("financials") or {}, f"{d_path}.financials")
                document = Document(
                    index=d_index,
                    id=as_id(doc_map.get("id"), f"{d_path}.id"),
                    grand_total=as_money(fin.get("grand_total"), f"{d_path}.financials.grand_total"),
                    amount_due=as_money(fin.get("amount_due"), f"{d_path}.financials.amount_due"),
                    discounts_total=as_money(fin.get("discounts_total"), f"{d_path}.financials.discounts_total"),
                    # Zero discounts are all Decimal("0.00"): adding only the others gives the same sum.
                    line_discounts=sum((i.discount for i in items[first_item:] if i.discount), Decimal("0.00")),
                )
                docs.append(document)
                if document.grand_total is not None:
                    documents_total = document.grand_total + (documents_total or 0)
        # billing_totals and payments are per document and again per event: take one, never both.
        event_totals = billing_totals_from(obj.get("billing_totals"), f"{path}.billing_totals", None)
        if not totals:
            totals.extend(event_totals)
        if not payments:
            payments.extend(payments_from(obj.get("payment_set"), f"{path}.payment_set", None))
        return cls(
            id=event_id,
            name=as_text(obj.get("name"), f"{path}.name"),
            status=as_text(obj.get("status"), f"{path}.status").strip().upper(),
            site_id=as_id(obj.get("site_id"), f"{path}.site_id"),
            location_id=as_id(obj.get("location_id"), f"{path}.location_id"),
            room_ids=tuple(
                rid
                for i, r in enumerate(as_array(obj.get("room_ids") or (), f"{path}.room_ids"))
                if (rid := as_id(r, f"{path}.room_ids[{i}]")) is not None
            ),
            booking_id=as_id(obj.get("booking_id"), f"{path}.booking_id"),
            account_id=as_id(obj.get("account_id"), f"{path}.account_id"),
            contact_id=as_id(obj.get("contact_id"), f"{path}.contact_id"),
            contact=contact_from(obj.get("contact"), f"{path}.contact"),
            guest_count=as_count(obj.get("guest_count"), f"{path}.guest_count"),
            guaranteed_guest_count=as_count(
                obj.get("guaranteed_guest_count"), f"{path}.guaranteed_guest_count"
            ),
            description=as_text(obj.get("description"), f"{path}.description"),
            start_local=start_local,
            end_local=end_local,
            start_utc=start_utc,
            end_utc=end_utc,
            updated_at=as_text(obj.get("updated_at"), f"{path}.updated_at") or None,
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
        obj = as_object(data, "$")
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
                other = as_object(obj[key], key)
                return cls(
                    trigger_type=trigger.strip().upper(),
                    object_key=key,
                    event=None,
                    object_id=as_id(other.get("id"), f"{key}.id"),
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

