"""How a worker leaves a claimed delivery: one value the store commits whole, fenced by the lease; performs no I/O.

A delivery pass ends with one Verdict (``Store.finish(delivery_id, token=..., now=..., outcome=...)``):
the new state and its timeline note, and what goes with it in the same transaction (the error,
the attempt count, when to look again, the order snapshot or reference, the emails for the outbox,
the event's order slot to give back). The named constructors say which verdict is meant; the store
still refuses a state a claimed delivery may not finish in (store_rules.check_finish_state).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from tsrevel.domain.deliveries import DEAD, DONE, DRY_RUN, HELD, IGNORED, NEEDS_ATTENTION, REJECTED, RETRYING, SKIPPED

if TYPE_CHECKING:  # ports.py names Verdict in the Store protocol; at run time the annotation is only text
    from tsrevel.domain.ports import EmailMessage


@attrs.frozen(kw_only=True)
class Verdict:
    """The verdict on one claimed delivery; a None field leaves what the delivery holds (next_attempt_at is always set)."""

    state: str
    note: str  # the timeline line of the move
    error: str | None = None  # becomes last_error
    attempts: int | None = None
    next_attempt_at: datetime | None = None  # when a retrying delivery is due again (None: not scheduled)
    result: str | None = None  # the mapped order's snapshot (JSON)
    order_reference: str | None = None
    emails: tuple[EmailMessage, ...] = attrs.field(default=(), converter=tuple)  # into the outbox, in the same transaction
    release_event_id: str | None = None  # give back this event's order slot if this delivery reserved it and made no order

    @classmethod
    def done(cls, note: str, *, order_reference: str | None = None) -> Verdict:
        return cls(state=DONE, note=note, order_reference=order_reference)

    @classmethod
    def held(cls, note: str, *, release_event_id: str | None = None) -> Verdict:
        """Held for a replay (the kill switch); releasing the slot when it stood down before the Revel call."""
        return cls(state=HELD, note=note, release_event_id=release_event_id)

    @classmethod
    def skipped(cls, note: str) -> Verdict:
        return cls(state=SKIPPED, note=note)

    @classmethod
    def ignored(cls, note: str) -> Verdict:
        return cls(state=IGNORED, note=note)

    @classmethod
    def rejected(cls, note: str, *, error: str) -> Verdict:
        """The stored body cannot be read: nothing will ever be done with it."""
        return cls(state=REJECTED, note=note, error=error)

    @classmethod
    def dry_run(
        cls, note: str, *, result: str | None = None, emails: tuple[EmailMessage, ...] = (), release_event_id: str | None = None
    ) -> Verdict:
        return cls(state=DRY_RUN, note=note, result=result, emails=emails, release_event_id=release_event_id)

    @classmethod
    def needs_attention(cls, note: str, *, order_reference: str, emails: tuple[EmailMessage, ...]) -> Verdict:
        """The event's order exists and ops must act (the event changed, or was withdrawn)."""
        return cls(state=NEEDS_ATTENTION, note=note, order_reference=order_reference, emails=emails)

    @classmethod
    def retry_at(
        cls, at: datetime, note: str, *, error: str | None = None, attempts: int | None = None, result: str | None = None
    ) -> Verdict:
        """Look again at ``at``; attempts None keeps the count (a deferral or a store outage is no failed attempt)."""
        return cls(state=RETRYING, note=note, error=error, attempts=attempts, next_attempt_at=at, result=result)

    @classmethod
    def dead(
        cls, reason: str, *, attempts: int, emails: tuple[EmailMessage, ...] = (), release_event_id: str | None = None
    ) -> Verdict:
        """Given up: the reason is both the note and the error; the slot is released so a replay may order the event."""
        return cls(
            state=DEAD, note=reason, error=reason, attempts=attempts, emails=emails, release_event_id=release_event_id
        )
