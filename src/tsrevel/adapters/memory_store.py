"""An in-memory Store with the same semantics as the SQLite one, for unit tests and the library's harness.

State lives in this process only and is lost when it ends; a lock makes each method atomic even when
the store is shared between threads (an app under a test client and a worker, say).
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import attrs

from tsrevel.adapters.store_common import utc, utc_or_none
from tsrevel.domain.deliveries import (
    DONE,
    IGNORED,
    LEDGER_CREATED,
    LEDGER_PENDING,
    PENDING_STATES,
    PROCESSING,
    QUEUED,
    Delivery,
    LedgerEntry,
    NewDelivery,
    TimelineEntry,
    duplicate_by_version,
)
from tsrevel.domain.orders import OrderRef
from tsrevel.domain.verdict import Verdict
from tsrevel.domain.ports import (
    BUSY,
    EMAIL_PENDING,
    EMAIL_SENDING,
    EMAIL_SENT,
    RESERVED,
    AuditEntry,
    EmailMessage,
    FlagOverrides,
    OutboxEmail,
    Reservation,
)
from tsrevel.domain.store_rules import (
    PASS_TO_ME,
    SETTLED_EMAIL_STATES,
    check_email_state,
    check_finish_state,
    check_new_state,
    check_replayable,
    claim_note,
    discardable,
    due,
    holds_lease,
    intake_note,
    leased,
    missing_delivery,
    prunable,
    replayable,
    reservation_outcome,
)

T = TypeVar("T")


@attrs.frozen
class _Outboxed:
    """An outbox email plus its lease expiry, which OutboxEmail does not expose."""

    email: OutboxEmail
    lease_until: datetime | None = None


def _atomic(method: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """The Store's async method, run whole under the store's lock on an open store."""

    @functools.wraps(method)
    async def atomically(self: MemoryStore, *args: Any, **kwargs: Any) -> T:
        with self._lock:
            self._check_open()
            return method(self, *args, **kwargs)

    return atomically


class MemoryStore:
    """Keeps deliveries, the order ledger, flags, the outbox and audit in dicts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._deliveries: dict[int, Delivery] = {}
        self._ids_by_key: dict[str, int] = {}
        self._orders: dict[str, LedgerEntry] = {}  # insertion order is "oldest first"
        self._flags = FlagOverrides()
        self._emails: dict[int, _Outboxed] = {}
        self._audit: list[AuditEntry] = []
        self._delivery_ids = itertools.count(1)
        self._email_ids = itertools.count(1)
        self._audit_ids = itertools.count(1)
        self._values: dict[str, str] = {}
        self._versions: dict[str, tuple[str, int, datetime]] = {}  # event version -> (source, first delivery id, seen at)
        self._leases: dict[str, tuple[int, str, datetime]] = {}  # name -> (token, holder, until)

    async def migrate(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True

    async def check_writable(self) -> None:
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the memory store is closed")

    @_atomic
    def add_delivery(self, new: NewDelivery) -> tuple[Delivery, bool]:
        check_new_state(new.state)
        received_at = utc(new.received_at)
        if new.event_version is not None:
            seen = self._versions.get(new.event_version)
            if seen is not None and duplicate_by_version(new.source, seen[0]) and seen[1] in self._deliveries:
                return self._deliveries[seen[1]], False
        existing = self._ids_by_key.get(new.key)
        if existing is not None:
            return self._deliveries[existing], False
        delivery = Delivery(
            id=next(self._delivery_ids), key=new.key, body=new.body, correlation_id=new.correlation_id,
            received_at=received_at, trigger_type=new.trigger_type, event_id=new.event_id, state=new.state,
            last_error=new.error, updated_at=received_at,
            timeline=(TimelineEntry(at=received_at, state=new.state, note=intake_note(new)),), source=new.source
        )
        self._deliveries[delivery.id] = delivery
        self._ids_by_key[new.key] = delivery.id
        if new.event_version is not None:
            self._versions.setdefault(new.event_version, (new.source, delivery.id, received_at))
        return delivery, True

    @_atomic
    def get_delivery(self, delivery_id: int) -> Delivery:
        return self._get(delivery_id)

    @_atomic
    def list_deliveries(
        self, *, state: str | None = None, limit: int = 50, event_id: str | None = None, before_id: int | None = None
    ) -> list[Delivery]:
        newest_first = sorted(self._deliveries.values(), key=lambda d: d.id, reverse=True)
        chosen = [
            d for d in newest_first
            if (state is None or d.state == state) and (event_id is None or d.event_id == event_id)
            and (before_id is None or d.id < before_id)
        ][: max(limit, 0)]
        return [attrs.evolve(d, timeline=()) for d in chosen]

    @_atomic
    def count_by_state(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for delivery in self._deliveries.values():
            counts[delivery.state] = counts.get(delivery.state, 0) + 1
        return counts

    @_atomic
    def oldest_pending(self) -> datetime | None:
        pending = [d.received_at for d in self._deliveries.values() if d.state in PENDING_STATES]
        return min(pending, default=None)

    @_atomic
    def claim_delivery(
        self, *, now: datetime, lease_until: datetime, delivery_id: int | None = None
    ) -> Delivery | None:
        now, lease_until = utc(now), utc(lease_until)
        for delivery in sorted(self._deliveries.values(), key=lambda d: d.id):
            if delivery_id is not None and delivery.id != delivery_id:
                continue
            if _claimable(delivery, now) and not self._event_leased_elsewhere(delivery, now):
                return self._update(
                    delivery, now, claim_note(delivery.state), state=PROCESSING,
                    lease_token=delivery.lease_token + 1, lease_until=lease_until
                )
        return None

    @_atomic
    def add_note(self, delivery_id: int, *, token: int, now: datetime, note: str) -> bool:
        now = utc(now)
        delivery = self._deliveries.get(delivery_id)
        if delivery is None or not _holds_live_lease(delivery, token, now):
            return False
        self._update(delivery, now, note, touch=False)
        return True

    @_atomic
    def finish(self, delivery_id: int, *, token: int, now: datetime, outcome: Verdict) -> bool:
        check_finish_state(outcome.state)
        now, next_attempt_at = utc(now), utc_or_none(outcome.next_attempt_at)
        delivery = self._deliveries.get(delivery_id)
        if delivery is None or not _holds_lease(delivery, token):
            return False
        changes: dict[str, object] = {"state": outcome.state, "next_attempt_at": next_attempt_at, "lease_until": None}
        optional = {"last_error": outcome.error, "attempts": outcome.attempts, "result": outcome.result,
                    "order_reference": outcome.order_reference}
        changes.update({name: value for name, value in optional.items() if value is not None})
        self._update(delivery, now, outcome.note, **changes)
        self._outbox(outcome.emails, now)
        release_event_id = outcome.release_event_id
        entry = self._orders.get(release_event_id) if release_event_id is not None else None
        if entry is not None and entry.state == LEDGER_PENDING and entry.delivery_id == delivery_id:
            del self._orders[entry.event_id]
        return True

    @_atomic
    def reserve_order(
        self, *, event_id: str, reference: str, establishment_id: int, delivery_id: int, token: int, now: datetime
    ) -> Reservation:
        now = utc(now)
        delivery = self._deliveries.get(delivery_id)
        if delivery is None or not _holds_lease(delivery, token):
            return Reservation(outcome=BUSY)
        entry = self._orders.get(event_id)
        if entry is None:
            entry = LedgerEntry(
                event_id=event_id, reference=reference, establishment_id=establishment_id, delivery_id=delivery_id,
                state=LEDGER_PENDING, created_at=now, updated_at=now
            )
            self._orders[event_id] = entry
            return Reservation(outcome=RESERVED, entry=entry)
        owner = self._deliveries.get(entry.delivery_id)
        outcome = reservation_outcome(
            entry, delivery_id=delivery_id, owner_leased=owner is not None and _leased(owner, now)
        )
        if outcome != PASS_TO_ME:
            return Reservation(outcome=outcome, entry=entry)
        entry = attrs.evolve(entry, delivery_id=delivery_id, updated_at=now)
        self._orders[event_id] = entry
        return Reservation(outcome=RESERVED, entry=entry)

    @_atomic
    def complete_order(
        self, *, event_id: str, delivery_id: int, token: int, ref: OrderRef, snapshot: str, now: datetime, note: str,
        emails: Sequence[EmailMessage] = ()
    ) -> bool:
        now = utc(now)
        delivery = self._deliveries.get(delivery_id)
        entry = self._orders.get(event_id)
        if delivery is None or not _holds_lease(delivery, token):
            return False
        if entry is None or entry.delivery_id != delivery_id:
            return False
        self._orders[event_id] = attrs.evolve(
            entry, state=LEDGER_CREATED, revel_order_id=ref.order_id, revel_uri=ref.resource_uri, snapshot=snapshot,
            updated_at=now
        )
        self._update(delivery, now, note, state=DONE, order_reference=entry.reference, lease_until=None)
        self._outbox(emails, now)
        return True

    @_atomic
    def get_order(self, event_id: str) -> LedgerEntry | None:
        return self._orders.get(event_id)

    @_atomic
    def list_orders(self, *, limit: int = 100) -> list[LedgerEntry]:
        return list(reversed(self._orders.values()))[: max(limit, 0)]

    @_atomic
    def forget_order(self, event_id: str) -> bool:
        return self._orders.pop(event_id, None) is not None

    @_atomic
    def replay_delivery(self, delivery_id: int, *, now: datetime, note: str) -> bool:
        now = utc(now)
        delivery = self._get(delivery_id)
        if not replayable(delivery.state):
            return False
        self._requeue(delivery, now, note)
        return True

    @_atomic
    def replay_state(self, state: str, *, now: datetime, note: str) -> int:
        check_replayable(state)
        now = utc(now)
        chosen = [d for d in sorted(self._deliveries.values(), key=lambda d: d.id) if d.state == state]
        for delivery in chosen:
            self._requeue(delivery, now, note)
        return len(chosen)

    @_atomic
    def discard_delivery(self, delivery_id: int, *, now: datetime, note: str) -> bool:
        now = utc(now)
        delivery = self._get(delivery_id)
        if not discardable(delivery.state):
            return False
        self._update(delivery, now, note, state=IGNORED, next_attempt_at=None, lease_until=None)
        return True

    @_atomic
    def get_flags(self) -> FlagOverrides:
        return self._flags

    @_atomic
    def set_flags(
        self, *, enable_connector: bool | None, dry_run: bool | None, actor: str, reason: str, now: datetime
    ) -> FlagOverrides:
        now = utc(now)
        old = self._flags
        self._flags = FlagOverrides(
            enable_connector=old.enable_connector if enable_connector is None else enable_connector,
            dry_run=old.dry_run if dry_run is None else dry_run,
            actor=actor,
            reason=reason,
            updated_at=now,
        )
        return self._flags

    @_atomic
    def clear_flags(self, *, actor: str, reason: str, now: datetime) -> None:
        now = utc(now)
        self._flags = FlagOverrides(actor=actor, reason=reason, updated_at=now)

    @_atomic
    def claim_email(self, *, now: datetime, lease_until: datetime) -> OutboxEmail | None:
        now, lease_until = utc(now), utc(lease_until)
        for email_id in sorted(self._emails):
            row = self._emails[email_id]
            if _email_claimable(row, now):
                email = attrs.evolve(row.email, state=EMAIL_SENDING, lease_token=row.email.lease_token + 1)
                self._emails[email_id] = _Outboxed(email, lease_until)
                return email
        return None

    @_atomic
    def finish_email(
        self, email_id: int, *, token: int, state: str, now: datetime, error: str | None = None,
        attempts: int | None = None, next_attempt_at: datetime | None = None
    ) -> bool:
        check_email_state(state)
        now, next_attempt_at = utc(now), utc_or_none(next_attempt_at)
        row = self._emails.get(email_id)
        if row is None or row.email.lease_token != token or row.email.state != EMAIL_SENDING:
            return False
        email = attrs.evolve(
            row.email, state=state, next_attempt_at=next_attempt_at,
            last_error=row.email.last_error if error is None else error,
            attempts=row.email.attempts if attempts is None else attempts,
            sent_at=now if state == EMAIL_SENT else row.email.sent_at
        )
        self._emails[email_id] = _Outboxed(email)
        return True

    @_atomic
    def list_emails(self, *, delivery_id: int | None = None, limit: int = 100) -> list[OutboxEmail]:
        emails = [self._emails[i].email for i in sorted(self._emails)]
        chosen = [e for e in emails if delivery_id is None or e.message.delivery_id == delivery_id]
        return chosen[: max(limit, 0)]

    @_atomic
    def add_audit(self, *, actor: str, action: str, detail: str, reason: str, now: datetime) -> None:
        now = utc(now)
        self._audit.append(
            AuditEntry(id=next(self._audit_ids), at=now, actor=actor, action=action, detail=detail, reason=reason)
        )

    @_atomic
    def list_audit(self, *, limit: int = 100) -> list[AuditEntry]:
        return list(reversed(self._audit))[: max(limit, 0)]

    @_atomic
    def get_value(self, name: str) -> str | None:
        return self._values.get(name)

    @_atomic
    def put_value(self, name: str, value: str, *, now: datetime) -> None:
        self._values[name] = value

    @_atomic
    def prune_history(self, *, older_than: datetime) -> int:
        older_than = utc(older_than)
        self._versions = {v: seen for v, seen in self._versions.items() if seen[2] >= older_than}
        # As in the SQL stores: the delivery that owns a ledger row, or has an email still to
        # send, is kept.
        owners = {entry.delivery_id for entry in self._orders.values()}
        unsettled = {
            e.email.message.delivery_id for e in self._emails.values() if e.email.state not in SETTLED_EMAIL_STATES
        }
        doomed = [
            d.id
            for d in self._deliveries.values()
            if prunable(d.state, d.updated_at, older_than, owns_order=d.id in owners, has_unsettled_email=d.id in unsettled)
        ]
        for delivery_id in doomed:
            delivery = self._deliveries.pop(delivery_id)
            self._ids_by_key.pop(delivery.key, None)
        gone = set(doomed)
        for email_id in [
            i for i, e in self._emails.items()
            if e.email.message.delivery_id in gone and e.email.state in SETTLED_EMAIL_STATES
        ]:
            del self._emails[email_id]
        return len(doomed)

    @_atomic
    def version_seen(self, event_version: str) -> bool:
        return event_version in self._versions

    @_atomic
    def take_lease(self, name: str, *, holder: str, now: datetime, until: datetime) -> int | None:
        now, until = utc(now), utc(until)
        held = self._leases.get(name)
        if held is not None and held[2] > now:
            return None
        token = (held[0] if held else 0) + 1
        self._leases[name] = (token, holder, until)
        return token

    @_atomic
    def keep_lease(self, name: str, *, token: int, now: datetime, until: datetime) -> bool:
        now, until = utc(now), utc(until)
        held = self._leases.get(name)
        if held is None or held[0] != token or held[2] <= now:
            return False
        self._leases[name] = (token, held[1], until)
        return True

    @_atomic
    def end_lease(self, name: str, *, token: int, now: datetime, value_name: str, value: str) -> bool:
        now = utc(now)
        held = self._leases.get(name)
        if held is None or held[0] != token:
            return False
        self._leases[name] = (token, held[1], now)
        self._values[value_name] = value
        return True

    def _get(self, delivery_id: int) -> Delivery:
        delivery = self._deliveries.get(delivery_id)
        if delivery is None:
            raise missing_delivery(delivery_id)
        return delivery

    def _event_leased_elsewhere(self, delivery: Delivery, now: datetime) -> bool:
        if delivery.event_id is None:
            return False
        return any(
            other.id != delivery.id and other.event_id == delivery.event_id and _leased(other, now)
            for other in self._deliveries.values()
        )

    def _update(
        self, delivery: Delivery, now: datetime, note: str, *, touch: bool = True, **changes: object
    ) -> Delivery:
        """Apply changes and append a timeline entry in the resulting state."""
        if touch:
            changes["updated_at"] = now
        changed = attrs.evolve(delivery, **changes)
        entry = TimelineEntry(at=now, state=changed.state, note=note)
        changed = attrs.evolve(changed, timeline=(*changed.timeline, entry))
        self._deliveries[delivery.id] = changed
        return changed

    def _requeue(self, delivery: Delivery, now: datetime, note: str) -> None:
        self._update(delivery, now, note, state=QUEUED, attempts=0, next_attempt_at=None, lease_until=None)

    def _outbox(self, messages: Iterable[EmailMessage], now: datetime) -> None:
        for message in messages:
            email_id = next(self._email_ids)
            self._emails[email_id] = _Outboxed(
                OutboxEmail(id=email_id, message=message, state=EMAIL_PENDING, created_at=now)
            )


def _leased(delivery: Delivery, now: datetime) -> bool:
    return leased(delivery.state, delivery.lease_until, now)


def _holds_lease(delivery: Delivery, token: int) -> bool:
    return holds_lease(delivery.state, delivery.lease_token, token)


def _holds_live_lease(delivery: Delivery, token: int, now: datetime) -> bool:
    return _holds_lease(delivery, token) and _leased(delivery, now)


def _claimable(delivery: Delivery, now: datetime) -> bool:
    return due(delivery.state, delivery.next_attempt_at, delivery.lease_until, now)


def _email_claimable(row: _Outboxed, now: datetime) -> bool:
    return due(row.email.state, row.email.next_attempt_at, row.lease_until, now)
