"""The emails tsrevel sends the operations team, written as plain text from domain values; no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from tsrevel.domain.deliveries import Delivery
from tsrevel.domain.events import TripleSeatEvent
from tsrevel.domain.mapping import MappingFailure
from tsrevel.domain.orders import OrderRef, RevelOrder
from tsrevel.domain.ports import EmailMessage


def replay_instructions(delivery_id: int) -> str:
    """The exact commands that re-queue a delivery once its cause is fixed."""
    return (
        f"  tsrevel replay {delivery_id}\n"
        f"  or: curl -X POST -H 'Authorization: Bearer $TSREVEL_ADMIN_TOKEN' "
        f"<service>/admin/deliveries/{delivery_id}/replay"
    )


def order_created(delivery: Delivery, order: RevelOrder, ref: OrderRef, *, found: bool, to: Sequence[str]) -> EmailMessage:
    verb = "found (already in Revel)" if found else "created"
    legacy = found and ref.local_id is not None and ref.local_id != order.local_id
    elsewhere = (
        f" in establishment {ref.establishment_id}, not {order.establishment_id} as the mapping file says: check it is this event's"
        if ref.establishment_id is not None
        else ""
    )
    how = (
        f"\nIt was found under the legacy reference {ref.local_id!r} (REVEL_LEGACY_LOCAL_IDS){elsewhere}: the previous "
        f"connector made it, and tsrevel did not create another.\n"
        if legacy
        else ""
    )
    return _email(
        "order_created",
        delivery,
        f"[tsrevel] Revel order {verb} for TripleSeat event {order.event_id}" + (" under its legacy reference" if legacy else ""),
        (
            f"Revel order {ref.order_id} {verb} for TripleSeat event {order.event_id}.\n{how}\n"
            + _order_text(order)
            + f"\nRevel: {ref.resource_uri or '(no resource uri)'}\n"
        ),
        to,
    )


def dry_run(delivery: Delivery, order: RevelOrder, *, to: Sequence[str]) -> EmailMessage:
    return _email(
        "dry_run",
        delivery,
        f"[tsrevel] DRY RUN: would create a Revel order for TripleSeat event {order.event_id}",
        (
            "DRY_RUN is on: nothing was written to Revel. This is the order that would have been created.\n\n"
            + _order_text(order)
            + "\nTo create it for real: set DRY_RUN=false (or PUT /admin/flags {\"dry_run\": false}), then replay:\n"
            + replay_instructions(delivery.id)
            + "\n"
        ),
        to,
    )


def failure(delivery: Delivery, reason: str, *, to: Sequence[str], event_id: str | None = None) -> EmailMessage:
    what = f"TripleSeat event {event_id}" if event_id else f"delivery {delivery.id}"
    return _email(
        "failure",
        delivery,
        f"[tsrevel] FAILED: no Revel order for {what}",
        (
            f"tsrevel could not create the Revel order for {what}.\n\n"
            f"Reason: {reason}\n\n"
            f"The delivery is kept as 'dead' and nothing was lost. Fix the cause, then replay it:\n"
            + replay_instructions(delivery.id)
            + "\n\n"
        ),
        to,
    )


def mapping_failure(delivery: Delivery, failure_: MappingFailure, *, to: Sequence[str]) -> EmailMessage:
    lines = []
    if failure_.missing_location:
        lines.append(f"- {failure_.missing_location}")
    lines.extend(f"- {p}" for p in failure_.problems)
    lines.extend(f"- unmapped item: {item.describe()}" for item in failure_.unmapped)
    lines.extend(f"- billing detail not in [billing]: {name!r}" for name in failure_.unmapped_billing)
    reason = "the event does not map to a Revel order:\n" + "\n".join(lines)
    if failure_.unmapped_billing:
        reason += (
            "\n\nAdd these lines to the mapping file's [billing] table (check each kind: "
            '"tax", "gratuity", "service_fee" or "product:<Revel product id>"):\n\n[billing]\n'
            + "\n".join(failure_.billing_lines)
        )
    reason += "\n\nAdd the missing entries to the mapping file (TSREVEL_MAPPING_FILE), restart, then replay."
    return failure(delivery, reason, to=to, event_id=failure_.event_id)


def needs_attention(
    delivery: Delivery, event: TripleSeatEvent, ref_text: str, changes: Sequence[str], *, to: Sequence[str]
) -> EmailMessage:
    return _email(
        "needs_attention",
        delivery,
        f"[tsrevel] CHANGED after ordering: TripleSeat event {event.id} ({event.name})",
        (
            f"TripleSeat event {event.id} changed after its Revel order {ref_text} was placed.\n"
            "tsrevel never creates a second order: please update the order in Revel by hand.\n\n"
            "What changed:\n" + "\n".join(f"- {c}" for c in changes) + "\n\n"
            "What to do in Revel:\n"
            f"1. Open the order {ref_text}.\n"
            "2. Make it match the changes above: items and quantities, pickup time, guest count and notes, discount, billing details and payments.\n"
            "3. If the location (Revel establishment) changed, void this order and enter it at the new location by hand.\n"
            "Nothing to do in tsrevel: this delivery stays 'needs_attention' as the record.\n\n"
        ),
        to,
    )


def void_request(delivery: Delivery, event: TripleSeatEvent, ref_text: str, why: str, *, to: Sequence[str]) -> EmailMessage:
    return _email(
        "void_request",
        delivery,
        f"[tsrevel] VOID in Revel: TripleSeat event {event.id} was {why}",
        (
            f"TripleSeat event {event.id} ({event.name}) was {why}, but its Revel order {ref_text} exists.\n"
            "Please void the order in Revel. tsrevel does not void orders itself.\n\n"
        ),
        to,
    )


def _order_text(order: RevelOrder) -> str:
    lines = [
        f"Event:        {order.event_id}",
        f"Location:     {order.location_name} (TripleSeat {order.location_id or '-'}, Revel establishment {order.establishment_id})",
        f"Reference:    {order.local_id}",
        f"Pickup time:  {order.pickup_time.isoformat(sep=' ') if order.pickup_time else '(not set)'}",
        f"Call name:    {order.call_name}",
        f"Guests:       {order.guest_count if order.guest_count is not None else '-'}",
        f"Notes:        {order.notes}",
        "Items:",
    ]
    lines.extend(
        f"  {line.quantity} x {line.name or 'product ' + str(line.product_id)} @ {line.price} = {line.total}"
        f"  (Revel product {line.product_id}{', billing detail' if line.billing else ''})"
        for line in order.items
    )
    lines.append(f"Subtotal:     {order.subtotal}")
    if order.discount_amount:
        lines.append(f"Discount:     -{order.discount_amount}  (Revel discount {order.discount_id})")
    for label, amount in (("Tax", order.tax), ("Service fee", order.service_charge), ("Gratuity", order.gratuity)):
        if amount:
            lines.append(f"{label + ':':<14}{amount}")
    lines.append(f"Final total:  {order.final_total}" + (f"  (TripleSeat grand total {order.grand_total})" if order.grand_total is not None else ""))
    if order.payments:
        recorded = "" if order.payment_type is not None else "  (NOT recorded in Revel: no payment_type)"
        lines.append("Payments:" + recorded)
        lines.extend(
            f"  {p.amount}  {p.transaction_id}  {p.paid_at.isoformat(sep=' ') if p.paid_at else '(no date)'}  {p.method}".rstrip()
            for p in order.payments
        )
    lines.append(f"Remaining due: {order.remaining_due}" + ("  (history closed)" if order.closed else ""))
    if order.billing:
        lines.append("Billing details: " + "; ".join(f"{b.name} {b.amount} -> {b.kind}" + (f" {b.product_id}" if b.product_id is not None else "") for b in order.billing))
    if order.arithmetic:
        lines.append(f"Arithmetic:   {order.arithmetic}")
    if order.unmapped:
        lines.append("Left out (UNMAPPED_ITEMS=skip): " + "; ".join(i.describe() for i in order.unmapped))
    lines.extend(f"Note: {w}" for w in order.warnings)
    return "\n".join(lines) + "\n"


def _email(kind: str, delivery: Delivery, subject: str, text: str, to: Sequence[str]) -> EmailMessage:
    """An email about one delivery: its text, then the footer naming the delivery and its correlation id."""
    return EmailMessage(
        kind=kind,
        subject=subject,
        text=text + _footer(delivery),
        delivery_id=delivery.id,
        correlation_id=delivery.correlation_id,
        to=tuple(to),
    )


def _footer(delivery: Delivery) -> str:
    return f"-- tsrevel delivery {delivery.id}, correlation id {delivery.correlation_id}\n"
