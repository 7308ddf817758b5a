"""The use cases (accept a webhook, process a delivery, send an email, replay), written against ports only."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

import attrs

from tsrevel.domain import deliveries as st
from tsrevel.domain import notifications
from tsrevel.domain.changes import event_changes
from tsrevel.domain.correlation import current_correlation_id, current_delivery_id
from tsrevel.domain.deliveries import Delivery, LedgerEntry, NewDelivery
from tsrevel.domain.errors import (
    ConfigError,
    GatewayError,
    InvalidRequest,
    LiveRefused,
    MappingRejected,
    NotFound,
    PayloadError,
    SignatureError,
    StoreUnavailable,
)
from tsrevel.domain.events import TripleSeatEvent, WebhookEnvelope
from tsrevel.domain.ids import delivery_key
from tsrevel.domain.mapping import MappingConfig, MappingFailure, map_event, money_reading
from tsrevel.domain.orders import RevelOrder
from tsrevel.domain.ports import (
    BUSY,
    DEAD_LETTERS,
    EMAIL_FAILED,
    EMAIL_RETRYING,
    EMAIL_SENT,
    EMAIL_UNSENT,
    EXISTING,
    PROCESSING_SECONDS,
    RETRIES,
    Clock,
    EmailMessage,
    EventFeed,
    EventSource,
    FlagOverrides,
    Mailer,
    MappingSource,
    Metrics,
    NoMetrics,
    OrderGateway,
    Store,
)
from tsrevel.domain.retry import RetryPolicy
from tsrevel.domain.safety import (
    Hold,
    Ignore,
    LiveRequirements,
    OrderPolicy,
    Process,
    SafetyFlags,
    Skip,
    Withdraw,
    decide,
    live_refusal,
)
from tsrevel.domain.signature import refusal as signature_refusal
from tsrevel.domain.signature import verify_signature
from tsrevel.domain.window import defer_until, deferred_note, window_opens_at

log = logging.getLogger("tsrevel.processing")

# The named points where the test-only crash seam may kill the process (docs/reliability.md).
CRASH_POINTS = (
    "after_store",
    "after_claim",
    "before_revel_call",
    "after_revel_2xx",
    "before_email",
    "after_email",
)

# A delivery that finds another one placing its event's order waits this long before looking again.
BUSY_RECHECK_S = 2.0
# A delivery interrupted by a store outage is looked at again this soon (when the store can record that).
STORE_RECHECK_S = 5.0
# The store's named value that counts mapping reloads: every replica re-reads its file when it grows.
MAPPING_RELOAD_VALUE = "mapping.reload"
# The store's named value that remembers the latest delivery that deleted (or lost) an event with no order.
WITHDRAWN_VALUE = "event-withdrawn:{event_id}"


def no_crash(point: str) -> None:
    """The production crash hook: does nothing."""


def resolve_flags(boot: SafetyFlags, overrides: FlagOverrides, live: LiveRequirements | None = None) -> SafetyFlags:
    """The flags in force: a stored runtime override wins over the boot-time environment value.

    A stored ``dry_run=false`` (set, say, by another replica that has a signing secret) is not
    obeyed by a service that may not go live (live_refusal): it stays in dry run.
    """
    dry_run = boot.dry_run if overrides.dry_run is None else overrides.dry_run
    if overrides.dry_run is False and live is not None and live_refusal(live) is not None:
        dry_run = True
    return attrs.evolve(
        boot,
        enable_connector=boot.enable_connector if overrides.enable_connector is None else overrides.enable_connector,
        dry_run=dry_run,
    )


@attrs.frozen(kw_only=True)
class IntakeResult:
    """What the webhook endpoint answers: accepted, duplicate or rejected, with the delivery id."""

    status: str
    delivery_id: int
    correlation_id: str
    reason: str | None = None


@attrs.frozen(kw_only=True)
class Trace:
    """Everything one delivery went through: the /test/webhook answer."""

    intake: IntakeResult
    delivery: Delivery
    order: LedgerEntry | None
    emails: tuple[EmailMessage, ...]


@attrs.frozen(kw_only=True)
class MappingStatus:
    """The mapping in force in this process: which file, when it was loaded, which reload it follows."""

    file: str | None  # None: given in code (the library, tests), not read from a file
    loaded_at: datetime | None
    generation: int  # the reload it follows (0: none since the store was made)
    locations: int
    sites: int
    products: int

    def describe(self) -> str:
        source = self.file or "(given in code)"
        when = self.loaded_at.isoformat() if self.loaded_at else "at start-up"
        return f"{source}, loaded {when}: {self.locations} location(s), {self.sites} site(s), {self.products} shared product(s)"


@attrs.frozen(kw_only=True)
class ProcessingSettings:
    """The use cases' knobs, taken from Settings by the composition root."""

    order_policy: OrderPolicy = OrderPolicy()
    unmapped_items: str = "fail"
    retry: RetryPolicy = RetryPolicy()
    email_retry: RetryPolicy = RetryPolicy(max_attempts=10, base_s=5.0, cap_s=900.0)
    lease_s: float = 60.0
    email_to: tuple[str, ...] = ()
    signing_secret: str | None = attrs.field(default=None, repr=False)
    allow_unsigned: bool = False  # TRIPLESEAT_ALLOW_UNSIGNED: may go live without a signing secret
    revel_missing: tuple[str, ...] = ()  # Revel settings that are unset: going live is refused
    order_window_hours: float | None = None  # ORDER_WINDOW_HOURS: defer events that start further out


@attrs.define(kw_only=True)
class Processor:
    """The connector's use cases over its ports; one instance is shared by HTTP handlers and workers."""

    store: Store
    revel: OrderGateway
    mapping: MappingConfig
    boot_flags: SafetyFlags
    settings: ProcessingSettings
    clock: Clock
    mailer: Mailer | None = None
    events: EventSource | None = None
    crash: Callable[[str], None] = no_crash
    unit_random: Callable[[], float] = random.random
    on_accepted: Callable[[], None] | None = None
    metrics: Metrics = attrs.field(factory=NoMetrics)
    _refused_override_logged: bool = attrs.field(default=False, init=False, repr=False)
    feed: EventFeed | None = None  # the TripleSeat API as a feed of events: sync by id and the catch-up poll (domain/catchup.py)
    mapping_source: MappingSource | None = None  # the file reload_mapping() reads again
    mapping_loaded_at: datetime | None = None
    mapping_generation: int | None = None  # the last reload adopted; None until the store was first asked

    def __attrs_post_init__(self) -> None:
        if self.mapping_loaded_at is None:
            self.mapping_loaded_at = self.clock.now()

    # ---- intake -----------------------------------------------------------------------------

    def verify(self, body: bytes, signature: str | None) -> None:
        """Raise SignatureError unless the body is signed with the configured secret (when one is set)."""
        secret = self.settings.signing_secret
        if secret is None:
            return
        if not verify_signature(body, signature, secret=secret):
            raise SignatureError(signature_refusal(signature))

    async def accept(
        self, body: bytes, *, signature: str | None, correlation_id: str, header_names: tuple[str, ...] = ()
    ) -> IntakeResult:
        """Verify, then store the delivery durably (deduplicated by body hash); no outside call."""
        self.verify(body, signature)
        return await self._store(body, correlation_id=correlation_id, header_names=header_names, wake=True)

    async def run_now(self, body: bytes, *, correlation_id: str) -> IntakeResult:
        """Store a payload and process it at once (every flag honoured): the /test/webhook use case.

        An invalid payload raises PayloadError and is not stored. A payload already delivered
        answers with the existing delivery's intake: nothing is done twice. The entrypoint reads
        the trace (``entrypoints/views.py: settled_trace``), waiting for a worker that claimed it first.
        """
        WebhookEnvelope.from_json_bytes(body)
        intake = await self._store(body, correlation_id=correlation_id, header_names=(), wake=False)
        if intake.status == "accepted":
            await self.process_now(intake.delivery_id)
        return intake

    async def process_now(self, delivery_id: int) -> None:
        """Claim this delivery and take it as far as it can go now; nothing when a worker holds it (or it is not due)."""
        now = self.clock.now()
        claimed = await self.store.claim_delivery(
            now=now, lease_until=now + timedelta(seconds=self.settings.lease_s), delivery_id=delivery_id
        )
        if claimed is not None:
            await self.process_claimed(claimed)

    async def _store(
        self, body: bytes, *, correlation_id: str, header_names: tuple[str, ...], wake: bool
    ) -> IntakeResult:
        now = self.clock.now()
        state, error, trigger, event_id, version = st.QUEUED, None, None, None, None
        try:
            envelope = WebhookEnvelope.from_json_bytes(body)
            trigger = envelope.trigger_type
            event_id = envelope.event.id if envelope.event else None
            if envelope.event is not None and trigger in self.settings.order_policy.order_triggers:
                # The version this webhook brings, so the catch-up poll does not bring it again
                # (a deletion is never a version: the poll cannot see one).
                version = st.event_version(event_id, envelope.event.updated_at)
        except PayloadError as exc:
            state, error = st.REJECTED, str(exc)
        delivery, created = await self.store.add_delivery(
            NewDelivery(
                key=delivery_key(body),
                body=body,
                correlation_id=correlation_id,
                received_at=now,
                trigger_type=trigger,
                event_id=event_id,
                state=state,
                error=error,
                header_names=header_names,
                event_version=version,
            )
        )
        self.crash("after_store")
        if not created:
            status = "duplicate"
        elif delivery.state == st.REJECTED:
            status = "rejected"
        else:
            status = "accepted"
        log.info(
            "webhook %s: delivery %s (%s)",
            status,
            delivery.id,
            trigger or "unparsed",
            extra={"delivery_id": delivery.id, "event_id": event_id, "status": status},
        )
        if wake and created and state == st.QUEUED and self.on_accepted is not None:
            self.on_accepted()
        return IntakeResult(
            status=status, delivery_id=delivery.id, correlation_id=correlation_id, reason=delivery.last_error if status == "rejected" else None
        )

    # ---- flags ------------------------------------------------------------------------------

    @property
    def live_requirements(self) -> LiveRequirements:
        return LiveRequirements(
            signed=self.settings.signing_secret is not None,
            allow_unsigned=self.settings.allow_unsigned,
            revel_missing=self.settings.revel_missing,
        )

    def live_refused(self) -> str | None:
        """What going live still needs here (None when this service may write to Revel)."""
        return live_refusal(self.live_requirements)

    async def flags(self) -> SafetyFlags:
        """The flags in force now, read from the store every time so every replica agrees."""
        overrides = await self.store.get_flags()
        flags = resolve_flags(self.boot_flags, overrides, self.live_requirements)
        if overrides.dry_run is False and flags.dry_run and not self._refused_override_logged:
            self._refused_override_logged = True  # once per process, not once per delivery
            log.warning(
                "a stored runtime override says dry_run=false, but this service stays in dry run: it needs %s",
                self.live_refused(),
            )
        return flags

    # ---- the worker's step ------------------------------------------------------------------

    async def process_next(self) -> Delivery | None:
        """Claim the next due delivery and take it as far as it can go; None when nothing was due."""
        await self.follow_mapping_reload()
        now = self.clock.now()
        delivery = await self.store.claim_delivery(now=now, lease_until=now + timedelta(seconds=self.settings.lease_s))
        if delivery is None:
            return None
        await self.process_claimed(delivery)
        return delivery

    async def process_claimed(self, delivery: Delivery) -> None:
        """Run one claimed delivery through decide -> hold/skip/ignore/withdraw/process."""
        cid_token = current_correlation_id.set(delivery.correlation_id)
        did_token = current_delivery_id.set(delivery.id)
        run = _Run(self, delivery, self.mapping)  # one mapping for the whole pass, even if a reload lands meanwhile
        started = time.perf_counter()
        try:
            self.crash("after_claim")
            await run.go()
        except StoreUnavailable as exc:
            # Not this delivery's fault, and no verdict on it: it stays to be retried (never dead,
            # never a failure email), whatever it had done in Revel is found by reference next time.
            await run.store_unavailable(exc)
        except Exception as exc:
            # An unexpected error is retried like a transient failure, and only after the usual
            # attempts goes dead (R21: one poison delivery must not stall the queue); the
            # traceback goes to the log.
            log.exception("delivery %s: unexpected error", delivery.id)
            await run.internal_error(exc)
        finally:
            self.metrics.observe(PROCESSING_SECONDS, time.perf_counter() - started, outcome=run.outcome)
            current_correlation_id.reset(cid_token)
            current_delivery_id.reset(did_token)

    # ---- mapping reload ----------------------------------------------------------------------

    def mapping_status(self) -> MappingStatus:
        """Which mapping is in force here: its file, when it was loaded, the reload it follows."""
        return MappingStatus(
            file=self.mapping_source.location if self.mapping_source is not None else None,
            loaded_at=self.mapping_loaded_at,
            generation=self.mapping_generation or 0,
            locations=len(self.mapping.locations),
            sites=len(self.mapping.sites),
            products=len(self.mapping.products.by_menu_item) + len(self.mapping.products.by_name),
        )

    async def reload_mapping(self, *, actor: str, reason: str) -> MappingStatus:
        """Read the mapping file again: in force for the next delivery here, and on every replica after its next poll.

        A file that does not validate raises MappingRejected (file, line, problem) and the mapping
        in force stays; either way the attempt is audited. HTTP, the CLI, SIGHUP and the console
        all call this.
        """
        if self.mapping_source is None:
            raise InvalidRequest("this connector was given its mapping in code: there is no mapping file to reload")
        now, file = self.clock.now(), self.mapping_source.location
        try:
            config = self.mapping_source.load()
        except ConfigError as exc:
            await self.store.add_audit(actor=actor, action="mapping.reload", detail=f"refused, old mapping kept: {exc}"[:500], reason=reason, now=now)
            log.error("mapping reload by %s refused, the mapping loaded at %s stays in force: %s", actor, _iso(self.mapping_loaded_at), exc)
            raise MappingRejected(file, str(exc)) from None
        generation = _reload_generation(await self.store.get_value(MAPPING_RELOAD_VALUE)) + 1
        record = {"generation": generation, "actor": actor, "reason": reason, "at": now.isoformat(), "file": file}
        await self.store.put_value(MAPPING_RELOAD_VALUE, json.dumps(record), now=now)
        self._adopt_mapping(config, generation, now)
        status = self.mapping_status()
        await self.store.add_audit(actor=actor, action="mapping.reload", detail=f"generation {generation}: {status.describe()}"[:500], reason=reason, now=now)
        log.warning("mapping reloaded by %s (%s): %s", actor, reason, status.describe())
        return status

    async def follow_mapping_reload(self) -> None:
        """Before a delivery: adopt a reload asked for elsewhere (the CLI, another replica) by reading the file again."""
        if self.mapping_source is None:
            return
        generation = _reload_generation(await self.store.get_value(MAPPING_RELOAD_VALUE))
        if self.mapping_generation is None or generation <= self.mapping_generation:
            # First look (the file was read at start-up, so it is current), or nothing new.
            self.mapping_generation = max(generation, self.mapping_generation or 0)
            return
        self.mapping_generation = generation  # once per reload, even when the file is bad: a fix is a new reload
        try:
            config = self.mapping_source.load()
        except ConfigError as exc:
            log.error("mapping reload %d not followed here, the mapping loaded at %s stays in force: %s", generation, _iso(self.mapping_loaded_at), exc)
            return
        self._adopt_mapping(config, generation, self.clock.now())
        log.warning("mapping reload %d followed: %s", generation, self.mapping_status().describe())

    def _adopt_mapping(self, config: MappingConfig, generation: int, now: datetime) -> None:
        self.mapping, self.mapping_generation, self.mapping_loaded_at = config, generation, now

    # ---- email outbox ----------------------------------------------------------------------

    async def send_next_email(self) -> bool:
        """Send the next due email from the outbox; False when there was none (or the switch is off)."""
        flags = await self.flags()
        if not flags.enable_connector:
            return False  # the kill switch holds emails too: zero calls to SendGrid
        now = self.clock.now()
        email = await self.store.claim_email(now=now, lease_until=now + timedelta(seconds=self.settings.lease_s))
        if email is None:
            return False
        cid_token = current_correlation_id.set(email.message.correlation_id)
        try:
            if self.mailer is None:
                await self.store.finish_email(email.id, token=email.lease_token, state=EMAIL_UNSENT, now=now)
                log.info("email %s recorded, not sent (no SENDGRID_API_KEY)", email.id, extra={"email_kind": email.message.kind})
                return True
            self.crash("before_email")
            try:
                await self.mailer.send(email.message, outbox_id=email.id)
            except GatewayError as exc:
                attempts = email.attempts + 1
                policy = self.settings.email_retry
                if not exc.is_transient or policy.exhausted(attempts):
                    await self.store.finish_email(
                        email.id, token=email.lease_token, state=EMAIL_FAILED, now=self.clock.now(),
                        error=str(exc), attempts=attempts,
                    )
                    log.error("email %s failed for good: %s", email.id, exc)
                    self.metrics.count(DEAD_LETTERS, kind="email")
                else:
                    at = policy.next_attempt_at(
                        attempts, now=self.clock.now(), unit_random=self.unit_random(), retry_after=exc.failure.retry_after
                    )
                    await self.store.finish_email(
                        email.id, token=email.lease_token, state=EMAIL_RETRYING, now=self.clock.now(),
                        error=str(exc), attempts=attempts, next_attempt_at=at,
                    )
                    log.warning("email %s will be retried at %s: %s", email.id, at.isoformat(), exc)
                    self.metrics.count(RETRIES, kind="email")
                return True
            await self.store.finish_email(
                email.id, token=email.lease_token, state=EMAIL_SENT, now=self.clock.now(), attempts=email.attempts + 1
            )
            self.crash("after_email")
            log.info("email %s sent (%s)", email.id, email.message.kind, extra={"email_kind": email.message.kind})
            return True
        finally:
            current_correlation_id.reset(cid_token)

    # ---- operator actions ------------------------------------------------------------------

    async def replay(self, delivery_id: int, *, actor: str, reason: str) -> bool:
        now = self.clock.now()
        done = await self.store.replay_delivery(delivery_id, now=now, note=f"replayed by {actor}: {reason}")
        await self.store.add_audit(actor=actor, action="replay", detail=f"delivery {delivery_id}: {'re-queued' if done else 'not replayable'}", reason=reason, now=now)
        if done and self.on_accepted is not None:
            self.on_accepted()
        return done

    async def replay_state(self, state: str, *, actor: str, reason: str) -> int:
        now = self.clock.now()
        count = await self.store.replay_state(state, now=now, note=f"replayed by {actor}: {reason}")
        await self.store.add_audit(actor=actor, action="replay", detail=f"{count} {state} deliveries re-queued", reason=reason, now=now)
        if count and self.on_accepted is not None:
            self.on_accepted()
        return count

    async def set_flags(
        self, *, enable_connector: bool | None, dry_run: bool | None, actor: str, reason: str
    ) -> SafetyFlags:
        """Store runtime overrides (audited); raises LiveRefused when dry_run=false is not allowed here."""
        if dry_run is False and (needs := self.live_refused()) is not None:
            log.warning("runtime flags: dry_run=false refused for %s: needs %s", actor, needs)
            raise LiveRefused(needs)
        now = self.clock.now()
        await self.store.set_flags(enable_connector=enable_connector, dry_run=dry_run, actor=actor, reason=reason, now=now)
        detail = ", ".join(
            f"{name}={value}" for name, value in (("enable_connector", enable_connector), ("dry_run", dry_run)) if value is not None
        )
        await self.store.add_audit(actor=actor, action="flags.set", detail=detail or "no change", reason=reason, now=now)
        log.warning("runtime flags set by %s: %s (%s)", actor, detail or "no change", reason)
        if self.on_accepted is not None:
            self.on_accepted()
        return await self.flags()

    async def clear_flags(self, *, actor: str, reason: str) -> SafetyFlags:
        now = self.clock.now()
        await self.store.clear_flags(actor=actor, reason=reason, now=now)
        await self.store.add_audit(actor=actor, action="flags.reset", detail="back to the environment values", reason=reason, now=now)
        log.warning("runtime flags reset by %s (%s)", actor, reason)
        return await self.flags()

    async def discard(self, delivery_id: int, *, actor: str, reason: str) -> bool:
        """Move a held, skipped, dead or dry-run delivery to ignored, so no replay ever acts on it."""
        now = self.clock.now()
        done = await self.store.discard_delivery(delivery_id, now=now, note=f"discarded by {actor}: {reason}")
        await self.store.add_audit(
            actor=actor, action="discard", detail=f"delivery {delivery_id}: {'moved to ignored' if done else 'not discardable'}", reason=reason, now=now
        )
        return done

    async def forget(self, event_id: str, *, actor: str, reason: str) -> LedgerEntry | None:
        """Drop the event's ledger entry (after a manual clean-up in Revel) so a later delivery may order it again.

        Returns the entry dropped, or None when the event had none. Refused while a delivery of the
        event may be placing its order: forgetting then could let a second order through.
        """
        entry = await self.store.get_order(event_id)
        if entry is not None and entry.state == st.LEDGER_PENDING:
            try:
                owner = await self.store.get_delivery(entry.delivery_id)
            except NotFound:
                owner = None
            if owner is not None and owner.state in st.PENDING_STATES:
                raise InvalidRequest(
                    f"delivery {owner.id} is placing event {event_id}'s order ({owner.state}); "
                    "switch the connector off or wait for it to finish, then forget"
                )
        now = self.clock.now()
        forgotten = entry is not None and await self.store.forget_order(event_id)
        if forgotten:
            assert entry is not None
            detail = f"event {event_id}: ledger entry {entry.reference} ({entry.state}, Revel id {entry.revel_order_id}) dropped"
        else:
            detail = f"event {event_id}: no ledger entry"
        await self.store.add_audit(actor=actor, action="forget", detail=detail, reason=reason, now=now)
        log.warning("order ledger: %s by %s (%s)", detail, actor, reason)
        return entry if forgotten else None

    async def prune(self, *, older_than: datetime, actor: str, reason: str) -> int:
        """Delete finished deliveries last updated before older_than; the ledger and audit stay."""
        count = await self.store.prune_history(older_than=older_than)
        await self.store.add_audit(
            actor=actor, action="prune", detail=f"{count} finished deliveries last updated before {older_than.isoformat()} deleted",
            reason=reason, now=self.clock.now(),
        )
        return count

    def preview(self, payload: Mapping[str, object]) -> RevelOrder | MappingFailure:
        """Map a decoded webhook (or bare event) payload without storing or sending anything."""
        if "webhook_trigger_type" in payload:
            envelope = WebhookEnvelope.from_payload(payload)
            if envelope.event is None:
                raise PayloadError("event", None, "is missing: the webhook carries no event")
            event = envelope.event
        else:
            event = TripleSeatEvent.from_payload(payload)
        return map_event(event, self.mapping, unmapped=self.settings.unmapped_items)


@attrs.define
class _Run:
    """One pass of one claimed delivery; every store write is fenced by the claim's lease token."""

    p: Processor
    d: Delivery
    mapping: MappingConfig
    outcome: str = "unfinished"  # the state this pass left the delivery in, for metrics

    @property
    def token(self) -> int:
        return self.d.lease_token

    def _log(self, level: int, msg: str, *args: object) -> None:
        log.log(level, msg, *args, extra={"delivery_id": self.d.id, "event_id": self.d.event_id})

    async def finish(self, state: str, note: str, **kwargs: object) -> bool:
        ok = await self.p.store.finish(
            self.d.id, token=self.token, state=state, now=self.p.clock.now(), note=note, **kwargs  # type: ignore[arg-type]
        )
        if ok:
            self.outcome = state
            if state == st.DEAD:
                self.p.metrics.count(DEAD_LETTERS, kind="delivery")
            self._log(logging.INFO if state not in (st.DEAD, st.NEEDS_ATTENTION) else logging.WARNING, "delivery %s -> %s: %s", self.d.id, state, note)
        else:
            self.outcome = "lease_lost"
            self._log(logging.WARNING, "delivery %s: lease lost before '%s' could be recorded; the new owner decides", self.d.id, state)
        return ok

    async def go(self) -> None:
        try:
            envelope = WebhookEnvelope.from_json_bytes(self.d.body)
        except PayloadError as exc:
            await self.finish(st.REJECTED, f"unusable payload: {exc}", error=str(exc))
            return
        flags = await self.p.flags()
        decision = decide(envelope, flags, self.p.settings.order_policy)
        if isinstance(decision, Process) and self.p.settings.order_window_hours is not None:
            assert envelope.event is not None
            current = await self.window(envelope.event)
            if current is None:
                return  # deferred, or re-reading the event failed (recorded)
            if current is not envelope.event:  # re-read when the window opened: decide on the event as it is now
                envelope = attrs.evolve(envelope, event=current)
                decision = decide(envelope, flags, self.p.settings.order_policy)
        if isinstance(decision, Hold):
            await self.finish(st.HELD, decision.reason)
        elif isinstance(decision, Skip):
            await self.finish(st.SKIPPED, decision.reason)
        elif isinstance(decision, Ignore):
            await self.finish(st.IGNORED, decision.reason)
        elif isinstance(decision, Withdraw):
            assert envelope.event is not None  # decide() only withdraws events
            await self.withdraw(envelope.event, decision.reason)
        else:
            assert envelope.event is not None and isinstance(decision, Process)
            await self.process(envelope.event, dry_run=decision.dry_run)

    async def window(self, event: TripleSeatEvent) -> TripleSeatEvent | None:
        """Defer an event that starts beyond ORDER_WINDOW_HOURS; once a deferred one's window opens, re-read it.

        Returns the event to go on with, or None when the delivery was deferred (state retrying,
        attempts unchanged) or re-reading it failed (recorded like any TripleSeat API failure).
        """
        hours, zone, now = self.p.settings.order_window_hours, self.mapping.timezone, self.p.clock.now()
        assert hours is not None
        later = defer_until(event, now=now, window_hours=hours, site_zone=zone)
        if later is not None:
            await self.finish(st.RETRYING, deferred_note(later, hours), next_attempt_at=later)
            return None
        opened = window_opens_at(event, window_hours=hours, site_zone=zone)
        if opened is None or self.d.received_at >= opened or self.p.events is None:
            return event  # never deferred (or nothing to re-read it from): the stored body stands
        if await self.withdrawn_after_arrival(event.id):
            return None
        # Deferred for a while: order the event as it is now, not as it was when the webhook came.
        try:
            current = await self.p.events.fetch_event(event.id, correlation_id=self.d.correlation_id)
        except GatewayError as exc:
            await self.fail(exc, event_id=event.id, what="re-reading the deferred event from TripleSeat")
            return None
        except PayloadError as exc:
            await self.dead(f"TripleSeat API answered an unusable event: {exc}", event_id=event.id)
            return None
        await self.p.store.add_note(self.d.id, token=self.token, now=now, note="order window open: re-read the event from the TripleSeat API")
        later = defer_until(current, now=now, window_hours=hours, site_zone=zone)
        if later is not None:  # the event moved further out meanwhile
            await self.finish(st.RETRYING, deferred_note(later, hours), next_attempt_at=later)
            return None
        return current

    async def withdrawn_after_arrival(self, event_id: str) -> bool:
        """True (and the delivery ignored) when a later delivery deleted or lost the event before any order existed."""
        marker = _withdrawn_marker(await self.p.store.get_value(WITHDRAWN_VALUE.format(event_id=event_id)))
        if marker is None or marker[0] <= self.d.id:
            return False  # never withdrawn, or this delivery came after (the event was restored): go on
        by, why = marker
        await self.finish(st.IGNORED, f"event {event_id} was {why} by a later delivery ({by}) before any order existed: no order")
        return True

    async def withdraw(self, event: TripleSeatEvent, reason: str) -> None:
        entry = await self.p.store.get_order(event.id)
        why = "deleted" if "deleted" in reason else "marked LOST"
        if entry is None or entry.state != st.LEDGER_CREATED:
            # Remember it: an older delivery still waiting (deferred, retrying, dead then replayed)
            # must not order the event afterwards.
            key = WITHDRAWN_VALUE.format(event_id=event.id)
            marker = _withdrawn_marker(await self.p.store.get_value(key))
            if marker is None or self.d.id > marker[0]:
                await self.p.store.put_value(key, json.dumps({"delivery_id": self.d.id, "why": why}), now=self.p.clock.now())
            await self.finish(st.IGNORED, f"{reason}; no Revel order exists, nothing to void")
            return
        email = notifications.void_request(self.d, event, _ref_text(entry), why, to=self.p.settings.email_to)
        await self.finish(st.NEEDS_ATTENTION, f"{reason}; asked operations to void {entry.reference}", emails=[email], order_reference=entry.reference)

    async def process(self, event: TripleSeatEvent, *, dry_run: bool) -> None:
        entry = await self.p.store.get_order(event.id)
        if entry is None and await self.withdrawn_after_arrival(event.id):
            return
        ordered = entry is not None and entry.state == st.LEDGER_CREATED
        # Enrich before comparing too: an update without documents must not read as "items removed".
        if not event.line_items and self.p.events is not None:
            try:
                event = await self.p.events.fetch_event(event.id, correlation_id=self.d.correlation_id)
                await self.p.store.add_note(self.d.id, token=self.token, now=self.p.clock.now(), note="fetched the event's line items from the TripleSeat API")
            except (GatewayError, PayloadError) as exc:
                if not ordered or (isinstance(exc, GatewayError) and exc.is_transient):
                    if isinstance(exc, GatewayError):
                        await self.fail(exc, event_id=event.id, what="fetching the event from TripleSeat")
                    else:
                        await self.dead(f"TripleSeat API answered an unusable event: {exc}", event_id=event.id)
                    return
                # The order exists: compare what the webhook carries rather than report a failed order.
                await self.p.store.add_note(self.d.id, token=self.token, now=self.p.clock.now(), note=f"could not fetch the event's line items ({exc}); compared what the webhook carries")
        if ordered:
            assert entry is not None
            await self.compare(event, entry)
            return
        mapped = map_event(event, self.mapping, unmapped=self.p.settings.unmapped_items, received_at=self.d.received_at)
        if isinstance(mapped, MappingFailure):
            email = notifications.mapping_failure(self.d, mapped, to=self.p.settings.email_to)
            await self.finish(st.DEAD, mapped.describe(), error=mapped.describe(), emails=[email], attempts=self.d.attempts + 1)
            return
        # The money as we read it, as evidence; what ops must know goes on the delivery's timeline too.
        self._log(logging.INFO, "delivery %s: invoice of event %s: %s (read: %s)", self.d.id, event.id, mapped.arithmetic, money_reading(event, self.mapping))
        for warning in mapped.warnings:
            self._log(logging.WARNING, "delivery %s: %s", self.d.id, warning)
            await self.p.store.add_note(self.d.id, token=self.token, now=self.p.clock.now(), note=warning)
        snapshot = json.dumps(mapped.to_snapshot(), sort_keys=True)
        if dry_run:
            email = notifications.dry_run(self.d, mapped, to=self.p.settings.email_to)
            await self.finish(
                st.DRY_RUN,
                f"DRY_RUN: would create {mapped.local_id} (final total {mapped.final_total}, remaining due {mapped.remaining_due}); nothing written to Revel",
                result=snapshot, emails=[email],
            )
            return
        await self.place(event, mapped, snapshot)

    async def place(self, event: TripleSeatEvent, order: RevelOrder, snapshot: str) -> None:
        store, now = self.p.store, self.p.clock.now()
        reservation = await store.reserve_order(
            event_id=event.id, reference=order.local_id, establishment_id=order.establishment_id,
            delivery_id=self.d.id, token=self.token, now=now,
        )
        if reservation.outcome == EXISTING:
            assert reservation.entry is not None
            await self.compare(event, reservation.entry)
            return
        if reservation.outcome == BUSY:
            owner = reservation.entry.delivery_id if reservation.entry else "another worker"
            await self.finish(
                st.RETRYING, f"delivery {owner} is placing this event's order; looking again shortly",
                next_attempt_at=now + timedelta(seconds=BUSY_RECHECK_S), result=snapshot,
            )
            return
        # We hold the event's order slot. Flags are read again right before each side effect.
        if not await self.still_go(event.id, f"looking up {order.local_id} in Revel (establishment {order.establishment_id})"):
            return
        cid = self.d.correlation_id
        try:
            found = await self.p.revel.find_order(order.establishment_id, order.local_id, correlation_id=cid)
            if found is None:
                if not await self.still_go(
                    event.id,
                    f"creating {order.local_id} in Revel: {len(order.items)} item(s), final total {order.final_total}, "
                    f"{len(order.recorded_payments)} payment(s), remaining due {order.remaining_due}",
                ):
                    return
                self.p.crash("before_revel_call")
                ref = await self.p.revel.create_order(order, correlation_id=cid)
                self.p.crash("after_revel_2xx")
            else:
                ref = found
        except GatewayError as exc:
            await self.fail(exc, event_id=event.id, what="calling Revel", result=snapshot)
            return
        verb = "found existing" if found is not None else "created"
        email = notifications.order_created(self.d, order, ref, found=found is not None, to=self.p.settings.email_to)
        ok = await store.complete_order(
            event_id=event.id, delivery_id=self.d.id, token=self.token, ref=ref, snapshot=snapshot,
            now=self.p.clock.now(), note=f"{verb} Revel order {ref.order_id} ({ref.local_id or order.local_id})", emails=[email],
        )
        self.outcome = st.DONE if ok else "lease_lost"
        if ok:
            self._log(logging.INFO, "delivery %s -> done: %s Revel order %s for event %s", self.d.id, verb, ref.order_id, event.id)
        else:
            self._log(logging.WARNING, "delivery %s: lease lost after Revel answered; the new owner will find order %s by reference", self.d.id, ref.order_id)

    async def still_go(self, event_id: str, note: str) -> bool:
        """Re-check the flags and the lease right before a side effect; stand down when either says no."""
        flags = await self.p.flags()
        if not flags.enable_connector:
            await self.finish(st.HELD, "ENABLE_CONNECTOR switched off before the Revel call: held for replay", release_event_id=event_id)
            return False
        if flags.dry_run:
            await self.finish(st.DRY_RUN, "DRY_RUN switched on before the Revel call: nothing written", release_event_id=event_id)
            return False
        if not await self.p.store.add_note(self.d.id, token=self.token, now=self.p.clock.now(), note=note):
            self._log(logging.WARNING, "delivery %s: lease lost; standing down before the side effect", self.d.id)
            return False
        return True

    async def compare(self, event: TripleSeatEvent, entry: LedgerEntry) -> None:
        """The event already has its order: record this delivery, and tell ops if the event changed."""
        ordered = json.loads(entry.snapshot) if entry.snapshot else {}
        changes = event_changes(ordered, event, self.mapping, unmapped=self.p.settings.unmapped_items) if ordered else []
        ref_text = _ref_text(entry)
        if not changes:
            await self.finish(st.DONE, f"order {ref_text} already exists; no change", order_reference=entry.reference)
            return
        email = notifications.needs_attention(self.d, event, ref_text, changes, to=self.p.settings.email_to)
        await self.finish(
            st.NEEDS_ATTENTION, f"event changed after order {ref_text}: " + "; ".join(changes),
            order_reference=entry.reference, emails=[email],
        )

    async def fail(self, exc: GatewayError, *, event_id: str, what: str, result: str | None = None) -> None:
        attempts = self.d.attempts + 1
        policy = self.p.settings.retry
        message = f"{what}: {exc.failure.kind} error: {exc}"
        if not exc.is_transient:
            await self.dead(message, event_id=event_id, attempts=attempts)
            return
        if policy.exhausted(attempts):
            await self.dead(f"{message} (gave up after {attempts} attempts)", event_id=event_id, attempts=attempts)
            return
        now = self.p.clock.now()
        at = policy.next_attempt_at(attempts, now=now, unit_random=self.p.unit_random(), retry_after=exc.failure.retry_after)
        self.p.metrics.count(RETRIES, kind="delivery")
        await self.finish(
            st.RETRYING, f"attempt {attempts} failed ({message}); next attempt at {at.isoformat()}",
            error=message, attempts=attempts, next_attempt_at=at, result=result,
        )

    async def store_unavailable(self, exc: StoreUnavailable) -> None:
        """Leave the delivery to be retried: rescheduled soon if the store can record that, else its lease runs out."""
        self.outcome = "store_unavailable"
        try:
            at = self.p.clock.now() + timedelta(seconds=STORE_RECHECK_S)
            await self.finish(st.RETRYING, f"the store was unavailable ({exc.reason}); looking again at {at.isoformat()}", next_attempt_at=at)
        except StoreUnavailable:
            self._log(logging.DEBUG, "delivery %s: store unavailable; it is taken again when its lease runs out", self.d.id)

    async def internal_error(self, exc: Exception) -> None:
        """Retry an unexpected error with backoff; dead (with the failure email) once the attempts are used up."""
        attempts = self.d.attempts + 1
        policy = self.p.settings.retry
        reason = f"internal error: {type(exc).__name__}: {exc}"[:500]
        event_id = self.d.event_id or ""
        if policy.exhausted(attempts):
            await self.dead(f"{reason} (gave up after {attempts} attempts)", event_id=event_id, attempts=attempts)
            return
        at = policy.next_attempt_at(attempts, now=self.p.clock.now(), unit_random=self.p.unit_random())
        self.p.metrics.count(RETRIES, kind="delivery")
        await self.finish(
            st.RETRYING, f"attempt {attempts} failed ({reason}); next attempt at {at.isoformat()}",
            error=reason, attempts=attempts, next_attempt_at=at,
        )

    async def dead(self, reason: str, *, event_id: str, attempts: int | None = None) -> None:
        email = notifications.failure(self.d, reason, to=self.p.settings.email_to, event_id=event_id or None)
        await self.finish(
            st.DEAD, reason, error=reason, attempts=attempts if attempts is not None else self.d.attempts + 1,
            emails=[email], release_event_id=event_id or None,
        )


def _reload_generation(raw: str | None) -> int:
    """The reload count in the store's named value (0 when absent or unreadable)."""
    try:
        record = json.loads(raw) if raw else None
        return int(record["generation"]) if isinstance(record, dict) else 0
    except (ValueError, TypeError, KeyError):
        return 0


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else "start-up"


def _withdrawn_marker(raw: str | None) -> tuple[int, str] | None:
    """(delivery id, "deleted" or "marked LOST") from the stored marker; None when absent or unreadable."""
    try:
        marker = json.loads(raw) if raw else None
        return (int(marker["delivery_id"]), str(marker["why"])) if isinstance(marker, dict) else None
    except (ValueError, TypeError, KeyError):
        return None


def _ref_text(entry: LedgerEntry) -> str:
    return f"{entry.reference} (Revel id {entry.revel_order_id})" if entry.revel_order_id else entry.reference

