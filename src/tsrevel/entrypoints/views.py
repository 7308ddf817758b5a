"""Reads every entrypoint shows, built once here for HTTP, the CLI, the console, the library and metrics.

One delivery with its emails and its event's order (`delivery_record`, and the settled
/test/webhook trace), the status (`status_of`), the flags with where each comes from
(`flag_rows`), and what the mapping misses (`unmapped_seen`, `item_names_seen`). Nothing here
changes state; each read takes the Processor (its store and the mapping in force) and answers
records that the entrypoints only lay out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import attrs

from tsrevel.domain import deliveries as st
from tsrevel.domain.catchup import PollReport, last_poll
from tsrevel.domain.deliveries import Delivery, LedgerEntry
from tsrevel.domain.errors import PayloadError
from tsrevel.domain.events import WebhookEnvelope, decode_json
from tsrevel.domain.mapping import MENU_ITEM_PREFIX, MappingFailure
from tsrevel.domain.orders import RevelOrder, UnmappedItem
from tsrevel.domain.ports import AuditEntry, FlagOverrides, OutboxEmail
from tsrevel.domain.processing import MAPPING_RELOAD_VALUE, IntakeResult, Processor, Trace
from tsrevel.domain.safety import SafetyFlags

# ---- one delivery -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DeliveryRecord:
    """One delivery, the emails it queued, and its event's order (the ledger entry): what every detail view shows."""

    delivery: Delivery
    emails: tuple[OutboxEmail, ...]
    order: LedgerEntry | None


async def delivery_record(processor: Processor, delivery_id: int) -> DeliveryRecord:
    """The delivery with its emails and its event's order; raises NotFound."""
    delivery = await processor.store.get_delivery(delivery_id)
    emails = await processor.store.list_emails(delivery_id=delivery_id)
    order = await processor.store.get_order(delivery.event_id) if delivery.event_id else None
    return DeliveryRecord(delivery=delivery, emails=tuple(emails), order=order)


# How often, and how long at most, /test/webhook waits for a worker that claimed its delivery first.
SETTLE_POLL_S = 0.05
SETTLE_WAIT_S = 15.0


async def settled_trace(processor: Processor, intake: IntakeResult, *, wait_s: float = SETTLE_WAIT_S) -> Trace:
    """The /test/webhook answer: the delivery once settled (a worker that claimed it first is waited for, bounded)."""
    delivery = await processor.store.get_delivery(intake.delivery_id)
    deadline = processor.clock.now() + timedelta(seconds=wait_s)
    while delivery.state in st.PENDING_STATES and delivery.state != st.RETRYING and processor.clock.now() < deadline:
        await asyncio.sleep(SETTLE_POLL_S)
        delivery = await processor.store.get_delivery(intake.delivery_id)
    record = await delivery_record(processor, delivery.id)
    return Trace(intake=intake, delivery=record.delivery, order=record.order, emails=tuple(e.message for e in record.emails))


# ---- status and flags ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Status:
    flags: SafetyFlags
    overrides: FlagOverrides
    counts: dict[str, int]
    oldest_pending_age_s: float | None
    last_order: LedgerEntry | None
    last_action: AuditEntry | None
    last_poll: PollReport | None = None  # the last catch-up poll (any replica)
    mapping_reload: dict[str, Any] | None = None  # the last `mapping reload` recorded in the store

    def source(self, flag: str) -> str:
        """Where a flag's value comes from: 'runtime override' or 'environment'."""
        return "runtime override" if getattr(self.overrides, flag) is not None else "environment"

    def flag_rows(self) -> tuple[FlagRow, ...]:
        return flag_rows(self.flags, self.overrides)


async def status_of(processor: Processor) -> Status:
    """The status read of `tsrevel status`, GET /admin/status, the console's overview and the metrics scrape."""
    store = processor.store
    oldest = await store.oldest_pending()
    orders = await store.list_orders(limit=1)
    audit = await store.list_audit(limit=1)
    return Status(
        flags=await processor.flags(),
        overrides=await store.get_flags(),
        counts=await store.count_by_state(),
        oldest_pending_age_s=(processor.clock.now() - oldest).total_seconds() if oldest else None,
        last_order=orders[0] if orders else None,
        last_action=audit[0] if audit else None,
        last_poll=await last_poll(processor),
        mapping_reload=json_object(await store.get_value(MAPPING_RELOAD_VALUE)),
    )


def mapped_order(delivery: Delivery, entry: LedgerEntry | None) -> dict[str, Any] | None:
    """The order a delivery mapped: for done, the ledger's snapshot of the event's order; else its own result (dry_run).

    `tsrevel deliveries show`, GET /admin/deliveries/{id} and /test/webhook show it.
    """
    if delivery.state == st.DONE and entry is not None and entry.snapshot:
        return json_object(entry.snapshot)
    return json_object(delivery.result) if delivery.result else None


def json_object(raw: str | None) -> dict[str, Any] | None:
    """A stored JSON text as a dict; None when it is empty, not JSON, or not an object."""
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@attrs.frozen(kw_only=True)
class FlagRow:
    """One flag in force and where it comes from; each entrypoint words the source its own way."""

    flag: str  # "enable_connector", "dry_run" or "allowed_locations"
    value: bool | frozenset[str]
    overridden: bool  # a runtime override is stored for it
    refused: bool = False  # the stored override is one this service does not obey (dry_run=false, going live not allowed)


def flag_rows(flags: SafetyFlags, overrides: FlagOverrides) -> tuple[FlagRow, ...]:
    """The three flags, in the order every page and table shows them."""
    return (
        FlagRow(flag="enable_connector", value=flags.enable_connector, overridden=overrides.enable_connector is not None),
        FlagRow(
            flag="dry_run", value=flags.dry_run, overridden=overrides.dry_run is not None,
            refused=overrides.dry_run is not None and overrides.dry_run != flags.dry_run,
        ),
        FlagRow(flag="allowed_locations", value=flags.allowed_locations, overridden=False),
    )


# ---- what the mapping misses ----------------------------------------------------------------------

# How many of the newest deliveries of each state the unmapped read re-maps to find unmapped items.
UNMAPPED_SCAN = 100
UNMAPPED_STATES = (st.DEAD, st.DRY_RUN, st.DONE, st.NEEDS_ATTENTION)
PRODUCT_PLACEHOLDER = "<Revel product id>"
ESTABLISHMENT_PLACEHOLDER = "<Revel establishment id>"


@attrs.frozen(kw_only=True)
class Unmapped:
    """One thing the mapping does not cover, seen in stored deliveries, and the TOML that would cover it."""

    what: str  # for people: "'Cold brew' menu_item:5501", "location 999 (site 15691)"
    count: int
    delivery_ids: tuple[int, ...]
    toml: str
    kind: str = "item"  # "item" (a line item no product covers), "billing" (a billing detail [billing] misses) or "location"
    name: str = ""  # the item's TripleSeat display name
    menu_item_id: str | None = None
    locations: tuple[str, ...] = ()  # the TripleSeat location ids (or "site:<id>") of the deliveries it stopped


def toml_string(text: str) -> str:
    """The text as a TOML basic string: quotes, backslashes and every control character escaped."""
    escaped = []
    for char in text:
        if char in ('"', "\\"):
            escaped.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            escaped.append(f"\\u{ord(char):04x}")
        else:
            escaped.append(char)
    return '"' + "".join(escaped) + '"'


def product_key(item: UnmappedItem) -> str:
    """The [products] key that would map the item: by menu item id when it has one, else by its name."""
    return f"{MENU_ITEM_PREFIX}{item.menu_item_id}" if item.menu_item_id else item.display_name.strip()


def product_line(item: UnmappedItem) -> str:
    """The [products] line that would map the item: by menu item id when it has one, else by its name."""
    return f"{toml_string(product_key(item))} = {PRODUCT_PLACEHOLDER}"


def location_lines(location_id: str | None, site_id: str | None) -> str:
    if location_id:
        return f"[locations.{location_id}]\nname = \"\"\nrevel_establishment = {ESTABLISHMENT_PLACEHOLDER}"
    return f"[sites.{site_id}]\nrevel_establishment = {ESTABLISHMENT_PLACEHOLDER}"


@attrs.define
class _Seen:
    what: str
    toml: str
    kind: str
    name: str = ""
    menu_item_id: str | None = None
    delivery_ids: list[int] = attrs.Factory(list)
    locations: list[str] = attrs.Factory(list)

    def add(self, delivery_id: int, location: str | None) -> None:
        if delivery_id not in self.delivery_ids:
            self.delivery_ids.append(delivery_id)
        if location and location not in self.locations:
            self.locations.append(location)


async def unmapped_seen(processor: Processor, *, per_state: int = UNMAPPED_SCAN) -> list[Unmapped]:
    """Re-map the newest stored deliveries with the mapping in force and collect what it still misses.

    A delivery whose line items came from the TripleSeat API (not in its webhook) shows only
    what its webhook carried.
    """
    found: dict[tuple[str, str], _Seen] = {}

    def seen(key: tuple[str, str], entry: _Seen, delivery_id: int, location: str | None) -> None:
        found.setdefault(key, entry).add(delivery_id, location)

    for delivery in await _newest(processor, UNMAPPED_STATES, per_state):
        try:
            envelope = WebhookEnvelope.from_json_bytes(delivery.body)
            if envelope.event is None:
                continue
            mapped = processor.preview(decode_json(delivery.body))
        except PayloadError:
            continue
        event = envelope.event
        where = event.location_id or (f"site:{event.site_id}" if event.site_id else None)
        if isinstance(mapped, MappingFailure) and mapped.missing_location:
            lines = location_lines(event.location_id, event.site_id)
            seen(("location", f"{event.location_id}/{event.site_id}"), _Seen(mapped.missing_location, lines, "location"), delivery.id, where)
        if isinstance(mapped, MappingFailure | RevelOrder):
            for item in mapped.unmapped:
                line = product_line(item)
                entry = _Seen(item.describe(), line, "item", item.display_name.strip(), item.menu_item_id)
                seen(("item", line), entry, delivery.id, where)
        if isinstance(mapped, MappingFailure):
            # Billing details missing from [billing], where the mapping knows them (the invoice work):
            # the failure names them and writes their TOML lines itself.
            names = getattr(mapped, "unmapped_billing", ())
            for name, line in zip(names, getattr(mapped, "billing_lines", ()), strict=False):
                seen(("billing", line), _Seen(f"billing detail {name!r} (under [billing])", line, "billing", name), delivery.id, where)
    ranked = sorted(found.values(), key=lambda v: (-len(v.delivery_ids), v.what))
    return [
        Unmapped(
            what=v.what, count=len(v.delivery_ids), delivery_ids=tuple(sorted(v.delivery_ids)), toml=v.toml,
            kind=v.kind, name=v.name, menu_item_id=v.menu_item_id, locations=tuple(sorted(v.locations)),
        )
        for v in ranked
    ]


async def item_names_seen(processor: Processor, *, per_state: int = UNMAPPED_SCAN) -> dict[str, str | None]:
    """Every line item name in the newest stored deliveries (any state), with its menu item id when it has one."""
    names: dict[str, str | None] = {}
    for delivery in await _newest(processor, st.STATES, per_state):
        try:
            envelope = WebhookEnvelope.from_json_bytes(delivery.body)
        except PayloadError:
            continue
        for line in envelope.event.line_items if envelope.event else ():
            name = line.display_name.strip()
            if name and names.get(name) is None:
                names[name] = line.menu_item_id
    return names


async def _newest(processor: Processor, states: Iterable[str], per_state: int) -> list[Delivery]:
    chosen: list[Delivery] = []
    for state in states:
        chosen += await processor.store.list_deliveries(state=state, limit=per_state)
    return chosen
