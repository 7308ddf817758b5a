"""In-memory, recording fakes of Revel, the mailer, TripleSeat and the clock, with scriptable faults; performs no I/O.

They are for unit tests and for rehearsing incidents (a Revel outage, a timeout after a create,
revoked keys) without touching a real system. Assert on their state (``.created``, ``.sent``),
not on call order, unless the order is the point.

Faults: ``fake.script(Fault.transient(n=2), Fault.create_then_timeout())`` queues faults. Every
call of the fake (``find``, ``create``, ``send``, ``fetch``) looks at the *head* of the queue
only: if the head applies to the call it is used (one of its ``n``), otherwise the call runs
normally and the head waits. A fault applies to every kind of call unless limited with
``on="find"`` (or ``"create"``, ``"send"``, ``"fetch"``); ``create_then_timeout`` applies only
to calls with a side effect (``create``, ``send``), so a lookup just before the create passes.

Here live the mailer and TripleSeat fakes; FakeRevel (with Revel's arithmetic, ``revel_shows``)
is in ``adapters.fake_revel``, the fault script and the clock in ``adapters.fake_parts``,
FlakyStore in ``adapters.flaky_store``; every one of them is importable from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, TypeVar

from tsrevel.adapters.fake_parts import (
    CREATE_THEN_TIMEOUT,
    CREDENTIALS,
    PERMANENT,
    RATE_LIMITED,
    TIMEOUT,
    TRANSIENT,
    CallFaults,
    Fault,
    FaultScript,
    FixedClock,
    Forwarded,
    ManualClock,
    forwarded,
)
from tsrevel.adapters.fake_revel import FakeRevel, RefusedOrder, RevelShown, revel_shows
from tsrevel.adapters.flaky_store import FlakyStore
from tsrevel.domain.errors import GatewayError
from tsrevel.domain.events import TripleSeatEvent
from tsrevel.domain.ports import Clock, EmailMessage

__all__ = [
    "CREATE_THEN_TIMEOUT",
    "CREDENTIALS",
    "PERMANENT",
    "RATE_LIMITED",
    "TIMEOUT",
    "TRANSIENT",
    "CallFaults",
    "Fault",
    "FaultScript",
    "FakeMailer",
    "FakeRevel",
    "FakeTripleSeat",
    "FixedClock",
    "FlakyStore",
    "ManualClock",
    "RefusedOrder",
    "RevelShown",
    "revel_shows",
]


class FakeMailer:
    """Mailer in memory: ``sent`` holds every message delivered, ``calls`` every attempt as ``"send <outbox id>"``."""

    def __init__(self, *, clock: Clock | None = None, delay_s: float = 0.0) -> None:
        self.sent: list[EmailMessage] = []
        self.outbox_ids: list[int] = []
        self.calls: list[str] = []
        self._faults = CallFaults(clock=clock, delay_s=delay_s)

    # The part every fake holds (composition): the fault script and the delay of each call.
    script, pending_faults = forwarded("_faults.script", "add", "pending")
    delay_s = Forwarded("_faults", "delay_s")

    async def send(self, message: EmailMessage, *, outbox_id: int) -> None:
        self.calls.append(f"send {outbox_id}")
        fault = await self._faults.next("send")
        if fault is None or fault.kind == CREATE_THEN_TIMEOUT:
            self.sent.append(message)
            self.outbox_ids.append(outbox_id)
        if fault is not None:
            raise self._faults.error(fault, f"FakeMailer send of {message.kind}", operation="send")


class FakeTripleSeat:
    """EventSource and EventFeed in memory: ``events`` by id, and raw ``payloads`` by id for the feed.

    ``fetched`` records every requested id (faulted ones included), ``searched`` every search's
    day. The search answers each payload updated on or after the day (by its ``updated_at``,
    MM/DD/YYYY first) without ``documents`` and ``financials``, as TripleSeat's search does.
    """

    def __init__(self, *events: TripleSeatEvent, clock: Clock | None = None, delay_s: float = 0.0) -> None:
        self.events: dict[str, TripleSeatEvent] = {event.id: event for event in events}
        self.payloads: dict[str, Mapping[str, Any]] = {}
        self.searched: list[date] = []
        self.fetched: list[str] = []
        self._faults = CallFaults(clock=clock, delay_s=delay_s)

    # The part every fake holds (composition): the fault script and the delay of each call.
    script, pending_faults = forwarded("_faults.script", "add", "pending")
    delay_s = Forwarded("_faults", "delay_s")

    def add(self, event: TripleSeatEvent) -> None:
        self.events[event.id] = event

    def add_payload(self, payload: Mapping[str, Any]) -> None:
        """Serve this raw event object (fetch and search); it replaces an earlier one with its id."""
        event = TripleSeatEvent.from_payload(payload)
        self.payloads[event.id] = payload
        self.events[event.id] = event

    async def fetch_event(self, event_id: str, *, correlation_id: str) -> TripleSeatEvent:
        await self._call("fetch", f"fetch of event {event_id}", event_id)
        return _found(self.events, event_id)

    async def fetch_event_data(self, event_id: str, *, correlation_id: str) -> Mapping[str, Any]:
        await self._call("fetch", f"fetch of event {event_id}", event_id)
        return _found(self.payloads, event_id)

    async def search_events(self, *, updated_since: date, correlation_id: str) -> list[Mapping[str, Any]]:
        self.searched.append(updated_since)
        await self._call("search", "event search", None)
        return [
            {k: v for k, v in payload.items() if k not in ("documents", "financials")}
            for payload in self.payloads.values()
            if (_us_day(payload.get("updated_at")) or updated_since) >= updated_since
        ]

    async def _call(self, operation: str, what: str, event_id: str | None) -> None:
        if event_id is not None:
            self.fetched.append(event_id)
        fault = await self._faults.next(operation)
        if fault is not None:
            raise self._faults.error(fault, f"FakeTripleSeat {what}", operation=operation)


_Found = TypeVar("_Found")


def _found(served: Mapping[str, _Found], event_id: str) -> _Found:
    """What the fake serves for the id, else TripleSeat's 404."""
    try:
        return served[event_id]
    except KeyError:
        raise GatewayError.permanent(f"FakeTripleSeat fetch of event {event_id}: HTTP 404: no such event", status=404) from None


def _us_day(value: object) -> date | None:
    try:
        return datetime.strptime(str(value or "")[:10], "%m/%d/%Y").date()
    except ValueError:
        return None

