"""The Revel order tsrevel intends to create, and the reference Revel gives back; performs no I/O."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import attrs


@attrs.frozen(kw_only=True)
class OrderLine:
    """One Revel order item: a product, a quantity and a unit price."""

    product_id: int
    quantity: Decimal
    price: Decimal
    name: str = ""
    special_request: str = ""
    source_line_id: str | None = None

    @property
    def total(self) -> Decimal:
        return self.quantity * self.price


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
    guest_count: int | None = None  # the event's (guaranteed) guest count; Revel sees it in the notes

    @property
    def total(self) -> Decimal:
        """Σ quantity × unit price of the items, exactly."""
        return sum((line.total for line in self.items), Decimal(0))

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
                }
                for line in self.items
            ],
            "unmapped": [item.describe() for item in self.unmapped],
            "total": str(self.total),
            "guest_count": self.guest_count,
        }


@attrs.frozen
class OrderRef:
    """What Revel answered for an order: its id and resource URI."""

    order_id: int | None
    resource_uri: str | None = None
    local_id: str | None = None  # set when the order was found under another reference (a legacy one)
    establishment_id: int | None = None  # set when it was found in another establishment than the order's
