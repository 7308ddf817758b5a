"""Idempotency keys: the delivery key of a raw body and the Revel reference of an event."""

from __future__ import annotations

import hashlib

ORDER_REFERENCE_PREFIX = "tripleseat-"


def delivery_key(body: bytes) -> str:
    """The sha256 hex digest of the raw webhook body; identical re-sends share it."""
    return hashlib.sha256(body).hexdigest()


def order_reference(event_id: str) -> str:
    """The stable Revel ``local_id`` for a TripleSeat event: ``tripleseat-<event id>``."""
    return f"{ORDER_REFERENCE_PREFIX}{event_id}"
