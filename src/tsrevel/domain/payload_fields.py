"""The field parsers of TripleSeat's JSON (objects, arrays, text, ids, times): each takes a value and its field path.

Each raises PayloadError naming the field path on bad input; the numbers are in money_parsing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from tsrevel.domain.errors import PayloadError

LOCAL_FORMAT = "%m/%d/%Y %I:%M %p"
# LOCAL_FORMAT as the regex strptime builds for it: strptime costs tens of microseconds a call,
# twice per event at intake and again in the worker (docs/performance.md, P1).
_LOCAL_TIME = re.compile(r"(1[0-2]|0[1-9]|[1-9])/(3[01]|[12]\d|0[1-9]|[1-9])/(\d\d\d\d) (1[0-2]|0[1-9]|[1-9]):([0-5]\d|\d) (AM|PM)")
# Years far enough from datetime's limits that shifting by any UTC offset cannot overflow.
_YEARS = range(2, 9999)
# Numeric ids are bounded like string ids (64 characters): int() of 1e999999 would exhaust memory.
_MAX_NUMERIC_ID = Decimal("1e64")


def as_object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PayloadError(path, value, "is not a JSON object")
    return value


def as_array(value: object, path: str) -> Sequence[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise PayloadError(path, value, "is not a JSON array")
    return value


def as_text(value: object, path: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return str(value)
    raise PayloadError(path, value, "is not text")


def as_id(value: object, path: str) -> str | None:
    """Normalise an id sent as an integer or a string (8803 and "8803" are the same id)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise PayloadError(path, value, "is not an id")
    if isinstance(value, int):
        if value.bit_length() > 212 and abs(value) >= 10**64:  # like string ids: at most 64 digits
            raise PayloadError(path, value, "is not an id (more than 64 digits)")
        return str(value)
    if isinstance(value, (float, Decimal)):
        number = Decimal(repr(value)) if isinstance(value, float) else value
        # NaN and infinities (JSON's NaN/Infinity) and huge exponents would break or stall int().
        if number.is_finite() and number.copy_abs() < _MAX_NUMERIC_ID and number == number.to_integral_value():
            return str(int(number))
        raise PayloadError(path, value, "is not an id")
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 64 or any(ch.isspace() for ch in text):
            raise PayloadError(path, value, "is not an id")
        if text.isascii() and text.isdigit():  # "²".isdigit() is True, but int("²") fails
            return str(int(text))
        return text
    raise PayloadError(path, value, "is not an id")


def event_times(obj: Mapping[str, Any], field: str, path: str) -> tuple[datetime | None, datetime | None]:
    """The site-local wall-clock time and the UTC instant of ``event_start``/``event_end``."""
    local = as_local_time(obj.get(field), f"{path}.{field}")
    utc = _utc_time(obj.get(f"{field}_utc"), f"{path}.{field}_utc")
    iso = _iso_time(obj.get(f"{field}_iso8601"), f"{path}.{field}_iso8601")
    if iso is not None:
        if local is None:
            local = iso.replace(tzinfo=None)
        if utc is None:
            utc = iso.astimezone(timezone.utc)
    return local, utc


def as_local_time(value: object, path: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError(path, value, "is not a time like '12/28/2025 6:00 PM'")
    text = " ".join(value.split()).upper()
    fast = _LOCAL_TIME.fullmatch(text)
    if fast is not None:
        month, day, year, hour, minute, half = fast.groups()
        try:
            parsed = datetime(int(year), int(month), int(day), int(hour) % 12 + (12 if half == "PM" else 0), int(minute))
        except ValueError:
            pass  # such as 02/30: strptime below refuses it the same way
        else:
            return _in_range(parsed, value, path)
    for fmt in (LOCAL_FORMAT, "%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M"):
        try:
            parsed = datetime.strptime(text, fmt)
        except ValueError:
            continue
        return _in_range(parsed, value, path)
    raise PayloadError(path, value, "is not a time like '12/28/2025 6:00 PM'")


def _utc_time(value: object, path: str) -> datetime | None:
    if value is None or value == "":
        return None
    parsed = _iso_time(value, path)
    if parsed is None:
        return None
    return parsed.astimezone(timezone.utc)


def _iso_time(value: object, path: str) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PayloadError(path, value, "is not an ISO 8601 time")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise PayloadError(path, value, "is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise PayloadError(path, value, "has no UTC offset")
    return _in_range(parsed, value, path)


def _in_range(parsed: datetime, value: object, path: str) -> datetime:
    if parsed.year not in _YEARS:
        raise PayloadError(path, value, "is out of range")
    return parsed


def as_moment(value: object) -> datetime | None:
    """A payment time in any shape TripleSeat may use (ISO with or without offset, or its local format); None if unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        return as_local_time(text, "")
    except PayloadError:
        pass
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None  # evidence only: the payment still counts, without a date
    return parsed if parsed.year in _YEARS else None

