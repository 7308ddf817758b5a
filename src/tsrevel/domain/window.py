"""The optional order window (ORDER_WINDOW_HOURS): when an event's order may be placed; pure arithmetic."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from tsrevel.domain.events import TripleSeatEvent

DEFERRED_NOTE_PREFIX = "deferred until the order window opens at "


def event_start(event: TripleSeatEvent, *, site_zone: str) -> datetime | None:
    """The event's start as an aware UTC instant: event_start_utc when sent, else the site-local start read in site_zone."""
    if event.start_utc is not None:
        return event.start_utc.astimezone(timezone.utc)
    if event.start_local is None:
        return None
    # fold=0: in the repeated hour of a DST change the earlier instant wins, so the window opens no later.
    return event.start_local.replace(tzinfo=ZoneInfo(site_zone), fold=0).astimezone(timezone.utc)


def window_opens_at(event: TripleSeatEvent, *, window_hours: float | None, site_zone: str) -> datetime | None:
    """When the event's order may be placed: its start minus the window; None when there is no window or no start."""
    if window_hours is None:
        return None
    start = event_start(event, site_zone=site_zone)
    if start is None:
        return None
    return start - timedelta(hours=window_hours)


def defer_until(event: TripleSeatEvent, *, now: datetime, window_hours: float | None, site_zone: str) -> datetime | None:
    """The moment to come back to an event that starts too far out, or None when it may be ordered now."""
    opens = window_opens_at(event, window_hours=window_hours, site_zone=site_zone)
    return opens if opens is not None and opens > now else None


def deferred_note(opens_at: datetime, window_hours: float) -> str:
    """The timeline note of a deferred delivery; operators see it beside the state ``retrying``."""
    return f"{DEFERRED_NOTE_PREFIX}{opens_at.astimezone(timezone.utc).isoformat()} ({window_hours:g} h before the event starts)"
