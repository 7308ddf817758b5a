"""Helpers the stores share: UTC time handling, argument checks, the notes they write, outage logging."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from tsrevel.domain.deliveries import PROCESSING, REJECTED, REPLAYABLE_STATES, STATES, NewDelivery, can_move
from tsrevel.domain.errors import InvalidRequest, NotFound, StoreUnavailable
from tsrevel.domain.ports import (
    EMAIL_FAILED,
    EMAIL_PENDING,
    EMAIL_RETRYING,
    EMAIL_SENT,
    EMAIL_UNSENT,
)

UTC = timezone.utc

log = logging.getLogger("tsrevel.store")

NOTE_RECEIVED = "received"
NOTE_CLAIMED = "claimed"
NOTE_TAKEN_OVER = "claimed after lease expired"

# Where a sender may leave an email it claimed; SENDING is only ever set by claim_email.
EMAIL_FINISH_STATES = frozenset({EMAIL_PENDING, EMAIL_RETRYING, EMAIL_SENT, EMAIL_UNSENT, EMAIL_FAILED})


def utc(value: datetime) -> datetime:
    """The same instant in UTC; a naive datetime is refused, since guessing its zone could reorder events."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"timestamp {value!r} has no time zone; the store needs timezone-aware UTC")
    return value.astimezone(UTC)


def utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else utc(value)


def time_text(value: datetime) -> str:
    """Fixed-width ISO text in UTC, so that comparing the text in SQL compares the instants."""
    return utc(value).isoformat(timespec="microseconds")


def time_text_or_none(value: datetime | None) -> str | None:
    return None if value is None else time_text(value)


def parse_time(text: str | None) -> datetime | None:
    """The aware UTC datetime written by time_text, or None."""
    return None if text is None else datetime.fromisoformat(text).astimezone(UTC)


def intake_note(new: NewDelivery) -> str:
    """The first timeline note: the rejection reason for a rejected delivery, else 'received'."""
    if new.state == REJECTED and new.error:
        return new.error
    return new.note or NOTE_RECEIVED


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
    if state not in REPLAYABLE_STATES:
        raise InvalidRequest(
            f"deliveries in state {state!r} cannot be replayed; replay works on {', '.join(sorted(REPLAYABLE_STATES))}"
        )


def missing_delivery(delivery_id: int) -> NotFound:
    return NotFound(f"delivery {delivery_id} does not exist")


class StoreOutage:
    """Logs a store outage once when it starts and once when it ends, never once per failed call.

    Every caller (each webhook, each worker poll, each readiness probe) sees the failure; the log
    says it twice per outage: the first failure with its reason, then the recovery with its length.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._since: float | None = None
        self.reason: str | None = None  # why the store is unavailable now; None while it works

    def failed(self, exc: StoreUnavailable) -> StoreUnavailable:
        if self._since is None:
            self._since = time.monotonic()
            self.reason = exc.reason
            log.error(
                "%s unavailable: %s; webhooks are answered 503 with Retry-After and deliveries wait until it recovers"
                " (logged once per outage)", self._what, exc.reason, extra={"store_outage": "started"},
            )
        return exc

    def recovered(self) -> None:
        if self._since is None:
            return
        lasted, reason = time.monotonic() - self._since, self.reason
        self._since, self.reason = None, None
        log.warning("%s available again after %.1f s (was: %s)", self._what, lasted, reason, extra={"store_outage": "ended"})
