"""What every fake is built from: a script of faults, a clock that moves only when told, and forwarding; no I/O.

Each in-memory fake (``adapters.fakes``) holds a ``CallFaults`` (``FaultScript``, clock, delay)
and each loopback server (``tsrevel.testing.servers``) a core with a ``FaultScript``; both offer
their part's members as their own through ``Forwarded``: composition, no base class, so the
queue's rule (the head applies or waits) is written once.
"""

from __future__ import annotations

import asyncio
import operator
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, Protocol, TypeVar

import attrs

from tsrevel.adapters.system import SystemClock
from tsrevel.domain.errors import GatewayError
from tsrevel.domain.ports import Clock

TRANSIENT = "transient"
PERMANENT = "permanent"
RATE_LIMITED = "rate_limited"
CREDENTIALS = "credentials"
TIMEOUT = "timeout"
CREATE_THEN_TIMEOUT = "create_then_timeout"

# Calls that change the far side; only they can "succeed, then time out".
_SIDE_EFFECTS = frozenset({"create", "send"})


@attrs.frozen(kw_only=True)
class Fault:
    """One scripted failure, used by the next ``times`` calls it applies to."""

    kind: str
    times: int = 1
    on: str | None = None
    status: int | None = None
    retry_after_s: float | None = None
    message: str = ""

    @classmethod
    def transient(cls, n: int = 1, *, status: int = 503, on: str | None = None) -> Fault:
        """An HTTP 5xx; on a create, Revel may or may not have kept the order (nothing is stored)."""
        return cls(kind=TRANSIENT, times=n, on=on, status=status)

    @classmethod
    def timeout(cls, n: int = 1, *, on: str | None = None) -> Fault:
        """No answer in time; nothing is stored."""
        return cls(kind=TIMEOUT, times=n, on=on)

    @classmethod
    def permanent(cls, *, status: int = 422, message: str = "invalid order", on: str | None = None) -> Fault:
        """The request itself is refused (400/404/422)."""
        return cls(kind=PERMANENT, on=on, status=status, message=message)

    @classmethod
    def rate_limited(cls, retry_after_s: float, n: int = 1, *, on: str | None = None) -> Fault:
        """HTTP 429 asking to come back after retry_after_s seconds of the fake's clock."""
        return cls(kind=RATE_LIMITED, times=n, on=on, status=429, retry_after_s=retry_after_s)

    @classmethod
    def credentials(cls, *, status: int = 401, on: str | None = None) -> Fault:
        """The keys are refused (401/403)."""
        return cls(kind=CREDENTIALS, on=on, status=status)

    @classmethod
    def create_then_timeout(cls) -> Fault:
        """The far side does the work (stores the order, sends the mail), then the caller times out."""
        return cls(kind=CREATE_THEN_TIMEOUT)

    def applies_to(self, operation: str) -> bool:
        if self.on is not None and self.on != operation:
            return False
        return self.kind != CREATE_THEN_TIMEOUT or operation in _SIDE_EFFECTS

    def error(self, what: str, *, operation: str, now: datetime) -> GatewayError:
        """The GatewayError the real adapter would raise for this fault."""
        # The real adapters flag every transient create failure after sending as outcome unknown.
        unknown = operation == "create"
        if self.kind == TRANSIENT:
            return GatewayError.transient(f"{what}: HTTP {self.status} (scripted)", status=self.status, outcome_unknown=unknown)
        if self.kind in (TIMEOUT, CREATE_THEN_TIMEOUT):
            return GatewayError.transient(f"{what}: timed out (scripted)", outcome_unknown=unknown)
        if self.kind == RATE_LIMITED:
            retry_after = now + timedelta(seconds=self.retry_after_s or 0)
            return GatewayError.transient(f"{what}: rate limited (scripted)", status=429, retry_after=retry_after)
        if self.kind == CREDENTIALS:
            return GatewayError.credentials(f"{what}: HTTP {self.status}: key refused (scripted)", status=self.status)
        return GatewayError.permanent(f"{what}: HTTP {self.status}: {self.message} (scripted)", status=self.status)


class Scriptable(Protocol):
    """What a FaultScript can queue: a fault used ``times`` times by the calls it applies to."""

    @property
    def times(self) -> int: ...

    def applies_to(self, call: str, /) -> bool: ...


F = TypeVar("F", bound=Scriptable)


@attrs.define
class _Queued(Generic[F]):
    fault: F
    left: int


class FaultScript(Generic[F]):
    """A queue of faults; each call takes the head if it applies to the call, otherwise the head waits.

    A fake's call names its operation (``"create"``), a loopback server's its request path.
    """

    def __init__(self) -> None:
        self._queue: deque[_Queued[F]] = deque()

    def add(self, *faults: F) -> None:
        self._queue.extend(_Queued(fault, fault.times) for fault in faults if fault.times > 0)

    def take(self, call: str) -> F | None:
        """The fault for this call, or None when the head of the queue does not apply to it."""
        if not self._queue or not self._queue[0].fault.applies_to(call):
            return None
        head = self._queue[0]
        head.left -= 1
        if head.left == 0:
            self._queue.popleft()
        return head.fault

    def clear(self) -> None:
        self._queue.clear()

    @property
    def pending(self) -> list[F]:
        """Faults not used up yet, in order (one entry per scripted fault)."""
        return [queued.fault for queued in self._queue]


class CallFaults:
    """The part every in-memory fake holds (composition): its fault script, its clock and the delay of each call."""

    def __init__(self, *, clock: Clock | None = None, delay_s: float = 0.0) -> None:
        self.script: FaultScript[Fault] = FaultScript()
        self.clock: Clock = clock or SystemClock()
        self.delay_s = delay_s

    async def next(self, operation: str) -> Fault | None:
        """Wait the fake's delay, then the fault this call gets (None: it runs normally)."""
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        return self.script.take(operation)

    def error(self, fault: Fault, what: str, *, operation: str) -> GatewayError:
        """The error the real adapter would raise, timed by the fake's clock."""
        return fault.error(what, operation=operation, now=self.clock.now())

    def clear(self) -> None:
        """Forget every fault still scripted."""
        self.script.clear()


class Forwarded:
    """A member of one of the owner's parts, offered as the owner's own: ``delay_s = Forwarded("_faults", "delay_s")``."""

    def __init__(self, part: str, member: str) -> None:
        self._part = operator.attrgetter(part)  # a dotted path reaches a part's part: "_faults.script"
        self._member = member

    def __get__(self, owner: object | None, owner_type: type | None = None) -> Any:
        return self if owner is None else getattr(self._part(owner), self._member)

    def __set__(self, owner: object, value: Any) -> None:
        setattr(self._part(owner), self._member, value)  # fake.delay_s = 0.5 reaches the part


def forwarded(part: str, *members: str) -> tuple[Forwarded, ...]:
    """Several members of one part: ``url, requests = forwarded("_http", "url", "requests")``."""
    return tuple(Forwarded(part, member) for member in members)


class ManualClock:
    """A clock that stands still until told to move; always timezone-aware UTC."""

    def __init__(self, start: datetime = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start.astimezone(timezone.utc)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> datetime:
        """Move forward by seconds and return the new time."""
        self._now += timedelta(seconds=seconds)
        return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("ManualClock needs timezone-aware times")
        self._now = moment.astimezone(timezone.utc)


# A fixed clock is a manual clock nobody advances; the second name reads better in some tests.
FixedClock = ManualClock
