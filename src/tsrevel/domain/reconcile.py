"""Compare the order ledger with the orders Revel lists, and name every disagreement once; performs no I/O.

This is the pure core of ``tsrevel reconcile`` (R24). It only reports: deciding what to do
about a missing, duplicate or orphan order is left to a person, so nothing is ever created or
voided without someone confirming it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import attrs

from tsrevel.domain.deliveries import LEDGER_CREATED, LedgerEntry
from tsrevel.domain.ids import ORDER_REFERENCE_PREFIX, order_reference
from tsrevel.domain.legacy import LegacyReferences


@attrs.frozen(kw_only=True)
class MissingOrder:
    """The ledger says the order was created, but Revel lists no order with its local_id."""

    reference: str
    entry: LedgerEntry

    def describe(self) -> str:
        recorded = f" (ledger has Revel id {self.entry.revel_order_id})" if self.entry.revel_order_id else ""
        return f"missing: {self.reference} for event {self.entry.event_id} is recorded as created{recorded} but Revel lists no such order"


@attrs.frozen(kw_only=True)
class DuplicateOrder:
    """Revel lists more than one order with one local_id; entry is the ledger row, if there is one."""

    reference: str
    order_ids: tuple[int, ...]  # ascending
    entry: LedgerEntry | None = None
    local_ids: tuple[str, ...] = ()  # each order's own local_id, in order_ids' order (a legacy one differs)

    def describe(self) -> str:
        shown = [
            f"{i} as {local!r}" if local and local != self.reference else str(i)
            for i, local in zip(self.order_ids, self.local_ids or (self.reference,) * len(self.order_ids), strict=True)
        ]
        ids = ", ".join(shown)
        kept = f"; the ledger points at {self.entry.revel_order_id}" if self.entry and self.entry.revel_order_id else ""
        return f"duplicate: {self.reference} has {len(self.order_ids)} Revel orders ({ids}){kept}"


@attrs.frozen(kw_only=True)
class OrphanOrder:
    """Revel lists one order with our reference prefix that the ledger knows nothing about."""

    reference: str
    order_id: int

    def describe(self) -> str:
        return f"orphan: Revel order {self.order_id} ({self.reference}) has no ledger row"


@attrs.frozen(kw_only=True)
class ReconcileReport:
    """Every disagreement, each local_id in at most one list, every list sorted by reference."""

    missing: tuple[MissingOrder, ...] = ()
    duplicates: tuple[DuplicateOrder, ...] = ()
    orphans: tuple[OrphanOrder, ...] = ()
    ledger_checked: int = 0
    orders_checked: int = 0
    legacy_orders: int = 0  # listed orders under a REVEL_LEGACY_LOCAL_IDS reference, counted as their event's

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicates or self.orphans)

    def problems(self) -> list[str]:
        """One line per problem: duplicates first (the costly kind), then missing, then orphans."""
        return [p.describe() for p in (*self.duplicates, *self.missing, *self.orphans)]


def reconcile(
    ledger: Sequence[LedgerEntry],
    revel_orders: Sequence[tuple[int, str]],
    *,
    prefix: str = ORDER_REFERENCE_PREFIX,
    legacy: LegacyReferences = LegacyReferences(),
) -> ReconcileReport:
    """Compare ledger rows with Revel's (order id, local_id) pairs; each problem is reported exactly once.

    - duplicate: more than one Revel order carries one event's reference (whatever the ledger says);
    - missing: a ledger row in state ``created`` whose reference no Revel order carries;
    - orphan: exactly one Revel order with a ``prefix`` local_id and no ledger row for it.

    An order under a legacy reference (``legacy``, e.g. ``Triple Seat 123``) counts as its event's
    order: it satisfies the event's ledger row, and beside a ``tripleseat-123`` order it is a
    duplicate. Without a ledger row it is the previous connector's and no problem.

    A ledger row still ``pending`` (a create may be in flight or lost) is not a problem by
    itself: its next attempt looks the order up before creating. The same (id, local_id) pair
    listed twice (overlapping pages or establishments) counts once.
    """
    by_reference: dict[str, dict[int, str]] = defaultdict(dict)
    for order_id, local_id in revel_orders:
        by_reference[canonical_reference(local_id, legacy, prefix=prefix)][order_id] = local_id
    rows = _rows_by_reference(ledger)

    duplicates = [
        DuplicateOrder(
            reference=ref, order_ids=tuple(sorted(ids)), entry=rows.get(ref), local_ids=tuple(ids[i] for i in sorted(ids))
        )
        for ref, ids in by_reference.items()
        if len(ids) > 1
    ]
    missing = [
        MissingOrder(reference=ref, entry=entry)
        for ref, entry in rows.items()
        if entry.state == LEDGER_CREATED and not by_reference.get(ref)
    ]
    orphans = [
        OrphanOrder(reference=ref, order_id=next(iter(ids)))
        for ref, ids in by_reference.items()
        if len(ids) == 1 and ref not in rows and next(iter(ids.values())).startswith(prefix)
    ]
    return ReconcileReport(
        missing=tuple(sorted(missing, key=lambda m: m.reference)),
        duplicates=tuple(sorted(duplicates, key=lambda d: d.reference)),
        orphans=tuple(sorted(orphans, key=lambda o: o.reference)),
        ledger_checked=len(rows),
        orders_checked=sum(len(ids) for ids in by_reference.values()),
        legacy_orders=sum(1 for ref, ids in by_reference.items() for local in ids.values() if local != ref),
    )


def canonical_reference(local_id: str, legacy: LegacyReferences, *, prefix: str = ORDER_REFERENCE_PREFIX) -> str:
    """tsrevel's reference for the event a local_id names: itself, or ``tripleseat-<id>`` for a legacy one."""
    if local_id.startswith(prefix):
        return local_id
    event_id = legacy.event_id_of(local_id)
    return local_id if event_id is None else order_reference(event_id)


def _rows_by_reference(ledger: Iterable[LedgerEntry]) -> dict[str, LedgerEntry]:
    # The ledger has one row per event and one reference per event; should two rows ever share a
    # reference, the created one is the one that speaks for Revel.
    rows: dict[str, LedgerEntry] = {}
    for entry in ledger:
        known = rows.get(entry.reference)
        if known is None or (known.state != LEDGER_CREATED and entry.state == LEDGER_CREATED):
            rows[entry.reference] = entry
    return rows
