"""Taking a webhook in: verify its signature, store it durably (deduplicated by body hash), or store and run it at once."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs

from tsrevel.domain import deliveries as st
from tsrevel.domain.deliveries import Delivery, LedgerEntry, NewDelivery
from tsrevel.domain.errors import PayloadError, SignatureError
from tsrevel.domain.events import WebhookEnvelope
from tsrevel.domain.ids import delivery_key
from tsrevel.domain.ports import EmailMessage
from tsrevel.domain.signature import refusal as signature_refusal
from tsrevel.domain.signature import verify_signature

if TYPE_CHECKING:
    from tsrevel.domain.processing.processor import Processor

log = logging.getLogger("tsrevel.processing")


@attrs.frozen(kw_only=True)
class IntakeResult:
    """What the webhook endpoint answers: accepted, duplicate or rejected, with the delivery id."""

    status: str  # "accepted", "duplicate" or "rejected"
    delivery_id: int
    correlation_id: str
    reason: str | None = None  # why it was rejected


@attrs.frozen(kw_only=True)
class Trace:
    """Everything one delivery went through: the /test/webhook answer."""

    intake: IntakeResult
    delivery: Delivery
    order: LedgerEntry | None
    emails: tuple[EmailMessage, ...]


def verify(body: bytes, signature: str | None, *, secret: str | None) -> None:
    """Raise SignatureError unless the body is signed with secret (when one is set)."""
    if secret is None:
        return
    if not verify_signature(body, signature, secret=secret):
        raise SignatureError(signature_refusal(signature))


async def accept(
    p: Processor, body: bytes, *, signature: str | None, correlation_id: str, header_names: tuple[str, ...] = ()
) -> IntakeResult:
    """Verify, then store the delivery durably (deduplicated by body hash); no outside call."""
    verify(body, signature, secret=p.settings.signing_secret)
    return await store_delivery(p, body, correlation_id=correlation_id, header_names=header_names, wake=True)


async def run_now(p: Processor, body: bytes, *, correlation_id: str) -> IntakeResult:
    """Store a payload and process it at once (every flag honoured): the /test/webhook use case.

    An invalid payload raises PayloadError and is not stored. A payload already delivered
    answers with the existing delivery's intake: nothing is done twice. The entrypoint reads
    the trace (``entrypoints/views.py: settled_trace``), waiting for a worker that claimed it first.
    """
    WebhookEnvelope.from_json_bytes(body)
    result = await store_delivery(p, body, correlation_id=correlation_id, header_names=(), wake=False)
    if result.status == "accepted":
        await p.process_now(result.delivery_id)
    return result


async def store_delivery(
    p: Processor, body: bytes, *, correlation_id: str, header_names: tuple[str, ...], wake: bool
) -> IntakeResult:
    """Store the body as a delivery: queued, or rejected with the reason when it cannot be read; a duplicate stores nothing."""
    now = p.clock.now()
    state, error, trigger, event_id, version = st.QUEUED, None, None, None, None
    try:
        envelope = WebhookEnvelope.from_json_bytes(body)
        trigger = envelope.trigger_type
        event_id = envelope.event.id if envelope.event else None
        if envelope.event is not None and trigger in p.settings.order_policy.order_triggers:
            # The version this webhook brings, so the catch-up poll does not bring it again
            # (a deletion is never a version: the poll cannot see one).
            version = st.event_version(event_id, envelope.event.updated_at)
    except PayloadError as exc:
        state, error = st.REJECTED, str(exc)
    delivery, created = await p.store.add_delivery(
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
    p.crash("after_store")
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
    if wake and created and state == st.QUEUED:
        p.wake_workers()
    return IntakeResult(
        status=status, delivery_id=delivery.id, correlation_id=correlation_id, reason=delivery.last_error if status == "rejected" else None
    )
