"""The reads the operators' console shows, each built once here from the Processor and its store.

Nothing here changes state: the console's actions call the Processor's use cases directly. The
templates only lay these records out; no rule, query or lookup lives in a template or a route.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode
from typing import Any, Protocol

import attrs

from tsrevel.domain import deliveries as st
from tsrevel.domain.deliveries import Delivery, LedgerEntry
from tsrevel.domain.errors import PayloadError, StoreUnavailable
from tsrevel.domain.events import WebhookEnvelope
from tsrevel.domain.mapping import MENU_ITEM_PREFIX, MappingConfig
from tsrevel.domain.ports import AuditEntry, OutboxEmail
from tsrevel.domain.processing import MappingStatus, Processor
from tsrevel.entrypoints.views import Status, delivery_record, status_of
# The unmapped-items read is shared with the CLI (`tsrevel mapping unmapped`); re-exported for the console.
from tsrevel.entrypoints.views import (  # noqa: F401 - re-exports
    ESTABLISHMENT_PLACEHOLDER,
    PRODUCT_PLACEHOLDER,
    UNMAPPED_SCAN,
    UNMAPPED_STATES,
    Unmapped,
    location_lines,
    product_line,
    toml_string,
    unmapped_seen,
)
from tsrevel.version import __version__

PAGE_SIZE = 50
AUDIT_PAGE = 200


class WorkerState(Protocol):
    """What readiness needs to know of the background worker."""

    @property
    def running(self) -> bool: ...


async def readiness_problems(processor: Processor, worker: WorkerState | None) -> list[str]:
    """Why the service is not ready (empty when it is): the store must be writable and the worker running."""
    problems = []
    try:
        await processor.store.check_writable()
    except StoreUnavailable as exc:
        problems.append(f"store not writable: {exc.reason}")
    except Exception as exc:  # any failure to write means not ready; the kind is enough to act on
        problems.append(f"store not writable: {type(exc).__name__}")
    if worker is not None and not worker.running:
        problems.append("worker not running")
    return problems


# ---- overview ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Overview:
    status: Status
    problems: tuple[str, ...]
    version: str = __version__

    @property
    def counts(self) -> list[tuple[str, int]]:
        """Every state with deliveries, in the state machine's order."""
        return [(state, self.status.counts[state]) for state in st.STATES if self.status.counts.get(state)]

    @property
    def total(self) -> int:
        return sum(self.status.counts.values())


async def overview(processor: Processor, worker: WorkerState | None) -> Overview:
    return Overview(status=await status_of(processor), problems=tuple(await readiness_problems(processor, worker)))


# ---- deliveries -------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DeliveryRow:
    delivery: Delivery
    location: str | None  # the event's TripleSeat location id and its name in the mapping, e.g. "201 Tropicana"


@attrs.frozen(kw_only=True)
class DeliveryPage:
    """One page of the deliveries table, newest first, with the cursor to the next (older) page."""

    rows: tuple[DeliveryRow, ...]
    state: str | None
    event_id: str | None
    before: int | None
    older: int | None  # before= for the next page, None on the last one
    replay_count: int  # deliveries "Replay all" would re-queue (when state is replayable)

    @property
    def can_replay_all(self) -> bool:
        return self.state in st.REPLAYABLE_STATES and self.replay_count > 0

    def link(self, *, before: int | None) -> str:
        """The query string of this listing's page that starts below before (None: the newest)."""
        query = {"state": self.state, "event": self.event_id, "before": before}
        return urlencode({k: v for k, v in query.items() if v is not None})


def event_location(delivery: Delivery, mapping: MappingConfig) -> str | None:
    """The TripleSeat location the delivery's event names, with its mapped name; None when it names none."""
    try:
        envelope = WebhookEnvelope.from_json_bytes(delivery.body)
    except PayloadError:
        return None
    location = envelope.event.location_id if envelope.event else None
    if location is None:
        return None
    venue = mapping.locations.get(location)
    return f"{location} {venue.name}" if venue else location


async def delivery_page(
    processor: Processor, *, state: str | None, event_id: str | None, before: int | None, size: int = PAGE_SIZE
) -> DeliveryPage:
    found = await processor.store.list_deliveries(state=state, event_id=event_id, before_id=before, limit=size + 1)
    shown = found[:size]
    counts = await processor.store.count_by_state() if state in st.REPLAYABLE_STATES else {}
    return DeliveryPage(
        rows=tuple(DeliveryRow(delivery=d, location=event_location(d, processor.mapping)) for d in shown),
        state=state,
        event_id=event_id,
        before=before,
        older=shown[-1].id if len(found) > size else None,
        replay_count=counts.get(state or "", 0),
    )


@attrs.frozen(kw_only=True)
class DeliveryDetail:
    delivery: Delivery
    location: str | None
    emails: tuple[OutboxEmail, ...]
    order: LedgerEntry | None  # the event's ledger entry: the Revel result
    result: Any  # the stored result (the mapped order, or the decision's detail), decoded

    @property
    def can_replay(self) -> bool:
        return self.delivery.state in st.REPLAYABLE_STATES

    @property
    def can_discard(self) -> bool:
        return self.delivery.state in st.DISCARDABLE_STATES

    @property
    def mapped_order(self) -> dict[str, Any] | None:
        """The order this delivery mapped: its stored result when that is one, else the ledger's snapshot of the order it placed."""
        if isinstance(self.result, dict) and "items" in self.result:
            return self.result
        if self.order is not None and self.order.delivery_id == self.delivery.id and self.order.snapshot:
            snapshot = json.loads(self.order.snapshot)
            return snapshot if isinstance(snapshot, dict) else None
        return None

    @property
    def order_facts(self) -> list[tuple[str, Any]]:
        """The mapped order's single values (totals among them), in the order the snapshot has them."""
        order = self.mapped_order or {}
        return [(k, v) for k, v in order.items() if not isinstance(v, list | dict)]

    @property
    def order_tables(self) -> list[tuple[str, list[str], list[list[Any]]]]:
        """The mapped order's lists and tables (items, payments, history, ...) as (name, columns, rows)."""
        tables = []
        order = self.mapped_order or {}
        # What the venue reads first is the items; the rest keep the snapshot's order (alphabetical once stored).
        names = sorted(order, key=lambda n: n != "items")
        for name, value in ((n, order[n]) for n in names):
            if isinstance(value, dict) and value:
                tables.append((name, ["field", "value"], [[k, v] for k, v in value.items()]))
                continue
            if not isinstance(value, list) or not value:
                continue
            if all(isinstance(row, dict) for row in value):
                columns = list(dict.fromkeys(k for row in value for k in row))
                tables.append((name, columns, [[row.get(c) for c in columns] for row in value]))
            else:
                tables.append((name, [name], [[row] for row in value]))
        return tables


async def delivery_detail(processor: Processor, delivery_id: int) -> DeliveryDetail:
    """One delivery with its emails and its event's order; raises NotFound."""
    record = await delivery_record(processor, delivery_id)
    delivery = record.delivery
    return DeliveryDetail(
        delivery=delivery,
        location=event_location(delivery, processor.mapping),
        emails=record.emails,
        order=record.order,
        result=json.loads(delivery.result) if delivery.result else None,
    )


# ---- mapping ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class MappingView:
    mapping: MappingConfig
    status: MappingStatus  # the file it came from and when it was loaded
    unmapped: tuple[Unmapped, ...]

    @property
    def shared_products(self) -> list[tuple[str, int]]:
        return product_rows(self.mapping.products)

    @property
    def billing(self) -> Any:
        """The [billing] table when this mapping has one (it is part of the invoice-matching work)."""
        return getattr(self.mapping, "billing", None)


def product_rows(products: Any) -> list[tuple[str, int]]:
    """A product map as (mapping-file key, Revel product id) rows, menu items first."""
    rows = [(f"{MENU_ITEM_PREFIX}{k}", v) for k, v in sorted(products.by_menu_item.items())]
    return rows + sorted(products.by_name.items())


async def mapping_view(processor: Processor) -> MappingView:
    return MappingView(mapping=processor.mapping, status=processor.mapping_status(), unmapped=tuple(await unmapped_seen(processor)))


async def audit_entries(processor: Processor, *, limit: int = AUDIT_PAGE) -> list[AuditEntry]:
    return await processor.store.list_audit(limit=limit)
