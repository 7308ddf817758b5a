"""Helpers the stores share: UTC time handling and outage logging (the rules they apply are in domain/store_rules.py)."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from tsrevel.domain.errors import StoreUnavailable

UTC = timezone.utc

log = logging.getLogger("tsrevel.store")


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
