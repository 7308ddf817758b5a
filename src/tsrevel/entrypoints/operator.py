"""The operator's actions over the same container and store as the service; they work while it is down.

Each CLI command opens the container (store migrated, clients pooled), acts through the
Processor's use cases (which write the audit log) or reads the store and Revel, and closes
it. Formatting is the CLI's job; this module returns records.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import attrs
from dependency_injector import providers

from tsrevel.domain import deliveries as st
from tsrevel.domain.deliveries import LedgerEntry
from tsrevel.domain.errors import ConfigError, DatabaseMissing, StoreUnavailable, TsrevelError
from tsrevel.domain.ids import ORDER_REFERENCE_PREFIX
from tsrevel.domain.legacy import LegacyReferences
from tsrevel.domain.mapping import MENU_ITEM_PREFIX, MappingConfig, ProductMap, Venue
from tsrevel.domain.ports import ProductCatalog
from tsrevel.domain.processing import Processor
from tsrevel.domain.reconcile import ReconcileReport, canonical_reference, reconcile
from tsrevel.entrypoints.container import Container, build_container, database_location, opened, probe_database, resolve
from tsrevel.entrypoints.settings import Settings
from tsrevel.entrypoints.views import Status, status_of  # noqa: F401 - Status, status_of re-exported

UTC = timezone.utc
EVERYTHING = 1_000_000  # "no limit" for store listings an operator asks to see in full
# Revel filters orders on its own local clock; widen the window so no order near midnight is missed.
RECONCILE_MARGIN = timedelta(days=1)


class OperatorError(TsrevelError):
    """An operator request that cannot be carried out; the message says what to do instead."""


def redact_url(url: str) -> str:
    """A database URL fit to print: any password replaced."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def database_problem(database_url: str, exc: StoreUnavailable) -> str:
    """One line for a database the command cannot use: the variable, where it looked (no password), why, what to do."""
    where = database_location(database_url)
    line = f"TSREVEL_DATABASE_URL: cannot use {where}: {exc.reason}"
    if isinstance(exc, DatabaseMissing):
        relative = database_url.startswith("sqlite:///") and not database_url.startswith("sqlite:////")
        line += (
            "; operator commands do not create a new, empty database: run this where the service runs"
            + (f" (the path is relative to the working directory, now {os.getcwd()})" if relative else "")
            + ", or set TSREVEL_DATABASE_URL to the service's database, e.g. TSREVEL_DATABASE_URL=sqlite:////srv/tsrevel/var/tsrevel.db"
        )
    return line


@attrs.frozen
class Session:
    """One operator command's opened container, its Processor, and why the mapping file did not load (when it did not)."""

    container: Container
    processor: Processor
    mapping_problem: str | None = None

    @property
    def settings(self) -> Settings:
        """The settings the container was built from."""
        return self.container.settings()

    @property
    def store(self) -> Any:
        """The store the Processor's use cases write to (reads of the operator commands go to it too)."""
        return self.processor.store


@asynccontextmanager
async def open_session(
    settings: Settings, *, need_mapping: bool = False, create_database: bool = False, need_store: bool = True
) -> AsyncIterator[Session]:
    """Open the service's container; a broken mapping file only stops commands that need the mapping.

    Flags, replay, discard and audit must work in the middle of an incident, including one caused
    by a bad mapping file. A SQLite database that does not exist is not created (DatabaseMissing):
    a relative path in the wrong working directory would otherwise give a new, empty one.
    """
    container = build_container(settings)
    if need_store:
        await probe_database(settings.database_url)  # an unreachable PostgreSQL: the reason, within a stated bound
        container.store_may_create.override(providers.Object(create_database))
    else:  # a command that reads Revel only (check-mapping): no database needed, none opened or created
        from tsrevel.adapters.memory_store import MemoryStore

        container.store.override(providers.Object(MemoryStore()))
    problem = None
    try:
        container.mapping()
    except ConfigError as exc:
        if need_mapping:
            raise
        problem = str(exc)
        container.mapping.override(providers.Object(MappingConfig()))
    async with opened(container) as processor:
        yield Session(container=container, processor=processor, mapping_problem=problem)


# ---- one delivery's mapped order (deliveries show; views.mapped_order reads it) ---------------------


def order_summary(order: dict[str, Any]) -> list[str]:
    """The mapped order as lines for a terminal: items, totals, payments, billing details, notes to ops."""
    lines = [f"{order.get('local_id', '-')} at Revel establishment {order.get('establishment_id', '-')} ({order.get('location_name', '')})"]
    for item in order.get("items") or []:
        fee = f"  [billing: {item['billing']}]" if item.get("billing") else ""
        lines.append(f"  {item.get('quantity')} x {item.get('name') or 'product'} @ {item.get('price')}  (product {item.get('product_id')}){fee}")
    money = [("subtotal", "Subtotal"), ("discount_amount", "Discount"), ("tax", "Tax"), ("service_charge", "Service fee"),
             ("gratuity", "Gratuity"), ("final_total", "Final total"), ("remaining_due", "Remaining due")]
    if "final_total" not in order:  # mapped before totals were recorded
        lines.append(f"  Total: {order.get('total', '-')}")
    for key, label in money:
        if key in order:
            lines.append(f"  {label + ':':<15}{order[key]}")
    for payment in order.get("payments") or []:
        recorded = "" if order.get("payments_recorded", True) else "  (not recorded in Revel)"
        lines.append(f"  Payment {payment.get('transaction_id')}: {payment.get('amount')} at {payment.get('paid_at') or '-'}{recorded}")
    for detail in order.get("billing") or []:
        lines.append(f"  Billing {detail.get('name')!r}: {detail.get('amount')} -> {detail.get('kind')}")
    if order.get("arithmetic"):
        lines.append(f"  Arithmetic: {order['arithmetic']}")
    lines.extend(f"  Note: {w}" for w in order.get("warnings") or [])
    return lines


# ---- status -----------------------------------------------------------------------------------


async def read_status(session: Session) -> Status:
    return await status_of(session.processor)


# ---- replay and its progress ------------------------------------------------------------------------


async def pending_of(session: Session, ids: Sequence[int]) -> list[int]:
    """Which of these deliveries still wait for a worker."""
    pending = []
    for delivery_id in ids:
        try:
            delivery = await session.store.get_delivery(delivery_id)
        except TsrevelError:
            continue  # pruned meanwhile: nothing left to wait for
        if delivery.state in st.PENDING_STATES:
            pending.append(delivery_id)
    return pending


async def replayable_older_than(session: Session, cutoff: datetime) -> dict[str, int]:
    """Held, skipped, dead and dry-run deliveries last touched before cutoff, by state (prune would delete them)."""
    found: dict[str, int] = {}
    for state in sorted(st.REPLAYABLE_STATES):
        old = [d for d in await session.store.list_deliveries(state=state, limit=EVERYTHING) if d.updated_at and d.updated_at < cutoff]
        if old:
            found[state] = len(old)
    return found


# ---- Revel: check-mapping and reconcile ------------------------------------------------------------


class RevelLister(Protocol):
    """The listing calls of HttpxRevelGateway that check-mapping and reconcile need."""

    async def list_establishments(self) -> list[tuple[int, str]]: ...
    async def list_products(self, establishment_id: int) -> list[tuple[int, str]]: ...
    async def list_orders_by_reference_prefix(
        self, establishment_id: int, prefix: str, created_from: datetime | None = None, created_to: datetime | None = None
    ) -> list[tuple[int, str]]: ...


async def revel_lister(session: Session) -> RevelLister:
    """The service's own Revel adapter (with its key, timeouts and pacing), for the listing calls."""
    gateway = await resolve(session.container.revel())
    if not all(hasattr(gateway, name) for name in ("list_establishments", "list_products", "list_orders_by_reference_prefix")):
        raise OperatorError("this needs Revel: set REVEL_BASE_URL, REVEL_API_KEY and REVEL_API_SECRET (the service's values)")
    return gateway  # type: ignore[no-any-return]


async def product_catalog(session: Session) -> ProductCatalog:
    """The service's own Revel adapter as a product list (for `tsrevel mapping suggest`)."""
    gateway = await resolve(session.container.revel())
    if not hasattr(gateway, "list_products"):
        raise OperatorError("this needs Revel: set REVEL_BASE_URL, REVEL_API_KEY and REVEL_API_SECRET (the service's values)")
    return gateway  # type: ignore[no-any-return]


@attrs.frozen(kw_only=True)
class MappingCheck:
    establishments_checked: int
    products_checked: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def venues(mapping: MappingConfig) -> list[Venue]:
    return [*mapping.locations.values(), *mapping.sites.values()]


def effective_products(venue: Venue, shared: ProductMap) -> dict[str, int]:
    """Every mapping key that can pick a product for this venue: its own entries, then the shared ones it does not shadow."""
    keys = {f"{MENU_ITEM_PREFIX}{k}": v for k, v in venue.products.by_menu_item.items()}
    keys.update({f'"{k}"': v for k, v in venue.products.by_name.items()})
    for k, v in shared.by_menu_item.items():
        keys.setdefault(f"{MENU_ITEM_PREFIX}{k}", v)
    for k, v in shared.by_name.items():
        keys.setdefault(f'"{k}"', v)
    return keys


async def check_mapping(mapping: MappingConfig, revel: RevelLister) -> MappingCheck:
    """Every establishment the mapping names exists in Revel, and every product it can pick exists there."""
    known = {est_id for est_id, _ in await revel.list_establishments()}
    problems: list[str] = []
    by_establishment: dict[int, list[Venue]] = {}
    for venue in venues(mapping):
        by_establishment.setdefault(venue.revel_establishment, []).append(venue)
    products_checked = 0
    for est_id in sorted(by_establishment):
        users = ", ".join(f"{v.key} ({v.name})" for v in by_establishment[est_id])
        if est_id not in known:
            problems.append(f"establishment {est_id} (used by {users}) does not exist in Revel or the API key cannot see it")
            continue
        products = {product_id for product_id, _ in await revel.list_products(est_id)}
        wanted: dict[int, set[str]] = {}
        for venue in by_establishment[est_id]:
            for key, product_id in effective_products(venue, mapping.products).items():
                wanted.setdefault(product_id, set()).add(f"{key} for {venue.key}")
        products_checked += len(wanted)
        for product_id in sorted(set(wanted) - products):
            problems.append(f"product {product_id} ({'; '.join(sorted(wanted[product_id]))}) does not exist in Revel establishment {est_id}")
    return MappingCheck(establishments_checked=len(by_establishment), products_checked=products_checked, problems=tuple(problems))


@attrs.frozen(kw_only=True)
class ReconcileRun:
    start: date
    end: date
    establishments: tuple[int, ...]
    report: ReconcileReport


def reconcile_chunks(start: date, end: date, chunk_days: int | None = None) -> list[tuple[datetime, datetime]]:
    """The Revel query windows: [start - margin, end + 1 day + margin) cut into chunks, each end inclusive to the second.

    chunk_days None (the default) is one window over the whole range: the listing pages by order
    (meta.next), so two years holding 100 orders cost one request per establishment and prefix (P8).
    """
    lo = datetime.combine(start, time.min, UTC) - RECONCILE_MARGIN
    hi = datetime.combine(end + timedelta(days=1), time.min, UTC) + RECONCILE_MARGIN
    step = hi - lo if chunk_days is None else timedelta(days=max(chunk_days, 1))
    chunks = []
    cursor = lo
    while cursor < hi:
        nxt = min(cursor + step, hi)
        chunks.append((cursor, nxt - timedelta(seconds=1)))
        cursor = nxt
    return chunks


async def run_reconcile(
    session: Session,
    revel: RevelLister,
    start: date,
    end: date,
    *,
    chunk_days: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReconcileRun:
    """Read the ledger and Revel's tripleseat-* orders for the dates and compare them; writes nothing anywhere."""
    if end < start:
        raise OperatorError(f"--to {end} is before --from {start}")
    lo = datetime.combine(start, time.min, UTC)
    hi = datetime.combine(end + timedelta(days=1), time.min, UTC)
    ledger = await session.store.list_orders(limit=EVERYTHING)
    in_window = [e for e in ledger if e.created_at is not None and lo <= e.created_at < hi]
    establishments = sorted({v.revel_establishment for v in venues(session.processor.mapping)} | {e.establishment_id for e in in_window})
    chunks = reconcile_chunks(start, end, chunk_days)
    total = len(chunks) * len(establishments)
    done = 0
    # The previous connector's references (REVEL_LEGACY_LOCAL_IDS) are listed too: they count as ours.
    legacy = LegacyReferences(session.settings.revel_legacy_local_ids)
    prefixes = (ORDER_REFERENCE_PREFIX, *legacy.prefixes())
    total *= len(prefixes)
    orders: list[tuple[int, str]] = []
    totals: dict[int, Any] = {}
    with_totals = getattr(revel, "list_order_totals", None)  # the HTTP gateway has it; a bare lister may not
    for est_id in establishments:
        for prefix in prefixes:
            for chunk_from, chunk_to in chunks:
                if with_totals is not None:
                    listed = await with_totals(est_id, prefix, chunk_from, chunk_to)
                    orders += [(order_id, local_id) for order_id, local_id, _ in listed]
                    totals.update({order_id: final_total for order_id, _, final_total in listed})
                else:
                    orders += await revel.list_orders_by_reference_prefix(est_id, prefix, chunk_from, chunk_to)
                done += 1
                if on_progress is not None:
                    on_progress(done, total)
    # The widened Revel window can list orders of events ordered just outside the dates: compare
    # those with their ledger rows too, so they are neither orphans nor silently ignored.
    listed = {canonical_reference(local_id, legacy) for _, local_id in orders}
    compared = {e.reference: e for e in in_window}
    compared.update({e.reference: e for e in ledger if e.reference in listed})
    report = reconcile(
        list(compared.values()), orders, legacy=legacy, revel_totals=totals if with_totals is not None else None
    )
    return ReconcileRun(start=start, end=end, establishments=tuple(establishments), report=report)


def report_json(run: ReconcileRun) -> dict[str, Any]:
    """The reconcile report as JSON-ready data (``--json FILE``)."""
    r = run.report

    def entry(e: LedgerEntry | None) -> dict[str, Any] | None:
        if e is None:
            return None
        return {
            "event_id": e.event_id, "reference": e.reference, "state": e.state, "establishment_id": e.establishment_id,
            "revel_order_id": e.revel_order_id, "delivery_id": e.delivery_id,
            "created_at": e.created_at.isoformat() if e.created_at else None,
        }

    return {
        "from": run.start.isoformat(),
        "to": run.end.isoformat(),
        "establishments": list(run.establishments),
        "ok": r.ok,
        "ledger_checked": r.ledger_checked,
        "orders_checked": r.orders_checked,
        "legacy_orders": r.legacy_orders,
        "missing": [{"reference": m.reference, "ledger": entry(m.entry)} for m in r.missing],
        "duplicates": [
            {"reference": d.reference, "order_ids": list(d.order_ids), "local_ids": list(d.local_ids), "ledger": entry(d.entry)}
            for d in r.duplicates
        ],
        "orphans": [{"reference": o.reference, "order_id": o.order_id} for o in r.orphans],
        "total_mismatches": [
            {"reference": t.reference, "order_id": t.order_id, "ledger_final_total": str(t.ledger_total),
             "revel_final_total": str(t.revel_total), "ledger": entry(t.entry)}
            for t in r.mismatches
        ],
        "problems": r.problems(),
    }
