"""The worker's step: claim a due delivery (or a named one) and run its DeliveryPass, timed, under its correlation id."""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING

from tsrevel.domain.correlation import current_correlation_id, current_delivery_id
from tsrevel.domain.deliveries import Delivery
from tsrevel.domain.errors import StoreUnavailable
from tsrevel.domain.ports import PROCESSING_SECONDS
from tsrevel.domain.processing.delivery_pass import DeliveryPass

if TYPE_CHECKING:
    from tsrevel.domain.processing.processor import Processor

log = logging.getLogger("tsrevel.processing")


async def process_next(p: Processor) -> Delivery | None:
    """Claim the next due delivery and take it as far as it can go; None when nothing was due."""
    await p.follow_mapping_reload()
    now = p.clock.now()
    delivery = await p.store.claim_delivery(now=now, lease_until=now + timedelta(seconds=p.settings.lease_s))
    if delivery is None:
        return None
    await process_claimed(p, delivery)
    return delivery


async def process_now(p: Processor, delivery_id: int) -> None:
    """Claim this delivery and take it as far as it can go now; nothing when a worker holds it (or it is not due)."""
    now = p.clock.now()
    claimed = await p.store.claim_delivery(
        now=now, lease_until=now + timedelta(seconds=p.settings.lease_s), delivery_id=delivery_id
    )
    if claimed is not None:
        await process_claimed(p, claimed)


async def process_claimed(p: Processor, delivery: Delivery) -> None:
    """Run one claimed delivery through decide -> hold/skip/ignore/withdraw/process."""
    cid_token = current_correlation_id.set(delivery.correlation_id)
    did_token = current_delivery_id.set(delivery.id)
    # One mapping for the whole pass, even if a reload lands meanwhile.
    this_pass = DeliveryPass(processor=p, delivery=delivery, mapping=p.mapping)
    started = time.perf_counter()
    try:
        p.crash("after_claim")
        await this_pass.run()
    except StoreUnavailable as exc:
        # Not this delivery's fault, and no verdict on it: it stays to be retried (never dead,
        # never a failure email), whatever it had done in Revel is found by reference next time.
        await this_pass.store_unavailable(exc)
    except Exception as exc:
        # An unexpected error is retried like a transient failure, and only after the usual
        # attempts goes dead (R21: one poison delivery must not stall the queue); the
        # traceback goes to the log.
        log.exception("delivery %s: unexpected error", delivery.id)
        await this_pass.internal_error(exc)
    finally:
        p.metrics.observe(PROCESSING_SECONDS, time.perf_counter() - started, outcome=this_pass.left_in)
        current_correlation_id.reset(cid_token)
        current_delivery_id.reset(did_token)
