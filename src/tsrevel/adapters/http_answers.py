"""Reading an HTTP answer the way every adapter needs it: a Retry-After moment, a short body excerpt."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

EXCERPT_CHARS = 300


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
