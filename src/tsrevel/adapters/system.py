"""Small adapters for the machine itself (the wall clock) and for a Revel account that is not configured."""

from __future__ import annotations

from datetime import datetime, timezone

from tsrevel.domain.errors import GatewayError
from tsrevel.domain.orders import OrderRef, RevelOrder


class SystemClock:
    """The real time, timezone-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class UnconfiguredRevel:
    """Stands in for Revel while REVEL_* is unset: any call is a credentials error operators can act on."""

    _MESSAGE = "Revel is not configured: set REVEL_BASE_URL, REVEL_API_KEY and REVEL_API_SECRET"

    async def find_order(self, establishment_id: int, reference: str, *, correlation_id: str) -> OrderRef | None:
        raise GatewayError.credentials(self._MESSAGE)

    async def create_order(self, order: RevelOrder, *, correlation_id: str) -> OrderRef:
        raise GatewayError.credentials(self._MESSAGE)
