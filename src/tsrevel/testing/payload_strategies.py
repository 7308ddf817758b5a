"""Hypothesis strategies for valid, realistic TripleSeat payloads: line items, documents, events, invoices, webhooks.

Payloads are plain dicts shaped like TripleSeat's JSON (ids as int or numeric string, money as
int, string or float with an exact repr) so they keep their meaning through ``json.dumps``.
Needs the dev extra (Hypothesis).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from tsrevel.domain.events import cents
from tsrevel.domain.mapping import MENU_ITEM_PREFIX
from tsrevel.domain.safety import KNOWN_STATUSES, ORDER_TRIGGERS, WITHDRAW_TRIGGERS
from tsrevel.testing.value_strategies import as_decimal, money, quantities, unknown_keys, wire_ids

# Documented TripleSeat triggers (DESIGN.md §1): the event triggers the domain orders on or withdraws
# for (sorted, CREATE_EVENT first: it shrinks to the usual one), and the lead triggers we know of.
EVENT_TRIGGERS = tuple(sorted(ORDER_TRIGGERS | WITHDRAW_TRIGGERS, key=lambda trigger: (trigger != "CREATE_EVENT", trigger)))
LEAD_TRIGGERS = ("CREATE_LEAD", "CONVERT_LEAD")
DOCUMENTED_TRIGGERS = EVENT_TRIGGERS + LEAD_TRIGGERS

SITE_ID = 15691
LOCATION_IDS = (201, 202, 203)
SITE_ZONE = "America/Los_Angeles"

# A small bakery-and-catering menu: (TripleSeat menu_item_id, display name, category).
CATALOG = (
    (5501, "OG - Glazed raised ring", "Donuts"),
    (5502, "Cold brew, 96 oz box", "Beverages"),
    (5503, "Chocolate old fashioned", "Donuts"),
    (5510, "Assorted pastry platter", "Pastry"),
    (5520, "Egg bites (dozen)", "Breakfast"),
    (5530, "Fruit tower", "Displays"),
    (5540, "Breakfast burrito", "Breakfast"),
    (5550, "Yogurt parfait cup", "Breakfast"),
    (5560, "Drip coffee, 96 oz box", "Beverages"),
    (5570, "Fresh orange juice, gallon", "Beverages"),
)
_FIRST_NAMES = ("Jon", "Ana", "Priya", "Marcus", "Lena", "Tomás", "Yuki", "Grace", "Omar", "Zoë")
_LAST_NAMES = ("Ponder", "Ruiz", "Natarajan", "Okafor", "Lindqvist", "Ferreira", "Sato", "O'Neil")
_EVENT_KINDS = ("family brunch", "board breakfast", "holiday lunch", "team offsite", "rehearsal dinner")
_SECTIONS = ("Breakfast", "Lunch", "Beverages", "Dessert")
_BILLING_NAMES = ("Sales tax", "Service charge 18%", "Gratuity", "Delivery fee")
# Where mapping_for and mapping_configs send them; none is a product line, so an order's subtotal is its items'.
BILLING_TABLE = {"Sales tax": "tax", "Service charge 18%": "service_fee", "Gratuity": "gratuity", "Delivery fee": "service_fee"}


def _variants(name: str) -> tuple[str, ...]:
    return (name, name, name.upper(), name.lower(), f"  {name} ", f"{name.lower()}  ")


# Strategies are built once, at import: building them inside every draw made generation slow.
_CATALOG_ENTRIES = st.sampled_from(CATALOG)
_OFF_MENU_NAMES = st.sampled_from(("Ice sculpture", "Custom cake", "Balloon arch")) | st.text(
    min_size=1, max_size=30
).filter(lambda t: bool(t.strip()) and not t.startswith(MENU_ITEM_PREFIX))
_DESCRIPTIONS = st.sampled_from(("", "", "oat milk on the side", "nut free")) | st.text(max_size=40)
_SECTION_NAMES = st.sampled_from(_SECTIONS + (None,))
_PLAIN_IDS = wire_ids()
_OFF_MENU_IDS = st.none() | wire_ids(st.integers(9000, 9999))
_QUANTITIES = quantities()
_PRICES = money(25, 50_000)
_EXTRA_KEYS = unknown_keys()


@st.composite
def line_items(draw: st.DrawFn) -> dict[str, Any]:
    """One ``documents[].line_items[]`` entry: a catalog item (by menu_item_id and/or name) or an off-menu one."""
    if draw(st.integers(0, 9)) < 8:
        menu_id, name, category = draw(_CATALOG_ENTRIES)
        display = _variants(name)[draw(st.integers(0, 5))]
        menu_item_id: int | str | None = (menu_id, str(menu_id), None)[draw(st.integers(0, 2))]
    else:
        display = draw(_OFF_MENU_NAMES)
        category = "Specials"
        menu_item_id = draw(_OFF_MENU_IDS)
    quantity = draw(_QUANTITIES)
    price = draw(_PRICES)
    item: dict[str, Any] = {
        "id": draw(_PLAIN_IDS),
        "quantity": quantity,
        "price": price,
        "display_name": display,
        "description": draw(_DESCRIPTIONS),
        "category": ({"id": 7, "name": category}, category, None)[draw(st.integers(0, 2))],
        "menu_item_id": menu_item_id,
        "section": draw(_SECTION_NAMES),
    }
    if draw(st.booleans()):
        item["total_price"] = str(cents(as_decimal(quantity) * as_decimal(price)))
    item.update(draw(_EXTRA_KEYS))
    return item


_BILLING = st.lists(st.tuples(st.sampled_from(_BILLING_NAMES), money(0, 50_000)), max_size=3)
_DOCUMENT_IDS = wire_ids(st.integers(1, 999_999))


@st.composite
def documents(draw: st.DrawFn, *, min_items: int = 0, max_items: int = 5) -> dict[str, Any]:
    """One event document: line items, venue-named billing totals and consistent financials."""
    items = draw(st.lists(line_items(), min_size=min_items, max_size=max_items))
    totals = draw(_BILLING)
    doc: dict[str, Any] = {
        "id": draw(_DOCUMENT_IDS),
        "line_items": items,
        "billing_totals": [{"name": name, "amount": amount} for name, amount in totals],
    }
    refresh_financials(doc)
    doc.update(draw(_EXTRA_KEYS))
    return doc


def refresh_financials(doc: dict[str, Any]) -> None:
    """Set the document's financials from its lines, discounts, billing details and payments, as TripleSeat adds them up.

    A line's total is quantity × price rounded half up to the cent; discounts_total, when the
    document has one, is the whole discount (else the lines' discounts); a payment counts per
    the payment rule (``Payment.counted``).
    """
    lines = sum((cents(as_decimal(i["quantity"]) * as_decimal(i["price"])) for i in doc.get("line_items", [])), Decimal(0))
    financials = doc.setdefault("financials", {})
    if financials.get("discounts_total") is not None:
        discount = as_decimal(financials["discounts_total"])
    else:
        discount = sum((as_decimal(i.get("discount") or 0) for i in doc.get("line_items", [])), Decimal(0))
    charges = sum((as_decimal(b.get("amount", b.get("total_price", 0))) for b in doc.get("billing_totals", [])), Decimal(0))
    grand = lines - discount + charges
    payments = doc.get("payment_set", {}).get("payments", [])
    paid = sum((_counted(p) for p in payments), Decimal(0))
    financials["grand_total"] = f"{grand:.2f}"
    financials["amount_due"] = f"{grand - paid:.2f}"


def _counted(payment: dict[str, Any]) -> Decimal:
    from tsrevel.domain.events import Payment

    return Payment(
        id=None, amount=as_decimal(payment["amount"]), state=str(payment.get("state", "")).lower(),
        paid_at=payment.get("paid_at"), refunded_at=payment.get("refunded_at"),
        amount_refunded=as_decimal(payment.get("amount_refunded") or 0),
    ).counted


def _local_text(moment: datetime) -> str:
    hour = moment.hour % 12 or 12
    return f"{moment:%m/%d/%Y} {hour}:{moment:%M} {'AM' if moment.hour < 12 else 'PM'}"


_DAYS = st.dates(date(2020, 1, 1), date(2030, 12, 31))
_EVENT_IDS = wire_ids(st.integers(10_000_000, 99_999_999))
_ROOMS = st.lists(wire_ids(st.integers(30_000, 39_999)), max_size=3)
_OPTIONAL_IDS = st.none() | wire_ids()
_GUESTS = st.none() | st.tuples(st.integers(1, 500), st.booleans()).map(lambda p: str(p[0]) if p[1] else p[0])
_GUARANTEED = st.none() | st.integers(1, 500)
_EVENT_DESCRIPTIONS = st.sampled_from(("", "Deliver to the side door by 5:30 PM.", "Allergies: sesame"))
_DOCUMENT_LISTS = st.lists(documents(), min_size=1, max_size=3)


@st.composite
def event_payloads(
    draw: st.DrawFn,
    *,
    statuses: Sequence[str] = KNOWN_STATUSES,
    location_ids: Sequence[int | str | None] = LOCATION_IDS,
    site_ids: Sequence[int] = (SITE_ID,),
    site_zone: str = SITE_ZONE,
    with_financials: bool = True,
    with_utc: bool | None = None,
) -> dict[str, Any]:
    """A TripleSeat event: 1-3 documents with line items when with_financials; UTC/ISO times when with_utc (None: sometimes)."""
    first = _FIRST_NAMES[draw(st.integers(0, len(_FIRST_NAMES) - 1))]
    last = _LAST_NAMES[draw(st.integers(0, len(_LAST_NAMES) - 1))]
    # Events start between 6 AM and 10:45 PM, so no start falls in a DST gap or overlap.
    day = draw(_DAYS)
    start = datetime.combine(day, time(draw(st.integers(6, 22)), 15 * draw(st.integers(0, 3))))
    end = start + timedelta(minutes=15 * draw(st.integers(1, 48)))
    location = location_ids[draw(st.integers(0, len(location_ids) - 1))]
    site = site_ids[draw(st.integers(0, len(site_ids) - 1))]
    event: dict[str, Any] = {
        "id": draw(_EVENT_IDS),
        "name": f"{last} {_EVENT_KINDS[draw(st.integers(0, len(_EVENT_KINDS) - 1))]}",
        "status": statuses[draw(st.integers(0, len(statuses) - 1))],
        "event_date": f"{day:%m/%d/%Y}",
        "event_date_iso8601": day.isoformat(),
        "site_id": str(site) if draw(st.booleans()) else site,
        "location_id": str(location) if location is not None and draw(st.booleans()) else location,
        "room_ids": draw(_ROOMS),
        "booking_id": draw(_OPTIONAL_IDS),
        "account_id": draw(_OPTIONAL_IDS),
        "contact_id": draw(_PLAIN_IDS),
        "contact": {
            "first_name": first,
            "last_name": last,
            "email_addresses": [{"address": f"{first}.{last}@example.com".lower().replace("'", "")}],
            "phone_numbers": [{"number": "(702) 555-0143"}] if draw(st.booleans()) else [],
        },
        "guest_count": draw(_GUESTS),
        "guaranteed_guest_count": draw(_GUARANTEED),
        "description": draw(_EVENT_DESCRIPTIONS),
        "event_start": _local_text(start),
        "event_end": _local_text(end),
        "updated_at": _local_text(start - timedelta(days=draw(st.integers(1, 60)))),
    }
    if with_utc if with_utc is not None else draw(st.booleans()):
        zone = ZoneInfo(site_zone)
        for field, moment in (("event_start", start), ("event_end", end)):
            aware = moment.replace(tzinfo=zone)
            event[f"{field}_utc"] = aware.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            event[f"{field}_iso8601"] = aware.isoformat()
    if with_financials:
        docs = draw(_DOCUMENT_LISTS)
        if not any(d["line_items"] for d in docs):
            docs[0]["line_items"] = [draw(line_items())]
            refresh_financials(docs[0])
        _renumber_line_items(docs, base=draw(st.integers(1, 10**7)), as_text=draw(st.booleans()))
        event["documents"] = docs
    event.update(draw(_EXTRA_KEYS))
    return event


def _renumber_line_items(docs: list[dict[str, Any]], *, base: int, as_text: bool) -> None:
    # Line item ids are unique within an event, as in TripleSeat; tests match lines by them.
    items = [item for doc in docs for item in doc["line_items"]]
    for offset, item in enumerate(items):
        item["id"] = str(base + offset) if as_text else base + offset


_PAYMENT_STATES = ("paid", "paid", "captured", "pending", "failed", "refunded", "partially_refunded", "")


@st.composite
def invoice_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """An event whose documents add up like a TripleSeat invoice: line or document discounts, billing details, payments.

    Every billing name is in BILLING_TABLE; payments (paid, pending, failed, refunded, partly
    refunded, or stateless with a paid_at) never count for more than the document's grand total.
    """
    event = draw(event_payloads())
    for doc in event["documents"]:
        doc.pop("financials", None)
        lines = sum((cents(as_decimal(i["quantity"]) * as_decimal(i["price"])) for i in doc["line_items"]), Decimal(0))
        if draw(st.booleans()):
            for item in doc["line_items"]:
                share = cents(as_decimal(item["quantity"]) * as_decimal(item["price"]))
                item["discount"] = f"{cents(share * Decimal(draw(st.integers(0, 30))) / 100):.2f}"
            if draw(st.booleans()):  # the document's total too: the lines are then its breakdown
                doc["financials"] = {"discounts_total": f"{sum((as_decimal(i['discount']) for i in doc['line_items']), Decimal(0)):.2f}"}
        refresh_financials(doc)
        grand = as_decimal(doc["financials"]["grand_total"])
        payments: list[dict[str, Any]] = []
        left = grand
        for number in range(draw(st.integers(0, 3))):
            amount = cents(left * Decimal(draw(st.integers(0, 100))) / 100)
            state = draw(st.sampled_from(_PAYMENT_STATES))
            payment: dict[str, Any] = {"id": draw(st.integers(1, 10**9)) * 10 + number, "amount": f"{amount:.2f}", "state": state}
            if state in ("paid", "captured", "partially_refunded", "") and draw(st.booleans()):
                payment["paid_at"] = "2025-12-01T17:45:00Z"
            if state in ("refunded", "partially_refunded"):
                refunded = amount if state == "refunded" else cents(amount * Decimal(draw(st.integers(0, 100))) / 100)
                payment.update(refunded_at="2025-12-02T10:00:00Z", amount_refunded=f"{refunded:.2f}")
            payments.append(payment)
            left -= _counted(payment)
        if payments:
            doc["payment_set"] = {"payments": payments}
        refresh_financials(doc)
    return event


_UPPER = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=3, max_size=10)
_UNKNOWN_TRIGGERS = st.builds("{}_{}".format, _UPPER, _UPPER).filter(lambda t: t not in DOCUMENTED_TRIGGERS)


@st.composite
def webhook_payloads(
    draw: st.DrawFn,
    *,
    triggers: Sequence[str] = DOCUMENTED_TRIGGERS,
    statuses: Sequence[str] = KNOWN_STATUSES,
    location_ids: Sequence[int | str | None] = LOCATION_IDS,
    with_financials: bool = True,
) -> dict[str, Any]:
    """A whole webhook body: a trigger (one in ten unknown) and the event under ``event`` or ``object``."""
    known_trigger = draw(st.integers(0, 9)) > 0
    trigger = triggers[draw(st.integers(0, len(triggers) - 1))] if known_trigger else draw(_UNKNOWN_TRIGGERS)
    key = ("event", "event", "object")[draw(st.integers(0, 2))]
    event = draw(event_payloads(statuses=statuses, location_ids=location_ids, with_financials=with_financials))
    payload: dict[str, Any] = {"webhook_trigger_type": trigger, key: event}
    if key == "object":
        payload["message"] = "Event updated"
    payload.update(draw(_EXTRA_KEYS))
    return payload


@st.composite
def lead_payloads(draw: st.DrawFn) -> dict[str, Any]:
    """A lead (or booking) webhook: it carries no event and never makes an order."""
    key = draw(st.sampled_from(("lead", "booking")))
    return {
        "webhook_trigger_type": draw(st.sampled_from(LEAD_TRIGGERS + ("CREATE_BOOKING",))),
        key: {"id": draw(_PLAIN_IDS), "first_name": draw(st.sampled_from(_FIRST_NAMES)), "guest_count": 60},
    }

