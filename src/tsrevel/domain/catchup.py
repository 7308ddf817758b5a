"""Catch-up sync: store the events TripleSeat has and no webhook brought, as deliveries on the webhook's path.

Two use cases over the Processor's ports and an EventFeed (the TripleSeat API): ``sync_event``
(an operator names one event) and ``catch_up`` (one pass of the poll over the events updated in a
look-back window). Both only *store* a delivery, built as a webhook body around the event object
the API answers; the worker then takes it exactly like a webhook (every flag, the ledger, change
detection). The store records each event version (id + updated_at) in the delivery's own
transaction, so a webhook and a poll of one version make one delivery whichever comes first.
Performs no I/O of its own.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from tsrevel.domain import deliveries as st
from tsrevel.domain.correlation import current_correlation_id
from tsrevel.domain.deliveries import NewDelivery, event_version
from tsrevel.domain.errors import GatewayError, InvalidRequest, NotFound, PayloadError
from tsrevel.domain.events import TripleSeatEvent
from tsrevel.domain.ids import delivery_key
from tsrevel.domain.ports import EventFeed
from tsrevel.domain.processing import Processor

log = logging.getLogger("tsrevel.catchup")

POLL_LEASE = "catchup.poll"  # the store's named lease: one poll at a time across replicas
LAST_POLL_VALUE = "catchup.last_poll"  # the store's named value: the last poll's PollReport, as JSON
POLL_LEASE_S = 600.0  # renewed after every event; covers a search whose pages wait out 429s; a dead poller frees it in 10 min
# What a synced or polled delivery says it is: the event as it stands now, like an update webhook.
SYNC_TRIGGER = "UPDATE_EVENT"
NOT_CONFIGURED = (
    "the TripleSeat API is not configured: set TRIPLESEAT_CLIENT_ID and TRIPLESEAT_CLIENT_SECRET "
    "(and TRIPLESEAT_API_URL if not https://api.tripleseat.com)"
)
_EVENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_ERRORS_KEPT = 20


@attrs.frozen(kw_only=True)
class SyncResult:
    """What a sync answers: the delivery that now carries the event."""

    delivery_id: int
    event_id: str
    status: str  # "accepted": stored and queued
    correlation_id: str
    event_version: str | None


@attrs.frozen(kw_only=True)
class PollReport:
    """One pass of the catch-up poll: what it saw, what it stored, what went wrong."""

    started_at: datetime
    finished_at: datetime
    since: date  # event_updated_start_date asked for (the site's local day)
    holder: str
    events_seen: int = 0  # events the search answered
    already_seen: int = 0  # of those, versions a webhook or an earlier poll had brought
    deliveries_created: int = 0
    delivery_ids: tuple[int, ...] = ()
    errors: tuple[str, ...] = ()

    def to_json(self) -> str:
        data = attrs.asdict(self)
        data.update(started_at=self.started_at.isoformat(), finished_at=self.finished_at.isoformat(), since=self.since.isoformat())
        data["delivery_ids"], data["errors"] = list(self.delivery_ids), list(self.errors)
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PollReport | None:
        """The report stored by a poll; None when the text is not one (an older or damaged value)."""
        try:
            data = json.loads(text)
            return cls(
                started_at=datetime.fromisoformat(data["started_at"]),
                finished_at=datetime.fromisoformat(data["finished_at"]),
                since=date.fromisoformat(data["since"]),
                holder=str(data["holder"]),
                events_seen=int(data["events_seen"]),
                already_seen=int(data["already_seen"]),
                deliveries_created=int(data["deliveries_created"]),
                delivery_ids=tuple(int(i) for i in data["delivery_ids"]),
                errors=tuple(str(e) for e in data["errors"]),
            )
        except (ValueError, TypeError, KeyError):
            return None


def webhook_body(event: Mapping[str, Any]) -> bytes:
    """The delivery body for an event object from the API: a webhook envelope around it, canonical JSON."""
    return _encode({"webhook_trigger_type": SYNC_TRIGGER, "event": event}).encode("utf-8")


def is_partial(event: Mapping[str, Any]) -> bool:
    """Whether a search result lacks what an order needs (its documents, with the line items and financials)."""
    return not isinstance(event.get("documents"), list)


def _feed(processor: Processor) -> EventFeed:
    if processor.feed is None:
        raise InvalidRequest(NOT_CONFIGURED)
    return processor.feed


async def sync_event(
    processor: Processor, event_id: str, *, actor: str, reason: str, correlation_id: str | None = None
) -> SyncResult:
    """Fetch one event with its financials and store it as a delivery (source sync, audited); answers the delivery.

    Raises InvalidRequest (API not configured, malformed id), NotFound ("TripleSeat has no event N"),
    GatewayError (TripleSeat failed) or PayloadError (TripleSeat answered an unusable event). A sync
    always stores a new delivery; the order ledger keeps it from ordering an event twice.
    """
    feed = _feed(processor)
    event_id = str(event_id).strip()
    if not _EVENT_ID.fullmatch(event_id):
        raise InvalidRequest(f"event id {event_id[:80]!r} is not a TripleSeat event id")
    cid = correlation_id or current_correlation_id.get() or f"sync-{event_id}"
    data = await _fetch(feed, event_id, cid)
    event = TripleSeatEvent.from_payload(data, path="event")
    now = processor.clock.now()
    version = event_version(event.id, event.updated_at)
    new = _new_delivery(data, event, st.SOURCE_SYNC, cid=cid, now=now, note=f"stored by sync: {actor}: {reason}")
    # Never a duplicate: the operator asked (the key is unique per sync; the ledger prevents a second order).
    delivery, _ = await processor.store.add_delivery(attrs.evolve(new, key=f"sync:{new.key}:{now.isoformat()}"))
    await processor.store.add_audit(
        actor=actor, action="sync", detail=f"event {event.id}: delivery {delivery.id} ({version or 'no updated_at'})", reason=reason, now=now
    )
    log.info("event %s synced by %s: delivery %s", event.id, actor, delivery.id, extra={"delivery_id": delivery.id, "event_id": event.id})
    if processor.on_accepted is not None:
        processor.on_accepted()
    return SyncResult(delivery_id=delivery.id, event_id=event.id, status="accepted", correlation_id=cid, event_version=version)


async def _fetch(feed: EventFeed, event_id: str, cid: str) -> Mapping[str, Any]:
    try:
        return await feed.fetch_event_data(event_id, correlation_id=cid)
    except GatewayError as exc:
        if exc.failure.status == 404:
            raise NotFound(f"TripleSeat has no event {event_id}") from None
        raise


def search_day(since: datetime, timezone_name: str) -> date:
    """The day to ask events/search.json for: since's date in the sites' time zone (UTC when it is unknown)."""
    try:
        return since.astimezone(ZoneInfo(timezone_name)).date()
    except (ZoneInfoNotFoundError, ValueError):
        return since.date()


async def catch_up(
    processor: Processor,
    *,
    since: datetime,
    holder: str,
    lease_s: float = POLL_LEASE_S,
    correlation_id: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
) -> PollReport | None:
    """One pass of the poll: every event updated since `since`, each unseen version stored as a catchup delivery.

    None when another replica holds the poll's lease. The report is recorded (fenced by the lease)
    for /admin/status, `tsrevel status` and /metrics. Raises InvalidRequest when the API is not configured.
    """
    feed = _feed(processor)
    store, clock = processor.store, processor.clock
    started = clock.now()
    token = await store.take_lease(POLL_LEASE, holder=holder, now=started, until=started + timedelta(seconds=lease_s))
    if token is None:
        return None
    cid = correlation_id or f"catchup-{int(started.timestamp())}"
    day = search_day(since, processor.mapping.timezone)
    seen = already = 0
    created: list[int] = []
    errors: list[str] = []
    try:
        try:
            results = await feed.search_events(updated_since=day, correlation_id=cid)
        except GatewayError as exc:
            errors.append(f"event search: {exc}")
            results = []
        for raw in results:
            seen += 1
            outcome = await _catch_up_one(processor, feed, raw, cid)
            if isinstance(outcome, int):
                created.append(outcome)
            elif outcome is None:
                already += 1
            else:
                errors.append(outcome)
            now = clock.now()
            if not await store.keep_lease(POLL_LEASE, token=token, now=now, until=now + timedelta(seconds=lease_s)):
                errors.append("the poll's lease was lost (another replica took over); stopped early")
                break
    finally:
        report = PollReport(
            started_at=started, finished_at=clock.now(), since=day, holder=holder, events_seen=seen, already_seen=already,
            deliveries_created=len(created), delivery_ids=tuple(created), errors=tuple(errors[:MAX_ERRORS_KEPT]),
        )
        if not await store.end_lease(POLL_LEASE, token=token, now=report.finished_at, value_name=LAST_POLL_VALUE, value=report.to_json()):
            log.warning("catch-up poll: lease lost before its report could be recorded")
    if created and processor.on_accepted is not None:
        processor.on_accepted()
    if actor is not None:
        detail = f"since {day.isoformat()}: {seen} event(s) seen, {len(created)} delivery(ies) created, {len(errors)} error(s)"
        await store.add_audit(actor=actor, action="catch-up", detail=detail, reason=reason or "catch-up pass", now=clock.now())
    log.log(
        logging.WARNING if errors else logging.INFO,
        "catch-up poll since %s: %d event(s) seen, %d already seen, %d delivery(ies) created, %d error(s)",
        day.isoformat(), seen, already, len(created), len(errors),
    )
    return report


async def _catch_up_one(processor: Processor, feed: EventFeed, raw: Mapping[str, Any], cid: str) -> int | str | None:
    """Store one search result unless its version was seen: the new delivery id, None (seen), or an error text."""
    store = processor.store
    try:
        event = TripleSeatEvent.from_payload(raw, path="event")
        version = event_version(event.id, event.updated_at)
        if version is not None and await store.version_seen(version):
            return None
        data = raw
        if is_partial(raw):
            data = await _fetch(feed, event.id, cid)
            event = TripleSeatEvent.from_payload(data, path="event")
            version = event_version(event.id, event.updated_at)
    except (GatewayError, NotFound, PayloadError) as exc:
        return f"event {_id_of(raw)}: {exc}"
    note = f"found by the catch-up poll ({version or 'no updated_at'}): no webhook brought this version"
    new = _new_delivery(data, event, st.SOURCE_CATCHUP, cid=f"{cid}-{event.id}", now=processor.clock.now(), note=note)
    delivery, was_created = await store.add_delivery(new)
    if not was_created:
        return None
    log.info("catch-up poll: event %s stored as delivery %s", event.id, delivery.id, extra={"delivery_id": delivery.id, "event_id": event.id})
    return delivery.id


async def last_poll(processor: Processor) -> PollReport | None:
    """The report of the last finished poll (any replica), or None."""
    raw = await processor.store.get_value(LAST_POLL_VALUE)
    return PollReport.from_json(raw) if raw else None


async def scheduled_poll(processor: Processor, *, holder: str, interval_s: float, lookback_h: float) -> PollReport | None:
    """The worker's poll: a pass over the last lookback_h hours, unless any replica finished one within interval_s."""
    now = processor.clock.now()
    last = await last_poll(processor)
    if last is not None and now - last.finished_at < timedelta(seconds=interval_s * 0.9):
        return None
    return await catch_up(processor, since=now - timedelta(hours=lookback_h), holder=holder)


def _new_delivery(
    data: Mapping[str, Any], event: TripleSeatEvent, source: str, *, cid: str, now: datetime, note: str
) -> NewDelivery:
    """The delivery for an event object from the API, keyed by its body's hash, with the event's version."""
    body = webhook_body(data)
    return NewDelivery(
        key=delivery_key(body),
        body=body,
        correlation_id=cid,
        received_at=now,
        trigger_type=SYNC_TRIGGER,
        event_id=event.id,
        state=st.QUEUED,
        source=source,
        event_version=event_version(event.id, event.updated_at),
        note=note,
    )


def _id_of(raw: Mapping[str, Any]) -> str:
    value = raw.get("id")
    return str(value)[:64] if value is not None else "(no id)"


def _encode(value: Any) -> str:
    """Canonical JSON (sorted keys); Decimals written verbatim as numbers, as TripleSeat sent them."""
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else json.dumps(str(value))
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    return json.dumps(value)
