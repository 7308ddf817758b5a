"""Domain errors, each carrying a message an operator can act on; no I/O, no framework types."""

from __future__ import annotations

import re
from datetime import datetime

import attrs


class TsrevelError(Exception):
    """Base of every error tsrevel raises on purpose."""


class PayloadError(TsrevelError):
    """A webhook or API payload that cannot be used; names the field path and the bad value."""

    def __init__(self, path: str, value: object, problem: str) -> None:
        self.path = path
        self.value = value
        self.problem = problem
        super().__init__(f"{path}: {_show(value)} {problem}")


class SignatureError(TsrevelError):
    """The webhook's X-Signature is missing, malformed or does not match the body."""


class ConfigError(TsrevelError):
    """Configuration (environment or mapping file) that stops start-up; says where and what."""


class StoreUnavailable(TsrevelError):
    """The store cannot take the call now (locked past its busy timeout, disk full or failing,
    read-only, unreachable): nothing was written, and trying again later may succeed.

    ``reason`` says why in words fit for /ready and the log: never a URL, password or row data.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the store is unavailable: {reason}")


class DatabaseMissing(StoreUnavailable):
    """The database does not exist, and this caller (the operator CLI) must not create a new, empty one."""


class MappingRejected(TsrevelError):
    """A mapping file that does not validate on reload: the mapping in force stays; says the file, line and problem."""

    def __init__(self, file: str, problem: str) -> None:
        self.file = file
        self.problem = problem
        found = re.search(r"\(at line (\d+)", problem)
        self.line = int(found.group(1)) if found else None  # TOML syntax errors have one; a bad key has a path instead
        super().__init__(f"mapping file not reloaded, the one in force stays: {problem}")


class NotFound(TsrevelError):
    """A delivery or other record that does not exist."""


class InvalidRequest(TsrevelError):
    """An operator request that cannot be carried out as asked (bad state, bad argument)."""


@attrs.frozen
class GatewayFailure:
    """Why a call to an outside system (Revel, SendGrid, TripleSeat) failed.

    kind is ``transient`` (try again later), ``permanent`` (the request itself is wrong) or
    ``credentials`` (401/403: operators must fix the keys); retry_after is the earliest moment
    the far side asked us to come back, when it said so.
    """

    kind: str
    message: str
    status: int | None = None
    retry_after: datetime | None = None
    outcome_unknown: bool = False


class GatewayError(TsrevelError):
    """An outside system failed; ``failure`` classifies it for the retry policy."""

    def __init__(self, failure: GatewayFailure) -> None:
        self.failure = failure
        super().__init__(failure.message)

    @classmethod
    def transient(
        cls,
        message: str,
        *,
        status: int | None = None,
        retry_after: datetime | None = None,
        outcome_unknown: bool = False,
    ) -> GatewayError:
        return cls(GatewayFailure("transient", message, status, retry_after, outcome_unknown))

    @classmethod
    def permanent(cls, message: str, *, status: int | None = None) -> GatewayError:
        return cls(GatewayFailure("permanent", message, status))

    @classmethod
    def credentials(cls, message: str, *, status: int | None = None) -> GatewayError:
        return cls(GatewayFailure("credentials", message, status))

    @property
    def is_transient(self) -> bool:
        return self.failure.kind == "transient"


def _show(value: object) -> str:
    try:
        text = repr(value)
    except RecursionError:  # a deeply nested JSON value, decoded higher up the stack than we are now
        return f"<deeply nested {type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."
