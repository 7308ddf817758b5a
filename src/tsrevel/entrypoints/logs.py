"""Logging set-up: structured JSON lines carrying the correlation id, with secrets scrubbed."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import datetime, timezone

from tsrevel.domain.correlation import current_correlation_id, current_delivery_id
from tsrevel.entrypoints.settings import redact_url_password

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
REDACTED = "[REDACTED]"

# Libraries held at WARNING: the sendgrid and HTTP stacks would print credentials at DEBUG (the
# Authorization header); psycopg.pool says three INFO lines
# per store call (connection requested, given, returned): 2,451 of one replica's 2,821 lines in a 14 s bench.
_NEVER_DEBUG = ("python_http_client", "sendgrid", "httpcore", "httpx", "hpack", "urllib3", "psycopg.pool")


class ContextFilter(logging.Filter):
    """Puts the current correlation and delivery ids on every record that lacks them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = current_correlation_id.get()
        if getattr(record, "delivery_id", None) is None:
            record.delivery_id = current_delivery_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation id and any extras."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and value is not None and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool)) else str(value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(entry, ensure_ascii=False), self._secrets)


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, with the correlation id and secrets scrubbed."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s")
        self._secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record), self._secrets)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of a secret value; the last line of defence, not the first.

    A lone surrogate (from a message or an exception) is escaped too: the line must encode as UTF-8.
    """
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    text = redact_url_password(text)  # a user:password@ in any URL (an error message, a driver's DSN)
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def configure_logging(*, level: str, fmt: str, secrets: Iterable[str], stream=None) -> None:  # noqa: ANN001 - any text stream
    """Install one handler on the root logger; safe to call again (it replaces its own handler)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_tsrevel", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._tsrevel = True  # type: ignore[attr-defined]
    secret_values = [s for s in secrets if s]
    handler.setFormatter(JsonFormatter(secret_values) if fmt == "json" else TextFormatter(secret_values))
    handler.addFilter(ContextFilter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in _NEVER_DEBUG:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    # uvicorn's access log duplicates what our middleware says; keep its errors only.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
