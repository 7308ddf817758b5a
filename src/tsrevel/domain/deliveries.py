"""Delivery states, the moves allowed between them, and the records the store keeps; performs no I/O."""

from __future__ import annotations

from datetime import datetime

import attrs

RECEIVED = "received"
QUEUED = "queued"
PROCESSING = "processing"
RETRYING = "retrying"
HELD = "held"
SKIPPED = "skipped"
IGNORED = "ignored"
REJECTED = "rejected"
DONE = "done"
DRY_RUN = "dry_run"
NEEDS_ATTENTION = "needs_attention"
DEAD = "dead"

STATES = (
    RECEIVED, QUEUED, PROCESSING, RETRYING, HELD, SKIPPED, IGNORED, REJECTED, DONE, DRY_RUN,
    NEEDS_ATTENTION, DEAD,
)
# States a worker still has to act on.
PENDING_STATES = frozenset({RECEIVED, QUEUED, PROCESSING, RETRYING})
# States where nothing more happens until an operator replays.
TERMINAL_STATES = frozenset(set(STATES) - PENDING_STATES)
# Replay re-queues these; DRY_RUN is included since a rehearsal never consumed the order slot.
REPLAYABLE_STATES = frozenset({HELD, SKIPPED, DEAD, DRY_RUN})
# An operator may discard what could be replayed instead: it moves to IGNORED and is never replayed.
# Discard is an operator override outside TRANSITIONS, which lists the worker's moves and replay.
DISCARDABLE_STATES = REPLAYABLE_STATES

TRANSITIONS: dict[str, frozenset[str]] = {
    RECEIVED: frozenset({QUEUED, REJECTED}),
    QUEUED: frozenset({PROCESSING}),
    PROCESSING: frozenset(
        {HELD, SKIPPED, IGNORED, REJECTED, DONE, DRY_RUN, NEEDS_ATTENTION, RETRYING, DEAD, QUEUED}
    ),
    RETRYING: frozenset({PROCESSING}),
    HELD: frozenset({QUEUED}),
    SKIPPED: frozenset({QUEUED}),
    DEAD: frozenset({QUEUED}),
    DRY_RUN: frozenset({QUEUED}),
    IGNORED: frozenset(),
    REJECTED: frozenset(),
    DONE: frozenset(),
    NEEDS_ATTENTION: frozenset(),
}


def can_move(old: str, new: str) -> bool:
    """Whether a delivery may go from state old to state new."""
    return new in TRANSITIONS.get(old, frozenset())


@attrs.frozen(kw_only=True)
class _Received:
    """What every delivery record holds: the raw body, what intake learned from it, and its state.

    A base for the record to store and the stored record only (they share these fields and no
    behaviour), so both keep their flat fields and keyword constructors.
    """

    key: str
    body: bytes
    correlation_id: str
    received_at: datetime
    trigger_type: str | None
    event_id: str | None
    state: str


@attrs.frozen(kw_only=True)
class NewDelivery(_Received):
    """A webhook to store: its raw body and what intake learned from it; state is QUEUED, or REJECTED with error set."""

    error: str | None = None
    header_names: tuple[str, ...] = ()
    source: str = "webhook"  # SOURCES: how the delivery came (a webhook, a sync by id, the catch-up poll)
    event_version: str | None = None  # event_version(): the event's id + updated_at, when known
    note: str | None = None  # the first timeline note instead of "received" (who synced it, and why)


@attrs.frozen(kw_only=True)
class TimelineEntry:
    """One step in a delivery's history."""

    at: datetime
    state: str
    note: str


@attrs.frozen(kw_only=True)
class Delivery(_Received):
    """A stored webhook delivery and where it stands."""

    id: int
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    order_reference: str | None = None
    result: str | None = None  # JSON text: the mapped order or the decision's detail
    lease_token: int = 0
    lease_until: datetime | None = None
    updated_at: datetime | None = None
    timeline: tuple[TimelineEntry, ...] = ()
    source: str = "webhook"


@attrs.frozen(kw_only=True)
class LedgerEntry:
    """The order ledger's row for one TripleSeat event: the only order it may have."""

    event_id: str
    reference: str
    establishment_id: int
    delivery_id: int
    state: str  # "pending" (a create may be in flight) or "created"
    revel_order_id: int | None = None
    revel_uri: str | None = None
    snapshot: str | None = None  # JSON text of RevelOrder.to_snapshot()
    created_at: datetime | None = None
    updated_at: datetime | None = None


LEDGER_PENDING = "pending"
LEDGER_CREATED = "created"


# ---- how a delivery came, and the event versions already seen --------------------------------

SOURCE_WEBHOOK = "webhook"
SOURCE_SYNC = "sync"  # an operator's `tsrevel sync EVENT_ID` / POST /admin/sync
SOURCE_CATCHUP = "catchup"  # the catch-up poll of TripleSeat's events/search.json
SOURCES = (SOURCE_WEBHOOK, SOURCE_SYNC, SOURCE_CATCHUP)


def event_version(event_id: str | None, updated_at: str | None) -> str | None:
    """The key of one version of an event: its id and its updated_at text (spaces and case folded); None when either is missing."""
    if not event_id or not updated_at or not updated_at.strip():
        return None
    return f"{event_id}@{' '.join(updated_at.split()).upper()}"


def duplicate_by_version(new_source: str, seen_source: str) -> bool:
    """Whether a delivery of an event version already seen (first from seen_source) is a duplicate of that one.

    A poll never repeats a version seen from anywhere; a webhook never repeats a version the poll
    or a sync stored first (whichever comes first makes the one delivery). Webhooks among
    themselves keep their own rule (the body hash), and an operator's sync always stores.
    """
    if new_source == SOURCE_SYNC:
        return False
    if new_source == SOURCE_CATCHUP:
        return True
    return seen_source != SOURCE_WEBHOOK
