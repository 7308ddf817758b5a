"""The correlation id of the work in progress, carried in a context variable; no I/O."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")

current_correlation_id: ContextVar[str | None] = ContextVar("tsrevel_correlation_id", default=None)
current_delivery_id: ContextVar[int | None] = ContextVar("tsrevel_delivery_id", default=None)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def accept_correlation_id(candidate: str | None) -> str:
    """Keep an incoming id matching ``[A-Za-z0-9._-]{1,64}``; replace anything else with a new one."""
    if candidate is not None and _PATTERN.fullmatch(candidate):
        return candidate
    return new_correlation_id()
