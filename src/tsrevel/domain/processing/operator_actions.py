"""What an operator does by hand (HTTP admin, CLI, console): replay, discard, forget, prune, set the flags, preview; each audited."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from tsrevel.domain import deliveries as st
from tsrevel.domain.deliveries import LedgerEntry
from tsrevel.domain.errors import InvalidRequest, LiveRefused, NotFound, PayloadError
from tsrevel.domain.events import TripleSeatEvent, WebhookEnvelope
from tsrevel.domain.mapping import MappingFailure, map_event
from tsrevel.domain.orders import RevelOrder
from tsrevel.domain.safety import SafetyFlags

if TYPE_CHECKING:
    from tsrevel.domain.processing.processor import Processor

log = logging.getLogger("tsrevel.processing")


async def replay(p: Processor, delivery_id: int, *, actor: str, reason: str) -> bool:
    """Re-queue one replayable delivery (audited); False when it is not replayable."""
    now = p.clock.now()
    done = await p.store.replay_delivery(delivery_id, now=now, note=f"replayed by {actor}: {reason}")
    await _replayed(p, done, f"delivery {delivery_id}: {'re-queued' if done else 'not replayable'}", actor, reason, now)
    return done


async def replay_state(p: Processor, state: str, *, actor: str, reason: str) -> int:
    """Re-queue every delivery in a replayable state (audited); how many."""
    now = p.clock.now()
    count = await p.store.replay_state(state, now=now, note=f"replayed by {actor}: {reason}")
    await _replayed(p, count > 0, f"{count} {state} deliveries re-queued", actor, reason, now)
    return count


async def _replayed(p: Processor, requeued: bool, detail: str, actor: str, reason: str, now: datetime) -> None:
    await p.store.add_audit(actor=actor, action="replay", detail=detail, reason=reason, now=now)
    if requeued:
        p.wake_workers()


async def set_flags(
    p: Processor, *, enable_connector: bool | None, dry_run: bool | None, actor: str, reason: str
) -> SafetyFlags:
    """Store runtime overrides (audited); raises LiveRefused when dry_run=false is not allowed here."""
    if dry_run is False and (needs := p.live_refused()) is not None:
        log.warning("runtime flags: dry_run=false refused for %s: needs %s", actor, needs)
        raise LiveRefused(needs)
    now = p.clock.now()
    await p.store.set_flags(enable_connector=enable_connector, dry_run=dry_run, actor=actor, reason=reason, now=now)
    detail = ", ".join(
        f"{name}={value}" for name, value in (("enable_connector", enable_connector), ("dry_run", dry_run)) if value is not None
    )
    await p.store.add_audit(actor=actor, action="flags.set", detail=detail or "no change", reason=reason, now=now)
    log.warning("runtime flags set by %s: %s (%s)", actor, detail or "no change", reason)
    p.wake_workers()
    return await p.flags()


async def clear_flags(p: Processor, *, actor: str, reason: str) -> SafetyFlags:
    """Drop the runtime overrides (audited): the environment's values are in force again."""
    now = p.clock.now()
    await p.store.clear_flags(actor=actor, reason=reason, now=now)
    await p.store.add_audit(actor=actor, action="flags.reset", detail="back to the environment values", reason=reason, now=now)
    log.warning("runtime flags reset by %s (%s)", actor, reason)
    return await p.flags()


async def discard(p: Processor, delivery_id: int, *, actor: str, reason: str) -> bool:
    """Move a held, skipped, dead or dry-run delivery to ignored, so no replay ever acts on it."""
    now = p.clock.now()
    done = await p.store.discard_delivery(delivery_id, now=now, note=f"discarded by {actor}: {reason}")
    await p.store.add_audit(
        actor=actor, action="discard", detail=f"delivery {delivery_id}: {'moved to ignored' if done else 'not discardable'}", reason=reason, now=now
    )
    return done


async def forget(p: Processor, event_id: str, *, actor: str, reason: str) -> LedgerEntry | None:
    """Drop the event's ledger entry (after a manual clean-up in Revel) so a later delivery may order it again.

    Returns the entry dropped, or None when the event had none. Refused while a delivery of the
    event may be placing its order: forgetting then could let a second order through.
    """
    entry = await p.store.get_order(event_id)
    if entry is not None and entry.state == st.LEDGER_PENDING:
        try:
            owner = await p.store.get_delivery(entry.delivery_id)
        except NotFound:
            owner = None
        if owner is not None and owner.state in st.PENDING_STATES:
            raise InvalidRequest(
                f"delivery {owner.id} is placing event {event_id}'s order ({owner.state}); "
                "switch the connector off or wait for it to finish, then forget"
            )
    now = p.clock.now()
    forgotten = entry is not None and await p.store.forget_order(event_id)
    if forgotten:
        assert entry is not None
        detail = f"event {event_id}: ledger entry {entry.reference} ({entry.state}, Revel id {entry.revel_order_id}) dropped"
    else:
        detail = f"event {event_id}: no ledger entry"
    await p.store.add_audit(actor=actor, action="forget", detail=detail, reason=reason, now=now)
    log.warning("order ledger: %s by %s (%s)", detail, actor, reason)
    return entry if forgotten else None


async def prune(p: Processor, *, older_than: datetime, actor: str, reason: str) -> int:
    """Delete finished deliveries last updated before older_than; the ledger and audit stay."""
    count = await p.store.prune_history(older_than=older_than)
    await p.store.add_audit(
        actor=actor, action="prune", detail=f"{count} finished deliveries last updated before {older_than.isoformat()} deleted",
        reason=reason, now=p.clock.now(),
    )
    return count


def preview(p: Processor, payload: Mapping[str, object]) -> RevelOrder | MappingFailure:
    """Map a decoded webhook (or bare event) payload without storing or sending anything."""
    if "webhook_trigger_type" in payload:
        envelope = WebhookEnvelope.from_payload(payload)
        if envelope.event is None:
            raise PayloadError("event", None, "is missing: the webhook carries no event")
        event = envelope.event
    else:
        event = TripleSeatEvent.from_payload(payload)
    return map_event(event, p.mapping, unmapped=p.settings.unmapped_items)
