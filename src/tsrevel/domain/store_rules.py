"""The decisions every store makes the same way: what is due, who holds a lease, who gets the order slot, what may be replayed, discarded or pruned; performs no I/O.

A store persists the result of these rules; the SQL stores express the same conditions in their
WHERE clauses, built from the state sets here, and the contract suite checks they agree.
"""

from __future__ import annotations

from datetime import datetime

from tsrevel.domain.deliveries import (
    DISCARDABLE_STATES,
    LEDGER_CREATED,
    PROCESSING,
    QUEUED,
    REJECTED,
    REPLAYABLE_STATES,
    RETRYING,
    STATES,
    TERMINAL_STATES,
    LedgerEntry,
    NewDelivery,
    can_move,
)
from tsrevel.domain.errors import InvalidRequest, NotFound
from tsrevel.domain.ports import (
    BUSY,
    EMAIL_FAILED,
    EMAIL_PENDING,
    EMAIL_RETRYING,
    EMAIL_SENDING,
    EMAIL_SENT,
    EMAIL_UNSENT,
    EXISTING,
    RESERVED,
)

NOTE_RECEIVED = "received"
NOTE_CLAIMED = "claimed"
NOTE_TAKEN_OVER = "claimed after lease expired"

# The outcome of reserve_order when the slot's owner is gone: the slot passes to the asking delivery
# (the store records the new owner and answers RESERVED).
PASS_TO_ME = "pass"

# States a worker can claim: new work, a retry that is due, or a lease that expired.
CLAIMABLE_STATES = (QUEUED, RETRYING, PROCESSING)
EMAIL_CLAIMABLE_STATES = (EMAIL_PENDING, EMAIL_RETRYING, EMAIL_SENDING)
# Where a sender may leave an email it claimed; SENDING is only ever set by claim_email.
EMAIL_FINISH_STATES = frozenset({EMAIL_PENDING, EMAIL_RETRYING, EMAIL_SENT, EMAIL_UNSENT, EMAIL_FAILED})
# Emails nothing more happens to: pruning may delete them with their delivery.
SETTLED_EMAIL_STATES = (EMAIL_SENT, EMAIL_UNSENT, EMAIL_FAILED)
# Deliveries pruning may delete (when old enough, owning no ledger row and no unsettled email).
PRUNABLE_STATES = tuple(sorted(TERMINAL_STATES))


def intake_note(new: NewDelivery) -> str:
    """The first timeline note: the rejection reason for a rejected delivery, else 'received' (or the given note)."""
    if new.state == REJECTED and new.error:
        return new.error
    return new.note or NOTE_RECEIVED


def due(state: str, next_attempt_at: datetime | None, lease_until: datetime | None, now: datetime) -> bool:
    """Whether a delivery (or an email, with its own states) may be claimed now.

    New work is always due, a retry once its time has come, a claimed one once its lease expired;
    a missing time counts as "due", so that a row is never stuck for good.
    """
    if state in (QUEUED, EMAIL_PENDING):
        return True
    if state in (RETRYING, EMAIL_RETRYING):
        return next_attempt_at is None or next_attempt_at <= now
    if state in (PROCESSING, EMAIL_SENDING):
        return lease_until is None or lease_until < now
    return False


def claim_note(state: str) -> str:
    """The timeline note of a claim: a takeover when the delivery was still (expired) in PROCESSING."""
    return NOTE_TAKEN_OVER if state == PROCESSING else NOTE_CLAIMED


def leased(state: str, lease_until: datetime | None, now: datetime) -> bool:
    """Whether a worker currently owns the delivery (its lease has not expired)."""
    return state == PROCESSING and lease_until is not None and lease_until >= now


def holds_lease(state: str, lease_token: int, token: int) -> bool:
    """The fence for a worker's commits: its token is current and nobody moved the delivery on."""
    return state == PROCESSING and lease_token == token


def reservation_outcome(entry: LedgerEntry, *, delivery_id: int, owner_leased: bool) -> str:
    """Who may make the event's order, given its ledger row (just inserted or already there).

    RESERVED: the row is this delivery's pending reservation. EXISTING: the order was made.
    BUSY: another delivery holds the slot under a live lease. PASS_TO_ME: the owner finished,
    died or waits to retry, so the slot passes to this delivery (reference and establishment stay,
    so the caller looks where a lost create may have gone).
    """
    if entry.state == LEDGER_CREATED:
        return EXISTING
    if entry.delivery_id == delivery_id:
        return RESERVED
    return BUSY if owner_leased else PASS_TO_ME


def prunable(
    state: str, updated_at: datetime | None, older_than: datetime, *, owns_order: bool, has_unsettled_email: bool
) -> bool:
    """Whether pruning deletes the delivery: terminal, untouched since older_than, owning no ledger row
    (it is what prevents a second order) and no email still to send."""
    return (
        state in TERMINAL_STATES and updated_at is not None and updated_at < older_than
        and not owns_order and not has_unsettled_email
    )


def replayable(state: str) -> bool:
    """Whether replay re-queues a delivery in this state."""
    return state in REPLAYABLE_STATES


def discardable(state: str) -> bool:
    """Whether an operator may discard (ignore for good) a delivery in this state."""
    return state in DISCARDABLE_STATES


def check_new_state(state: str) -> None:
    if state not in STATES:
        raise ValueError(f"unknown delivery state {state!r}")


def check_finish_state(state: str) -> None:
    """A worker may only finish a claimed delivery into a state the domain allows after processing."""
    if not can_move(PROCESSING, state):
        raise ValueError(f"a claimed delivery cannot finish in state {state!r}")


def check_email_state(state: str) -> None:
    if state not in EMAIL_FINISH_STATES:
        raise ValueError(f"an email cannot finish in state {state!r}; use one of {sorted(EMAIL_FINISH_STATES)}")


def check_replayable(state: str) -> None:
    """Replaying a whole state is refused unless replay works on it."""
    if not replayable(state):
        raise InvalidRequest(
            f"deliveries in state {state!r} cannot be replayed; replay works on {', '.join(sorted(REPLAYABLE_STATES))}"
        )


def missing_delivery(delivery_id: int) -> NotFound:
    return NotFound(f"delivery {delivery_id} does not exist")
