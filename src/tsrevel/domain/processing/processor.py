"""The Processor: the one object HTTP handlers, workers and the CLI share; each use case lives in its own module, this only holds the ports and delegates."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import datetime

import attrs

from tsrevel.domain.deliveries import Delivery, LedgerEntry
from tsrevel.domain.mapping import MappingConfig, MappingFailure
from tsrevel.domain.orders import RevelOrder
from tsrevel.domain.ports import Clock, EventFeed, EventSource, Mailer, MappingSource, Metrics, NoMetrics, OrderGateway, Store
from tsrevel.domain.processing import intake, mapping_reload, operator_actions, outbox, worker_step
from tsrevel.domain.processing.flags import flags_in_force
from tsrevel.domain.processing.intake import IntakeResult
from tsrevel.domain.processing.mapping_reload import MappingStatus
from tsrevel.domain.retry import RetryPolicy
from tsrevel.domain.safety import LiveRequirements, OrderPolicy, SafetyFlags, live_refusal

# The named points where the test-only crash seam may kill the process (docs/reliability.md).
CRASH_POINTS = (
    "after_store",
    "after_claim",
    "before_revel_call",
    "after_revel_2xx",
    "before_email",
    "after_email",
)


def no_crash(point: str) -> None:
    """The production crash hook: does nothing."""


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
    refused_override_logged: bool = attrs.field(default=False, init=False, repr=False)  # flags.py warns once per process
    feed: EventFeed | None = None  # the TripleSeat API as a feed of events: sync by id and the catch-up poll (domain/catchup.py)
    mapping_source: MappingSource | None = None  # the file reload_mapping() reads again
    mapping_loaded_at: datetime | None = None
    mapping_generation: int | None = None  # the last reload adopted; None until the store was first asked

    def __attrs_post_init__(self) -> None:
        if self.mapping_loaded_at is None:
            self.mapping_loaded_at = self.clock.now()

    def wake_workers(self) -> None:
        """Tell the worker loops there is work (new, re-queued, or unheld by a flag change)."""
        if self.on_accepted is not None:
            self.on_accepted()

    # ---- intake (intake.py) -----------------------------------------------------------------

    def verify(self, body: bytes, signature: str | None) -> None:
        """Raise SignatureError unless the body is signed with the configured secret (when one is set)."""
        intake.verify(body, signature, secret=self.settings.signing_secret)

    async def accept(
        self, body: bytes, *, signature: str | None, correlation_id: str, header_names: tuple[str, ...] = ()
    ) -> IntakeResult:
        """Verify, then store the delivery durably (deduplicated by body hash); no outside call."""
        return await intake.accept(self, body, signature=signature, correlation_id=correlation_id, header_names=header_names)

    async def run_now(self, body: bytes, *, correlation_id: str) -> IntakeResult:
        """Store a payload and process it at once (every flag honoured): the /test/webhook use case."""
        return await intake.run_now(self, body, correlation_id=correlation_id)

    # ---- flags (flags.py) -------------------------------------------------------------------

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
        return await flags_in_force(self)

    # ---- the worker's step (worker_step.py, delivery_pass.py) --------------------------------

    async def process_next(self) -> Delivery | None:
        """Claim the next due delivery and take it as far as it can go; None when nothing was due."""
        return await worker_step.process_next(self)

    async def process_now(self, delivery_id: int) -> None:
        """Claim this delivery and take it as far as it can go now; nothing when a worker holds it (or it is not due)."""
        await worker_step.process_now(self, delivery_id)

    async def process_claimed(self, delivery: Delivery) -> None:
        """Run one claimed delivery through decide -> hold/skip/ignore/withdraw/process."""
        await worker_step.process_claimed(self, delivery)

    # ---- mapping reload (mapping_reload.py) -------------------------------------------------

    def mapping_status(self) -> MappingStatus:
        """Which mapping is in force here: its file, when it was loaded, the reload it follows."""
        return mapping_reload.mapping_status(self)

    async def reload_mapping(self, *, actor: str, reason: str) -> MappingStatus:
        """Read the mapping file again: in force for the next delivery here, and on every replica after its next poll."""
        return await mapping_reload.reload_mapping(self, actor=actor, reason=reason)

    async def follow_mapping_reload(self) -> None:
        """Before a delivery: adopt a reload asked for elsewhere (the CLI, another replica) by reading the file again."""
        await mapping_reload.follow_mapping_reload(self)

    # ---- email outbox (outbox.py) -----------------------------------------------------------

    async def send_next_email(self) -> bool:
        """Send the next due email from the outbox; False when there was none (or the switch is off)."""
        return await outbox.send_next_email(self)

    # ---- operator actions (operator_actions.py) ---------------------------------------------

    async def replay(self, delivery_id: int, *, actor: str, reason: str) -> bool:
        """Re-queue one replayable delivery (audited)."""
        return await operator_actions.replay(self, delivery_id, actor=actor, reason=reason)

    async def replay_state(self, state: str, *, actor: str, reason: str) -> int:
        """Re-queue every delivery in a replayable state (audited); how many."""
        return await operator_actions.replay_state(self, state, actor=actor, reason=reason)

    async def set_flags(
        self, *, enable_connector: bool | None, dry_run: bool | None, actor: str, reason: str
    ) -> SafetyFlags:
        """Store runtime overrides (audited); raises LiveRefused when dry_run=false is not allowed here."""
        return await operator_actions.set_flags(self, enable_connector=enable_connector, dry_run=dry_run, actor=actor, reason=reason)

    async def clear_flags(self, *, actor: str, reason: str) -> SafetyFlags:
        """Drop the runtime overrides (audited): the environment's values are in force again."""
        return await operator_actions.clear_flags(self, actor=actor, reason=reason)

    async def discard(self, delivery_id: int, *, actor: str, reason: str) -> bool:
        """Move a held, skipped, dead or dry-run delivery to ignored, so no replay ever acts on it."""
        return await operator_actions.discard(self, delivery_id, actor=actor, reason=reason)

    async def forget(self, event_id: str, *, actor: str, reason: str) -> LedgerEntry | None:
        """Drop the event's ledger entry so a later delivery may order it again; the entry dropped, or None."""
        return await operator_actions.forget(self, event_id, actor=actor, reason=reason)

    async def prune(self, *, older_than: datetime, actor: str, reason: str) -> int:
        """Delete finished deliveries last updated before older_than; the ledger and audit stay."""
        return await operator_actions.prune(self, older_than=older_than, actor=actor, reason=reason)

    def preview(self, payload: Mapping[str, object]) -> RevelOrder | MappingFailure:
        """Map a decoded webhook (or bare event) payload without storing or sending anything."""
        return operator_actions.preview(self, payload)
