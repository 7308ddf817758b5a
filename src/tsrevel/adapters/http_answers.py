"""What every adapter needs around an outside call: a total deadline, a Retry-After moment, a short body excerpt."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tsrevel.domain.errors import GatewayError

T = TypeVar("T")

EXCERPT_CHARS = 300


async def within_deadline(call: Awaitable[T], deadline_s: float | None, timed_out: Callable[[], GatewayError]) -> T:
    """Await call, but no longer than deadline_s in all: connect, send and every read together.

    The clients' own timeouts bound each read, so a far side that trickles its answer a byte at a
    time would hold the call (and the delivery's lease) for ever; this ends it with timed_out().
    """
    if deadline_s is None:
        return await call
    scope = asyncio.timeout(deadline_s)
    try:
        async with scope:
            return await call
    except TimeoutError:
        if not scope.expired():
            raise  # the call's own timeout (a socket's TimeoutError): the adapter classifies it
        raise timed_out() from None


def body_excerpt(content: bytes, limit: int = EXCERPT_CHARS) -> str:
    """The start of a response body on one line, for an operator to read in an error."""
    text = " ".join(content.decode("utf-8", errors="replace").split())
    if not text:
        return "(empty body)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> datetime | None:
    """Retry-After as an aware UTC moment: delta-seconds or an HTTP date; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    now = now or datetime.now(timezone.utc)
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return now + timedelta(seconds=max(seconds, 0.0)) if seconds == seconds and seconds < 1e9 else None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000" or no zone: HTTP dates are GMT
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
