"""The email outbox: send the next due email, retry a transient failure with backoff, give up on a permanent one."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from tsrevel.domain.correlation import current_correlation_id
from tsrevel.domain.errors import GatewayError
from tsrevel.domain.ports import DEAD_LETTERS, EMAIL_FAILED, EMAIL_RETRYING, EMAIL_SENT, EMAIL_UNSENT, RETRIES, OutboxEmail

if TYPE_CHECKING:
    from tsrevel.domain.processing.processor import Processor

log = logging.getLogger("tsrevel.processing")


async def send_next_email(p: Processor) -> bool:
    """Send the next due email from the outbox; False when there was none (or the switch is off)."""
    flags = await p.flags()
    if not flags.enable_connector:
        return False  # the kill switch holds emails too: zero calls to SendGrid
    now = p.clock.now()
    email = await p.store.claim_email(now=now, lease_until=now + timedelta(seconds=p.settings.lease_s))
    if email is None:
        return False
    cid_token = current_correlation_id.set(email.message.correlation_id)
    try:
        if p.mailer is None:
            await p.store.finish_email(email.id, token=email.lease_token, state=EMAIL_UNSENT, now=now)
            log.info("email %s recorded, not sent (no SENDGRID_API_KEY)", email.id, extra={"email_kind": email.message.kind})
            return True
        p.crash("before_email")
        try:
            await p.mailer.send(email.message, outbox_id=email.id)
        except GatewayError as exc:
            await _send_failed(p, email, exc)
            return True
        await p.store.finish_email(
            email.id, token=email.lease_token, state=EMAIL_SENT, now=p.clock.now(), attempts=email.attempts + 1
        )
        p.crash("after_email")
        log.info("email %s sent (%s)", email.id, email.message.kind, extra={"email_kind": email.message.kind})
        return True
    finally:
        current_correlation_id.reset(cid_token)


async def _send_failed(p: Processor, email: OutboxEmail, exc: GatewayError) -> None:
    """Retry a transient failure while attempts remain; otherwise the email failed for good."""
    attempts = email.attempts + 1
    policy = p.settings.email_retry
    if not exc.is_transient or policy.exhausted(attempts):
        await p.store.finish_email(
            email.id, token=email.lease_token, state=EMAIL_FAILED, now=p.clock.now(), error=str(exc), attempts=attempts
        )
        log.error("email %s failed for good: %s", email.id, exc)
        p.metrics.count(DEAD_LETTERS, kind="email")
        return
    at = policy.next_attempt_at(attempts, now=p.clock.now(), unit_random=p.unit_random(), retry_after=exc.failure.retry_after)
    await p.store.finish_email(
        email.id, token=email.lease_token, state=EMAIL_RETRYING, now=p.clock.now(),
        error=str(exc), attempts=attempts, next_attempt_at=at,
    )
    log.warning("email %s will be retried at %s: %s", email.id, at.isoformat(), exc)
    p.metrics.count(RETRIES, kind="email")
