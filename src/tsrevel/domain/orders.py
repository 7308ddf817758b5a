"""The Revel order tsrevel intends to create, and the reference Revel gives back; performs no I/O."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import attrs

from tsrevel.domain.events import cents
from tsrevel.domain.invoice import ZERO, BillingLine, remaining_due


@attrs.frozen(kw_only=True)
class OrderLine:
    """One Revel order item: a product, a quantity and a unit price."""

    product_id: int
    quantity: Decimal
    price: Decimal
    name: str = ""
    special_request: str = ""
    source_line_id: str | None = None
    billing: str | None = None  # the TripleSeat billing detail this line carries ("Delivery Fee"), if any

    @property
    def total(self) -> Decimal:
        """Quantity × unit price, rounded half up to the cent (the rule the fakes apply too)."""
        return cents(self.quantity * self.price)


@attrs.frozen(kw_only=True)
class OrderPayment:
    """One counted TripleSeat payment, as the order records it; ``paid_at`` is the store's wall clock."""

    source_id: str | None
    amount: Decimal
    paid_at: datetime | None = None
    method: str = ""

    @property
    def transaction_id(self) -> str:
        return f"tripleseat-payment-{self.source_id or 'unknown'}"


@attrs.frozen(kw_only=True)
class UnmappedItem:
    """A TripleSeat line item that no product mapping covers."""

    line_item_id: str | None
    menu_item_id: str | None
    display_name: str
    document_index: int

    def describe(self) -> str:
        parts = [repr(self.display_name) if self.display_name else "(no name)"]
        if self.menu_item_id:
            parts.append(f"menu_item:{self.menu_item_id}")
        if self.line_item_id:
            parts.append(f"line item {self.line_item_id}")
        return " ".join(parts)


@attrs.frozen(kw_only=True)
class RevelOrder:
    """A Revel order, ready for ``POST /resources/OrderAllInOne/``; times are the store's local clock."""

    event_id: str
    location_id: str | None
    location_name: str
    establishment_id: int
    local_id: str
    dining_option: int
    call_name: str
    notes: str
    pickup_time: datetime | None
    items: tuple[OrderLine, ...]
    unmapped: tuple[UnmappedItem, ...] = ()
    guest_count: int | None = None  # the event's (guaranteed) guest count: number_of_people, and in the notes
    discount_amount: Decimal = ZERO
    discount_id: int | None = None
    tax: Decimal = ZERO
    service_charge: Decimal = ZERO
    gratuity: Decimal = ZERO
    payments: tuple[OrderPayment, ...] = ()  # every counted TripleSeat payment
    payments_read: int = 0  # TripleSeat payments in the event, counted or not
    payment_type: int | None = None  # None: payments are not recorded in Revel
    user_id: int | None = None
    station_id: int | None = None
    opened_at: datetime | None = None  # the order history's "opened", store wall clock
    billing: tuple[BillingLine, ...] = ()  # every billing detail and where it landed
    grand_total: Decimal | None = None  # TripleSeat's
    arithmetic: str = ""  # the invoice arithmetic, written out (invoice.Balance.describe)
    warnings: tuple[str, ...] = ()  # what operations are told: payments not recorded, unknown payment states, skipped details

    @property
    def total(self) -> Decimal:
        """Σ line totals of the items (fee lines included): Revel's subtotal."""
        return sum((line.total for line in self.items), ZERO)

    @property
    def subtotal(self) -> Decimal:
        return self.total

    @property
    def final_total(self) -> Decimal:
        """subtotal − discount + tax + service charge + gratuity."""
        return self.subtotal - self.discount_amount + self.tax + self.service_charge + self.gratuity

    @property
    def recorded_payments(self) -> tuple[OrderPayment, ...]:
        """The payments the Revel order carries: all counted ones, or none without a payment_type."""
        return self.payments if self.payment_type is not None else ()

    @property
    def paid(self) -> Decimal:
        return sum((p.amount for p in self.recorded_payments), ZERO)

    @property
    def remaining_due(self) -> Decimal:
        return remaining_due(self.final_total, (p.amount for p in self.recorded_payments))

    @property
    def closed(self) -> bool:
        """Nothing remains due: the history entry is closed too."""
        return self.remaining_due == 0

    def to_snapshot(self) -> dict[str, object]:
        """A JSON-ready summary used to detect later changes to the event and to show operators."""
        return {
            "event_id": self.event_id,
            "location_id": self.location_id,
            "location_name": self.location_name,
            "establishment_id": self.establishment_id,
            "local_id": self.local_id,
            "dining_option": self.dining_option,
            "call_name": self.call_name,
            "notes": self.notes,
            "pickup_time": self.pickup_time.isoformat() if self.pickup_time else None,
            "items": [
                {
                    "product_id": line.product_id,
                    "quantity": str(line.quantity),
                    "price": str(line.price),
                    "name": line.name,
                    "special_request": line.special_request,
                    "source_line_id": line.source_line_id,
                    **({"billing": line.billing} if line.billing is not None else {}),
                }
                for line in self.items
            ],
            "unmapped": [item.describe() for item in self.unmapped],
            "total": str(self.total),
            "guest_count": self.guest_count,
            # Added with the invoice (issue 12); snapshots written before have none of these keys.
            "subtotal": str(self.subtotal),
            "discount_amount": str(self.discount_amount),
            "tax": str(self.tax),
            "service_charge": str(self.service_charge),
            "gratuity": str(self.gratuity),
            "final_total": str(self.final_total),
            "remaining_due": str(self.remaining_due),
            "grand_total": None if self.grand_total is None else str(self.grand_total),
            "payments": [
                {"id": p.source_id, "amount": str(p.amount), "transaction_id": p.transaction_id,
                 "paid_at": p.paid_at.isoformat() if p.paid_at else None, "method": p.method}
                for p in self.payments
            ],
            "payments_recorded": self.payment_type is not None,
            "payments_read": self.payments_read,
            "billing": [
                {"name": b.name, "amount": str(b.amount), "kind": b.kind, "product_id": b.product_id} for b in self.billing
            ],
            "history": {"opened": self.opened_at.isoformat() if self.opened_at else None, "closed": self.closed},
            "arithmetic": self.arithmetic,
            "warnings": list(self.warnings),
        }


@attrs.frozen
class OrderRef:
    """What Revel answered for an order: its id and resource URI."""

    order_id: int | None
    resource_uri: str | None = None
    local_id: str | None = None  # set when the order was found under another reference (a legacy one)
    establishment_id: int | None = None  # set when it was found in another establishment than the order's
