"""The Protocols adapters satisfy (Revel, mail, TripleSeat API, store, clock), and the records they pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Protocol

import attrs

from tsrevel.domain.deliveries import Delivery, LedgerEntry, NewDelivery
from tsrevel.domain.events import TripleSeatEvent
from tsrevel.domain.mapping import MappingConfig
from tsrevel.domain.orders import OrderRef, RevelOrder
from tsrevel.domain.verdict import Verdict

EMAIL_PENDING = "pending"
EMAIL_RETRYING = "retrying"
EMAIL_SENDING = "sending"
EMAIL_SENT = "sent"
EMAIL_UNSENT = "unsent"  # no SendGrid key configured: recorded only
EMAIL_FAILED = "failed"  # out of attempts or refused for good

RESERVED = "reserved"
BUSY = "busy"
EXISTING = "existing"


@attrs.frozen(kw_only=True)
class EmailMessage:
    """A notification to the operations team, written by the use cases."""

    kind: str  # order_created, dry_run, failure, needs_attention, void_request
    subject: str
    text: str
    delivery_id: int | None
    correlation_id: str
    to: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class OutboxEmail:
    """An email waiting in (or sent from) the store's outbox."""

    id: int
    message: EmailMessage
    state: str
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None
    created_at: datetime | None = None
    sent_at: datetime | None = None
    lease_token: int = 0


@attrs.frozen(kw_only=True)
class FlagOverrides:
    """Runtime overrides of the boot-time flags; None means 'use the environment'."""

    enable_connector: bool | None = None
    dry_run: bool | None = None
    actor: str | None = None
    reason: str | None = None
    updated_at: datetime | None = None


@attrs.frozen(kw_only=True)
class Reservation:
    """The answer to 'may this delivery make the event's order?'."""

    outcome: str  # RESERVED, BUSY (another delivery is on it) or EXISTING (the order exists)
    entry: LedgerEntry | None = None


@attrs.frozen(kw_only=True)
class AuditEntry:
    """One operator action: who, what, when and why."""

    id: int
    at: datetime
    actor: str
    action: str
    detail: str
    reason: str


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class OrderGateway(Protocol):
    """Revel, seen as a place to find and create orders."""

    async def find_order(self, establishment_id: int, reference: str, *, correlation_id: str) -> OrderRef | None:
        """The order whose local_id is reference, or None; raises GatewayError."""
        ...

    async def create_order(self, order: RevelOrder, *, correlation_id: str) -> OrderRef:
        """Create the order atomically; raises GatewayError."""
        ...


class Mailer(Protocol):
    """Somewhere to send notifications."""

    async def send(self, message: EmailMessage, *, outbox_id: int) -> None:
        """Send or raise GatewayError; outbox_id lets the far side correlate."""
        ...


class EventSource(Protocol):
    """The TripleSeat API, for the full event with its financials."""

    async def fetch_event(self, event_id: str, *, correlation_id: str) -> TripleSeatEvent:
        """Fetch an event with line items; raises GatewayError or PayloadError."""
        ...


class EventFeed(Protocol):
    """The TripleSeat API seen as a feed of events: raw event objects, for storing as deliveries."""

    async def fetch_event_data(self, event_id: str, *, correlation_id: str) -> Mapping[str, object]:
        """The event object with its financials (show_financial=true); raises GatewayError (404: no such event)."""
        ...

    async def search_events(self, *, updated_since: date, correlation_id: str) -> list[Mapping[str, object]]:
        """Every event updated on or after the day (every page of events/search.json); raises GatewayError."""
        ...


class ProductCatalog(Protocol):
    """Revel, seen as a list of products per establishment."""

    async def list_products(self, establishment_id: int) -> list[tuple[int, str]]:
        """Every product of the establishment (every page), as (id, name); raises GatewayError."""
        ...


class MappingSource(Protocol):
    """Where the mapping comes from (the TOML file): read again on a reload."""

    @property
    def location(self) -> str: ...  # the absolute path, for operators

    def load(self) -> MappingConfig: ...  # raises ConfigError naming the file and the line or key


class Store(Protocol):
    """Durable state: deliveries and their timelines, the order ledger, flags, the email outbox, audit.

    Every write a worker makes about a claimed delivery is fenced by the delivery's lease token:
    it happens only if the token is still current, so a worker that stalled past its lease
    cannot commit over the one that took over.
    """

    async def migrate(self) -> None: ...
    async def close(self) -> None: ...
    async def check_writable(self) -> None: ...

    async def add_delivery(self, new: NewDelivery) -> tuple[Delivery, bool]: ...
    async def get_delivery(self, delivery_id: int) -> Delivery: ...
    async def list_deliveries(
        self, *, state: str | None = None, limit: int = 50, event_id: str | None = None, before_id: int | None = None
    ) -> list[Delivery]:
        """Newest first; only event_id's deliveries when given, only ids below before_id when given (paging)."""
        ...
    async def count_by_state(self) -> dict[str, int]: ...
    async def oldest_pending(self) -> datetime | None: ...

    async def claim_delivery(
        self, *, now: datetime, lease_until: datetime, delivery_id: int | None = None
    ) -> Delivery | None:
        """Claim the next due delivery (or exactly delivery_id, if it is claimable)."""
        ...
    async def add_note(self, delivery_id: int, *, token: int, now: datetime, note: str) -> bool: ...
    async def finish(self, delivery_id: int, *, token: int, now: datetime, outcome: Verdict) -> bool:
        """Commit the outcome of a claimed delivery in one transaction, if token still holds its lease; False otherwise.

        The state and its timeline note, the outcome's other fields, its emails into the outbox and
        the release of the event's pending order slot (only if this delivery holds it) go together.
        """
        ...

    async def reserve_order(
        self, *, event_id: str, reference: str, establishment_id: int, delivery_id: int, token: int, now: datetime
    ) -> Reservation: ...
    async def complete_order(
        self,
        *,
        event_id: str,
        delivery_id: int,
        token: int,
        ref: OrderRef,
        snapshot: str,
        now: datetime,
        note: str,
        emails: Sequence[EmailMessage] = (),
    ) -> bool: ...
    async def get_order(self, event_id: str) -> LedgerEntry | None: ...
    async def list_orders(self, *, limit: int = 100) -> list[LedgerEntry]: ...
    async def forget_order(self, event_id: str) -> bool: ...

    async def replay_delivery(self, delivery_id: int, *, now: datetime, note: str) -> bool: ...
    async def replay_state(self, state: str, *, now: datetime, note: str) -> int: ...
    async def discard_delivery(self, delivery_id: int, *, now: datetime, note: str) -> bool:
        """Move a held, skipped, dead or dry-run delivery to ignored (never replayed); False otherwise."""
        ...

    async def get_flags(self) -> FlagOverrides: ...
    async def set_flags(
        self, *, enable_connector: bool | None, dry_run: bool | None, actor: str, reason: str, now: datetime
    ) -> FlagOverrides: ...
    async def clear_flags(self, *, actor: str, reason: str, now: datetime) -> None: ...

    async def claim_email(self, *, now: datetime, lease_until: datetime) -> OutboxEmail | None: ...
    async def finish_email(
        self, email_id: int, *, token: int, state: str, now: datetime, error: str | None = None,
        attempts: int | None = None, next_attempt_at: datetime | None = None,
    ) -> bool:
        """Leave a claimed email in state, if token still holds its lease; False otherwise."""
        ...
    async def list_emails(self, *, delivery_id: int | None = None, limit: int = 100) -> list[OutboxEmail]: ...

    async def add_audit(self, *, actor: str, action: str, detail: str, reason: str, now: datetime) -> None: ...
    async def list_audit(self, *, limit: int = 100) -> list[AuditEntry]: ...

    async def get_value(self, name: str) -> str | None:
        """A small named value kept across restarts (e.g. a rotated OAuth refresh token)."""
        ...

    async def put_value(self, name: str, value: str, *, now: datetime) -> None: ...

    async def prune_history(self, *, older_than: datetime) -> int:
        """Delete terminal deliveries last updated before older_than (never pending work, never the ledger)."""
        ...

    # Event versions and named leases (catch-up sync). add_delivery records new.event_version in
    # the same transaction as the delivery, and answers the first delivery of that version instead
    # of storing a second when deliveries.duplicate_by_version says so.
    async def version_seen(self, event_version: str) -> bool:
        """Whether a delivery of this event version (deliveries.event_version) was ever stored."""
        ...

    async def take_lease(self, name: str, *, holder: str, now: datetime, until: datetime) -> int | None:
        """Take the named lease if it is free or expired: its new fencing token, else None."""
        ...

    async def keep_lease(self, name: str, *, token: int, now: datetime, until: datetime) -> bool:
        """Extend the lease while token still holds it (unexpired); False when it was lost."""
        ...

    async def end_lease(self, name: str, *, token: int, now: datetime, value_name: str, value: str) -> bool:
        """Free the lease and, in the same transaction, put the named value; nothing (False) unless token is still the newest."""
        ...


# What the use cases and the metered adapters measure; entrypoints/metrics.py maps each name to a
# Prometheus metric. Histograms are in seconds.
ACK_SECONDS = "webhook_ack_seconds"  # labels: status (accepted, duplicate, rejected, unauthorized, error)
PROCESSING_SECONDS = "processing_seconds"  # labels: outcome (the delivery's state afterwards)
REVEL_CALLS = "revel_calls"  # labels: operation (find, create), outcome (ok, transient, permanent, credentials, error)
REVEL_CALL_SECONDS = "revel_call_seconds"  # labels: operation
SENDGRID_CALLS = "sendgrid_calls"  # labels: outcome
SENDGRID_CALL_SECONDS = "sendgrid_call_seconds"
RETRIES = "retries"  # labels: kind (delivery, email)
DEAD_LETTERS = "dead_letters"  # labels: kind (delivery, email)


class Metrics(Protocol):
    """Somewhere to report measurements; an implementation must never raise into the caller."""

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record one value (seconds) in the named histogram."""
        ...

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        """Add amount to the named counter."""
        ...


class NoMetrics:
    """The default Metrics: records nothing (the library and unit tests need no registry)."""

    def observe(self, name: str, value: float, **labels: str) -> None:
        return None

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        return None
