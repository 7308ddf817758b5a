"""map_event(): a TripleSeat event -> a Revel order carrying its invoice, or a MappingFailure listing every problem.

The mapping file it reads (MappingConfig, mapping_from_dict) is in mapping_config; its names
are imported from here still.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

import attrs

from tsrevel.domain.events import Payment, TripleSeatEvent
from tsrevel.domain.ids import order_reference
from tsrevel.domain.invoice import GRATUITY, SERVICE_FEE, SKIPPED, TAX, ZERO, BillingLine, balance, toml_line
from tsrevel.domain.mapping_config import MENU_ITEM_PREFIX, MappingConfig, ProductMap, Venue, mapping_from_dict, normalise_name
from tsrevel.domain.orders import OrderLine, OrderPayment, RevelOrder, UnmappedItem

__all__ = [
    "CALL_NAME_LIMIT", "MENU_ITEM_PREFIX", "NOTES_LIMIT", "UNMAPPED_FAIL", "UNMAPPED_SKIP", "MappingConfig", "MappingFailure",
    "MappingResult", "ProductMap", "Venue", "guest_count", "map_event", "mapping_from_dict", "money_reading",
    "normalise_name", "pickup_time",
]

UNMAPPED_FAIL = "fail"
UNMAPPED_SKIP = "skip"
CALL_NAME_LIMIT = 60
NOTES_LIMIT = 1000


@attrs.frozen(kw_only=True)
class MappingFailure:
    """Why an event cannot become an order: the missing location and every unmapped item."""

    event_id: str
    missing_location: str | None = None
    unmapped: tuple[UnmappedItem, ...] = ()
    problems: tuple[str, ...] = ()
    unmapped_billing: tuple[str, ...] = ()  # billing detail names missing from [billing]

    @property
    def billing_lines(self) -> tuple[str, ...]:
        """The exact TOML lines to add under [billing] for the unmapped billing details."""
        return tuple(toml_line(name) for name in self.unmapped_billing)

    def describe(self) -> str:
        parts = list(self.problems)
        if self.missing_location:
            parts.append(self.missing_location)
        if self.unmapped:
            parts.append(
                f"{len(self.unmapped)} unmapped item(s): " + "; ".join(i.describe() for i in self.unmapped)
            )
        if self.unmapped_billing:
            parts.append(
                f"{len(self.unmapped_billing)} billing detail(s) not in [billing]: "
                + ", ".join(repr(n) for n in self.unmapped_billing)
                + "; add to the mapping file's [billing] table: "
                + "; ".join(self.billing_lines)
            )
        return f"event {self.event_id}: " + " | ".join(parts)


MappingResult = RevelOrder | MappingFailure



def map_event(
    event: TripleSeatEvent,
    mapping: MappingConfig,
    *,
    unmapped: str = UNMAPPED_FAIL,
    received_at: datetime | None = None,
    strict_money: bool = True,
) -> MappingResult:
    """Turn an event into a Revel order carrying TripleSeat's invoice, or a failure that lists every problem at once.

    ``received_at`` (when the webhook came) becomes the order history's "opened" time on the
    store's clock; without it the pickup time stands in. ``strict_money=False`` is for change
    detection only (the result is compared, never ordered): numbers that do not add up, billing
    details missing from [billing] and a discount without a discount id do not fail the mapping,
    so an order placed before any of them (or before tsrevel read money at all) is compared on
    what changed, not reported as "no longer maps".
    """
    venue = mapping.venue_for(event)
    missing_location = None
    if venue is None:
        missing_location = (
            f"location {event.location_id or '(none)'} (site {event.site_id or '(none)'}) "
            "is not in the mapping file's [locations] or [sites]"
        )
    lines: list[OrderLine] = []
    missing: list[UnmappedItem] = []
    problems: list[str] = []
    products: dict[tuple[str | None, str], int | None] = {}  # a lookup reads only these two fields; events repeat items
    for item in event.line_items:
        key = (item.menu_item_id, item.display_name)
        if key in products:
            product = products[key]
        else:
            product = venue.products.lookup(item) if venue else None
            if product is None:  # not `or`: a location may map an item to product id 0
                product = mapping.products.lookup(item)
            products[key] = product
        if product is None:
            missing.append(
                UnmappedItem(
                    line_item_id=item.id,
                    menu_item_id=item.menu_item_id,
                    display_name=item.display_name,
                    document_index=item.document_index,
                )
            )
            continue
        lines.append(
            OrderLine(
                product_id=product,
                quantity=item.quantity,
                price=item.price,
                name=item.display_name,
                special_request=item.description.strip()[:200],
                source_line_id=item.id,
            )
        )
    if not event.line_items:
        problems.append("the event has no line items (is include_event_financials on?)")
    elif not lines and missing:
        problems.append("no line item could be mapped to a Revel product")
    charges, unmapped_billing, warnings = _billing(event, mapping, unmapped)
    if unmapped_billing and (unmapped == UNMAPPED_SKIP or not strict_money):
        warnings.append(
            "left out (UNMAPPED_ITEMS=skip), not in [billing]: "
            + ", ".join(f"{c.name!r} {c.amount}" for c in charges if c.kind == SKIPPED)
            + "; the Revel order's total is short of TripleSeat's by as much"
        )
        unmapped_billing = []
    discount = event.discount_from(mapping.discounts)
    if strict_money and discount and venue is not None and venue.discount is None:
        problems.append(
            f"the event has a discount of {discount} but no Revel discount id is configured: "
            f"add `discount = <Revel discount id>` to [defaults] or [{_venue_table(venue)}]"
        )
    arithmetic = balance((i.line_total for i in event.line_items), discount, charges, event.grand_total)
    if strict_money and not arithmetic.ok:
        problems.append(f"TripleSeat's numbers do not add up: {arithmetic.describe()}")
    if venue is None or problems or unmapped_billing or (missing and unmapped != UNMAPPED_SKIP):
        return MappingFailure(
            event_id=event.id,
            missing_location=missing_location,
            unmapped=tuple(missing),
            problems=tuple(problems),
            unmapped_billing=tuple(unmapped_billing),
        )
    lines.extend(
        OrderLine(product_id=c.product_id, quantity=Decimal(1), price=c.amount, name=c.name, billing=c.name)
        for c in charges
        if c.kind == "product" and c.product_id is not None
    )
    payments, payment_warnings = _payments(event.payments, site_zone=mapping.timezone, store_zone=venue.timezone)
    warnings.extend(payment_warnings)
    if payments and venue.payment_type is None:
        warnings.append(
            f"{len(payments)} TripleSeat payment(s) of {sum((p.amount for p in payments), ZERO)} not recorded in Revel: "
            f"no payment_type in [defaults] or [{_venue_table(venue)}]; the order shows the whole total as due"
        )
    pickup = pickup_time(event, site_zone=mapping.timezone, store_zone=venue.timezone)
    order = RevelOrder(
        event_id=event.id,
        location_id=event.location_id,
        location_name=venue.name,
        establishment_id=venue.revel_establishment,
        local_id=order_reference(event.id),
        dining_option=venue.dining_option,
        call_name=_call_name(event),
        notes=_notes(event),
        pickup_time=pickup,
        items=tuple(lines),
        unmapped=tuple(missing),
        guest_count=guest_count(event),
        discount_amount=discount,
        discount_id=venue.discount if discount else None,
        tax=_sum(charges, TAX),
        service_charge=_sum(charges, SERVICE_FEE),
        gratuity=_sum(charges, GRATUITY),
        payments=tuple(payments),
        payments_read=len(event.payments),
        payment_type=venue.payment_type,
        user_id=venue.revel_user,
        station_id=venue.revel_station,
        opened_at=_store_clock(received_at, venue.timezone) if received_at is not None else pickup,
        billing=tuple(charges),
        grand_total=event.grand_total,
        arithmetic=arithmetic.describe(),
    )
    due = event.amount_due
    compare_due = due is not None and order.recorded_payments and not order.unmapped
    # Read once: remaining_due adds up all the order's line totals again each time it is read.
    remaining = order.remaining_due if strict_money or compare_due else ZERO
    if strict_money and remaining < 0:
        return MappingFailure(
            event_id=event.id,
            problems=(f"TripleSeat payments of {order.paid} exceed the order's total {order.final_total}; check the payments in TripleSeat",),
        )
    if compare_due and due != remaining:
        warnings.append(f"TripleSeat's amount_due is {due}; the counted payments leave {remaining} due")
    return attrs.evolve(order, warnings=tuple(warnings))


def money_reading(event: TripleSeatEvent, mapping: MappingConfig | None = None) -> str:
    """How tsrevel read the event's money, as evidence for the log (docs/configuration.md, "The invoice")."""
    mapping = mapping or MappingConfig()
    parts = []
    for doc in event.documents:
        if mapping.discounts == "lines":
            if doc.line_discounts or doc.discounts_total is not None:
                parts.append(f"document {doc.index}: discount {doc.line_discounts} from the lines' discounts ([invoice] discounts = \"lines\"; discounts_total {doc.discounts_total})")
        elif doc.discounts_total is not None:
            parts.append(f"document {doc.index}: discount {doc.discounts_total} from financials.discounts_total (lines' discounts {doc.line_discounts}, its breakdown)")
        elif doc.line_discounts:
            parts.append(f"document {doc.index}: discount {doc.line_discounts} from the lines' discounts")
    billing = event.billing_from(mapping.billing_source)
    per_document = any(b.document_index is not None for b in billing)
    parts.append(
        f"{len(billing)} billing detail(s) "
        + ("from the documents (event-level sums not added)" if per_document else "from the event-level billing_totals")
    )
    counted = [p for p in event.payments if p.counted > 0]
    parts.append(f"{len(event.payments)} payment(s) read, {len(counted)} counted ({sum((p.counted for p in counted), ZERO)})")
    return "; ".join(parts)


def _billing(event: TripleSeatEvent, mapping: MappingConfig, unmapped: str) -> tuple[list[BillingLine], list[str], list[str]]:
    """Each billing detail with its target, the names missing from [billing], and warnings."""
    charges: list[BillingLine] = []
    missing: list[str] = []
    warnings: list[str] = []
    for total in event.billing_from(mapping.billing_source):
        target = mapping.billing.get(normalise_name(total.name))
        if target is None:
            if total.amount == 0:
                warnings.append(f"billing detail {total.name!r} is 0.00 and not in [billing]: ignored")
                continue
            if total.name not in missing:
                missing.append(total.name)
            charges.append(BillingLine(name=total.name, amount=total.amount, kind=SKIPPED))
            continue
        charges.append(BillingLine(name=total.name, amount=total.amount, kind=target.kind, product_id=target.product_id))
    return charges, missing, warnings


def _sum(charges: list[BillingLine], kind: str) -> Decimal:
    return sum((c.amount for c in charges if c.kind == kind), ZERO)


def _payments(payments: tuple[Payment, ...], *, site_zone: str, store_zone: str) -> tuple[list[OrderPayment], list[str]]:
    """The counted payments, and a warning for each payment whose state we cannot read (never counted)."""
    counted: list[OrderPayment] = []
    warnings: list[str] = []
    for payment in payments:
        if not payment.state_known:
            warnings.append(
                f"TripleSeat payment {payment.id or '(no id)'} of {payment.amount} has state {payment.state!r}, "
                "which tsrevel does not read as paid: not counted (docs/configuration.md, Payments)"
            )
            continue
        if payment.counted > 0:
            counted.append(
                OrderPayment(
                    source_id=payment.id,
                    amount=payment.counted,
                    paid_at=_paid_at(payment.paid_time, site_zone=site_zone, store_zone=store_zone),
                    method=payment.payment_method,
                )
            )
    return counted, warnings


def _paid_at(moment: datetime | None, *, site_zone: str, store_zone: str) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(site_zone))
    return _store_clock(moment, store_zone)


def _store_clock(moment: datetime, store_zone: str) -> datetime:
    """An instant on the store's wall clock, without offset (how Revel reads local times)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(ZoneInfo(store_zone)).replace(tzinfo=None, microsecond=0)


def _venue_table(venue: Venue) -> str:
    kind, key = venue.key.split(" ", 1)
    return f"{kind}s.{key}"


def pickup_time(event: TripleSeatEvent, *, site_zone: str, store_zone: str) -> datetime | None:
    """The event's start on the store's wall clock (no offset), from UTC when sent, else site-local."""
    if event.start_utc is not None:
        return event.start_utc.astimezone(ZoneInfo(store_zone)).replace(tzinfo=None)
    if event.start_local is None:
        return None
    if site_zone == store_zone:
        return event.start_local
    aware = event.start_local.replace(tzinfo=ZoneInfo(site_zone))
    return aware.astimezone(timezone.utc).astimezone(ZoneInfo(store_zone)).replace(tzinfo=None)


def guest_count(event: TripleSeatEvent) -> int | None:
    """The guest count the order is for: the guaranteed count when TripleSeat has one, else the expected one."""
    return event.guaranteed_guest_count if event.guaranteed_guest_count is not None else event.guest_count


def _call_name(event: TripleSeatEvent) -> str:
    name = event.contact.full_name or event.name or f"TripleSeat {event.id}"
    return name[:CALL_NAME_LIMIT]


def _notes(event: TripleSeatEvent) -> str:
    parts = [f"TripleSeat event {event.id}: {event.name}".rstrip(": ")]
    guests = guest_count(event)
    if guests is not None:
        parts.append(f"guests: {guests}")
    if event.contact.full_name:
        contact = event.contact.full_name
        extra = ", ".join(x for x in (event.contact.phone, event.contact.email) if x)
        parts.append(f"contact: {contact}" + (f" ({extra})" if extra else ""))
    if event.description.strip():
        parts.append(event.description.strip())
    return "; ".join(parts)[:NOTES_LIMIT]
