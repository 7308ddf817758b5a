"""The delivery pass: one claimed delivery taken through decide -> hold/skip/ignore/withdraw/order, ending in one Verdict the store commits."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

import attrs

from tsrevel.domain import deliveries as st
from tsrevel.domain import notifications
from tsrevel.domain.changes import event_changes
from tsrevel.domain.deliveries import Delivery, LedgerEntry
from tsrevel.domain.errors import GatewayError, PayloadError, StoreUnavailable
from tsrevel.domain.events import TripleSeatEvent, WebhookEnvelope
from tsrevel.domain.mapping import MappingConfig, MappingFailure, map_event, money_reading
from tsrevel.domain.orders import RevelOrder
from tsrevel.domain.verdict import Verdict
from tsrevel.domain.ports import BUSY, DEAD_LETTERS, EXISTING, RETRIES
from tsrevel.domain.safety import Hold, Ignore, Process, Skip, Withdraw, decide
from tsrevel.domain.window import defer_until, deferred_note, window_opens_at

if TYPE_CHECKING:
    from datetime import datetime

    from tsrevel.domain.processing.processor import Processor

log = logging.getLogger("tsrevel.processing")

# A delivery that finds another one placing its event's order waits this long before looking again.
BUSY_RECHECK_S = 2.0
# A delivery interrupted by a store outage is looked at again this soon (when the store can record that).
STORE_RECHECK_S = 5.0
# The store's named value that remembers the latest delivery that deleted (or lost) an event with no order.
WITHDRAWN_VALUE = "event-withdrawn:{event_id}"


@attrs.define(kw_only=True)
class DeliveryPass:
    """One pass of one claimed delivery; every store write is fenced by the claim's lease token."""

    processor: Processor
    delivery: Delivery
    mapping: MappingConfig  # fixed for the pass
    left_in: str = "unfinished"  # the state this pass left the delivery in, for metrics

    @property
    def token(self) -> int:
        return self.delivery.lease_token

    def _log(self, level: int, msg: str, *args: object) -> None:
        log.log(level, msg, *args, extra={"delivery_id": self.delivery.id, "event_id": self.delivery.event_id})

    async def _note(self, note: str, *, now: datetime | None = None) -> bool:
        """Add a line to the delivery's timeline while the lease holds; False when it was lost."""
        p = self.processor
        return await p.store.add_note(self.delivery.id, token=self.token, now=now or p.clock.now(), note=note)

    async def settle(self, outcome: Verdict) -> bool:
        """Commit the pass's verdict (fenced by the lease); False when the lease was lost and the new owner decides."""
        p, state = self.processor, outcome.state
        ok = await p.store.finish(self.delivery.id, token=self.token, now=p.clock.now(), outcome=outcome)
        if ok:
            self.left_in = state
            if state == st.DEAD:
                p.metrics.count(DEAD_LETTERS, kind="delivery")
            level = logging.WARNING if state in (st.DEAD, st.NEEDS_ATTENTION) else logging.INFO
            self._log(level, "delivery %s -> %s: %s", self.delivery.id, state, outcome.note)
        else:
            self.left_in = "lease_lost"
            self._log(logging.WARNING, "delivery %s: lease lost before '%s' could be recorded; the new owner decides", self.delivery.id, state)
        return ok

    async def run(self) -> None:
        """Read the stored body, decide on it with the flags in force, and act on the decision."""
        try:
            envelope = WebhookEnvelope.from_json_bytes(self.delivery.body)
        except PayloadError as exc:
            await self.settle(Verdict.rejected(f"unusable payload: {exc}", error=str(exc)))
            return
        policy = self.processor.settings.order_policy
        flags = await self.processor.flags()
        decision = decide(envelope, flags, policy)
        if isinstance(decision, Process) and self.processor.settings.order_window_hours is not None:
            assert envelope.event is not None
            current = await self.apply_order_window(envelope.event)
            if current is None:
                return  # deferred, or re-reading the event failed (recorded)
            if current is not envelope.event:  # re-read when the window opened: decide on the event as it is now
                envelope = attrs.evolve(envelope, event=current)
                decision = decide(envelope, flags, policy)
        if isinstance(decision, Hold):
            await self.settle(Verdict.held(decision.reason))
        elif isinstance(decision, Skip):
            await self.settle(Verdict.skipped(decision.reason))
        elif isinstance(decision, Ignore):
            await self.settle(Verdict.ignored(decision.reason))
        elif isinstance(decision, Withdraw):
            assert envelope.event is not None  # decide() only withdraws events
            await self.withdraw(envelope.event, decision.reason)
        else:
            assert envelope.event is not None and isinstance(decision, Process)
            await self.order_event(envelope.event, dry_run=decision.dry_run)

    async def apply_order_window(self, event: TripleSeatEvent) -> TripleSeatEvent | None:
        """Defer an event that starts beyond ORDER_WINDOW_HOURS; once a deferred one's window opens, re-read it.

        Returns the event to go on with, or None when the delivery was deferred (state retrying,
        attempts unchanged) or re-reading it failed (recorded like any TripleSeat API failure).
        """
        p = self.processor
        hours, zone, now = p.settings.order_window_hours, self.mapping.timezone, p.clock.now()
        assert hours is not None
        later = defer_until(event, now=now, window_hours=hours, site_zone=zone)
        if later is not None:
            await self.settle(Verdict.retry_at(later, deferred_note(later, hours)))
            return None
        opened = window_opens_at(event, window_hours=hours, site_zone=zone)
        if opened is None or self.delivery.received_at >= opened or p.events is None:
            return event  # never deferred (or nothing to re-read it from): the stored body stands
        if await self.withdrawn_by_a_later_delivery(event.id):
            return None
        # Deferred for a while: order the event as it is now, not as it was when the webhook came.
        try:
            current = await p.events.fetch_event(event.id, correlation_id=self.delivery.correlation_id)
        except GatewayError as exc:
            await self.gateway_failed(exc, event_id=event.id, what="re-reading the deferred event from TripleSeat")
            return None
        except PayloadError as exc:
            await self.give_up(f"TripleSeat API answered an unusable event: {exc}", event_id=event.id)
            return None
        await self._note("order window open: re-read the event from the TripleSeat API", now=now)
        later = defer_until(current, now=now, window_hours=hours, site_zone=zone)
        if later is not None:  # the event moved further out meanwhile
            await self.settle(Verdict.retry_at(later, deferred_note(later, hours)))
            return None
        return current

    async def withdrawn_by_a_later_delivery(self, event_id: str) -> bool:
        """True (and the delivery ignored) when a later delivery deleted or lost the event before any order existed."""
        marker = _withdrawn_marker(await self.processor.store.get_value(WITHDRAWN_VALUE.format(event_id=event_id)))
        if marker is None or marker[0] <= self.delivery.id:
            return False  # never withdrawn, or this delivery came after (the event was restored): go on
        by, why = marker
        await self.settle(Verdict.ignored(f"event {event_id} was {why} by a later delivery ({by}) before any order existed: no order"))
        return True

    async def withdraw(self, event: TripleSeatEvent, reason: str) -> None:
        """The event was deleted or marked lost: remember it when no order exists, else ask ops to void the order."""
        p = self.processor
        entry = await p.store.get_order(event.id)
        why = "deleted" if "deleted" in reason else "marked LOST"
        if entry is None or entry.state != st.LEDGER_CREATED:
            # Remember it: an older delivery still waiting (deferred, retrying, dead then replayed)
            # must not order the event afterwards.
            key = WITHDRAWN_VALUE.format(event_id=event.id)
            marker = _withdrawn_marker(await p.store.get_value(key))
            if marker is None or self.delivery.id > marker[0]:
                await p.store.put_value(key, json.dumps({"delivery_id": self.delivery.id, "why": why}), now=p.clock.now())
            await self.settle(Verdict.ignored(f"{reason}; no Revel order exists, nothing to void"))
            return
        email = notifications.void_request(self.delivery, event, _ref_text(entry), why, to=p.settings.email_to)
        note = f"{reason}; asked operations to void {entry.reference}"
        await self.settle(Verdict.needs_attention(note, order_reference=entry.reference, emails=(email,)))

    async def order_event(self, event: TripleSeatEvent, *, dry_run: bool) -> None:
        """Compare with the event's order when it has one; otherwise map it and place it (or, in dry run, only say what)."""
        p = self.processor
        entry = await p.store.get_order(event.id)
        if entry is None and await self.withdrawn_by_a_later_delivery(event.id):
            return
        ordered = entry is not None and entry.state == st.LEDGER_CREATED
        # Enrich before comparing too: an update without documents must not read as "items removed".
        if not event.line_items and p.events is not None:
            try:
                event = await p.events.fetch_event(event.id, correlation_id=self.delivery.correlation_id)
                await self._note("fetched the event's line items from the TripleSeat API")
            except (GatewayError, PayloadError) as exc:
                if not ordered or (isinstance(exc, GatewayError) and exc.is_transient):
                    if isinstance(exc, GatewayError):
                        await self.gateway_failed(exc, event_id=event.id, what="fetching the event from TripleSeat")
                    else:
                        await self.give_up(f"TripleSeat API answered an unusable event: {exc}", event_id=event.id)
                    return
                # The order exists: compare what the webhook carries rather than report a failed order.
                await self._note(f"could not fetch the event's line items ({exc}); compared what the webhook carries")
        if ordered:
            assert entry is not None
            await self.compare_with_order(event, entry)
            return
        mapped = map_event(event, self.mapping, unmapped=p.settings.unmapped_items, received_at=self.delivery.received_at)
        if isinstance(mapped, MappingFailure):
            email = notifications.mapping_failure(self.delivery, mapped, to=p.settings.email_to)
            await self.settle(Verdict.dead(mapped.describe(), attempts=self.delivery.attempts + 1, emails=(email,)))
            return
        # The money as we read it, as evidence; what ops must know goes on the delivery's timeline too.
        self._log(logging.INFO, "delivery %s: invoice of event %s: %s (read: %s)", self.delivery.id, event.id, mapped.arithmetic, money_reading(event, self.mapping))
        for warning in mapped.warnings:
            self._log(logging.WARNING, "delivery %s: %s", self.delivery.id, warning)
            await self._note(warning)
        snapshot = json.dumps(mapped.to_snapshot(), sort_keys=True)
        if dry_run:
            email = notifications.dry_run(self.delivery, mapped, to=p.settings.email_to)
            await self.settle(Verdict.dry_run(
                f"DRY_RUN: would create {mapped.local_id} (final total {mapped.final_total}, remaining due {mapped.remaining_due}); nothing written to Revel",
                result=snapshot, emails=(email,),
            ))
            return
        await self.place_order(event, mapped, snapshot)

    async def place_order(self, event: TripleSeatEvent, order: RevelOrder, snapshot: str) -> None:
        """Take the event's order slot, look the order up in Revel by reference, create it only if absent, record it."""
        p, now = self.processor, self.processor.clock.now()
        reservation = await p.store.reserve_order(
            event_id=event.id, reference=order.local_id, establishment_id=order.establishment_id,
            delivery_id=self.delivery.id, token=self.token, now=now,
        )
        if reservation.outcome == EXISTING:
            assert reservation.entry is not None
            await self.compare_with_order(event, reservation.entry)
            return
        if reservation.outcome == BUSY:
            owner = reservation.entry.delivery_id if reservation.entry else "another worker"
            await self.settle(Verdict.retry_at(
                now + timedelta(seconds=BUSY_RECHECK_S), f"delivery {owner} is placing this event's order; looking again shortly",
                result=snapshot,
            ))
            return
        # We hold the event's order slot. Flags are read again right before each side effect.
        if not await self.still_clear_to_act(event.id, f"looking up {order.local_id} in Revel (establishment {order.establishment_id})"):
            return
        cid = self.delivery.correlation_id
        try:
            found = await p.revel.find_order(order.establishment_id, order.local_id, correlation_id=cid)
            if found is None:
                if not await self.still_clear_to_act(
                    event.id,
                    f"creating {order.local_id} in Revel: {len(order.items)} item(s), final total {order.final_total}, "
                    f"{len(order.recorded_payments)} payment(s), remaining due {order.remaining_due}",
                ):
                    return
                p.crash("before_revel_call")
                ref = await p.revel.create_order(order, correlation_id=cid)
                p.crash("after_revel_2xx")
            else:
                ref = found
        except GatewayError as exc:
            await self.gateway_failed(exc, event_id=event.id, what="calling Revel", result=snapshot)
            return
        verb = "found existing" if found is not None else "created"
        email = notifications.order_created(self.delivery, order, ref, found=found is not None, to=p.settings.email_to)
        ok = await p.store.complete_order(
            event_id=event.id, delivery_id=self.delivery.id, token=self.token, ref=ref, snapshot=snapshot,
            now=p.clock.now(), note=f"{verb} Revel order {ref.order_id} ({ref.local_id or order.local_id})", emails=[email],
        )
        self.left_in = st.DONE if ok else "lease_lost"
        if ok:
            self._log(logging.INFO, "delivery %s -> done: %s Revel order %s for event %s", self.delivery.id, verb, ref.order_id, event.id)
        else:
            self._log(logging.WARNING, "delivery %s: lease lost after Revel answered; the new owner will find order %s by reference", self.delivery.id, ref.order_id)

    async def still_clear_to_act(self, event_id: str, note: str) -> bool:
        """Re-check the lease and the flags right before a side effect; stand down when either says no.

        The lease note is written (and synced) first, so the flags read is the last thing before
        the Revel call: a kill switch flipped while the note was committing is still obeyed (P5).
        """
        if not await self._note(note):
            self._log(logging.WARNING, "delivery %s: lease lost; standing down before the side effect", self.delivery.id)
            return False
        flags = await self.processor.flags()
        if not flags.enable_connector:
            await self.settle(Verdict.held("ENABLE_CONNECTOR switched off before the Revel call: held for replay", release_event_id=event_id))
            return False
        if flags.dry_run:
            await self.settle(Verdict.dry_run("DRY_RUN switched on before the Revel call: nothing written", release_event_id=event_id))
            return False
        return True

    async def compare_with_order(self, event: TripleSeatEvent, entry: LedgerEntry) -> None:
        """The event already has its order: record this delivery, and tell ops if the event changed."""
        p = self.processor
        ordered = json.loads(entry.snapshot) if entry.snapshot else {}
        changes = event_changes(ordered, event, self.mapping, unmapped=p.settings.unmapped_items) if ordered else []
        ref_text = _ref_text(entry)
        if not changes:
            await self.settle(Verdict.done(f"order {ref_text} already exists; no change", order_reference=entry.reference))
            return
        email = notifications.needs_attention(self.delivery, event, ref_text, changes, to=p.settings.email_to)
        await self.settle(Verdict.needs_attention(
            f"event changed after order {ref_text}: " + "; ".join(changes), order_reference=entry.reference, emails=(email,)
        ))

    # ---- the verdicts on a failure ------------------------------------------------------------

    async def gateway_failed(self, exc: GatewayError, *, event_id: str, what: str, result: str | None = None) -> None:
        """A call to Revel or TripleSeat failed: retried when transient (and attempts remain), else dead."""
        message = f"{what}: {exc.failure.kind} error: {exc}"
        if not exc.is_transient:
            await self.give_up(message, event_id=event_id)
            return
        await self.retry_or_give_up(message, event_id=event_id, retry_after=exc.failure.retry_after, result=result)

    async def internal_error(self, exc: Exception) -> None:
        """Retry an unexpected error with backoff; dead (with the failure email) once the attempts are used up."""
        reason = f"internal error: {type(exc).__name__}: {exc}"[:500]
        await self.retry_or_give_up(reason, event_id=self.delivery.event_id or "")

    async def retry_or_give_up(
        self, reason: str, *, event_id: str, retry_after: datetime | None = None, result: str | None = None
    ) -> None:
        """Count a failed attempt: schedule the next one with backoff, or give up once the attempts are used up."""
        p = self.processor
        attempts = self.delivery.attempts + 1
        policy = p.settings.retry
        if policy.exhausted(attempts):
            await self.give_up(f"{reason} (gave up after {attempts} attempts)", event_id=event_id)
            return
        at = policy.next_attempt_at(attempts, now=p.clock.now(), unit_random=p.unit_random(), retry_after=retry_after)
        p.metrics.count(RETRIES, kind="delivery")
        await self.settle(Verdict.retry_at(
            at, f"attempt {attempts} failed ({reason}); next attempt at {at.isoformat()}", error=reason, attempts=attempts, result=result
        ))

    async def give_up(self, reason: str, *, event_id: str) -> None:
        """Dead after this attempt, with the failure email; the event's order slot is released for a replay."""
        email = notifications.failure(self.delivery, reason, to=self.processor.settings.email_to, event_id=event_id or None)
        await self.settle(Verdict.dead(
            reason, attempts=self.delivery.attempts + 1, emails=(email,), release_event_id=event_id or None
        ))

    async def store_unavailable(self, exc: StoreUnavailable) -> None:
        """Leave the delivery to be retried: rescheduled soon if the store can record that, else its lease runs out."""
        self.left_in = "store_unavailable"
        try:
            at = self.processor.clock.now() + timedelta(seconds=STORE_RECHECK_S)
            await self.settle(Verdict.retry_at(at, f"the store was unavailable ({exc.reason}); looking again at {at.isoformat()}"))
        except StoreUnavailable:
            self._log(logging.DEBUG, "delivery %s: store unavailable; it is taken again when its lease runs out", self.delivery.id)


def _withdrawn_marker(raw: str | None) -> tuple[int, str] | None:
    """(delivery id, "deleted" or "marked LOST") from the stored marker; None when absent or unreadable."""
    try:
        marker = json.loads(raw) if raw else None
        return (int(marker["delivery_id"]), str(marker["why"])) if isinstance(marker, dict) else None
    except (ValueError, TypeError, KeyError):
        return None


def _ref_text(entry: LedgerEntry) -> str:
    return f"{entry.reference} (Revel id {entry.revel_order_id})" if entry.revel_order_id else entry.reference
