"""Metered ports: an OrderGateway and a Mailer that time and count each call through the Metrics port.

Composition, so adapters and fakes stay unaware of metrics; the container wraps the configured
Revel and SendGrid adapters in these. Performs no I/O of its own.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

from tsrevel.domain.errors import GatewayError
from tsrevel.domain.orders import OrderRef, RevelOrder
from tsrevel.domain.ports import (
    REVEL_CALL_SECONDS,
    REVEL_CALLS,
    SENDGRID_CALL_SECONDS,
    SENDGRID_CALLS,
    EmailMessage,
    Mailer,
    Metrics,
    OrderGateway,
)

T = TypeVar("T")


def _outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, GatewayError):
        return exc.failure.kind
    return "error"


class MeteredOrderGateway:
    """An OrderGateway that times and counts each Revel call by outcome, then answers exactly as the inner one."""

    def __init__(self, inner: OrderGateway, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics

    async def find_order(self, establishment_id: int, reference: str, *, correlation_id: str) -> OrderRef | None:
        return await self._timed("find", self.inner.find_order(establishment_id, reference, correlation_id=correlation_id))

    async def create_order(self, order: RevelOrder, *, correlation_id: str) -> OrderRef:
        return await self._timed("create", self.inner.create_order(order, correlation_id=correlation_id))

    async def _timed(self, operation: str, call: Awaitable[T]) -> T:
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            return await call
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self._metrics.observe(REVEL_CALL_SECONDS, time.perf_counter() - started, operation=operation)
            self._metrics.count(REVEL_CALLS, operation=operation, outcome=_outcome(failure))


class MeteredMailer:
    """A Mailer that times and counts each send by outcome."""

    def __init__(self, inner: Mailer, metrics: Metrics) -> None:
        self.inner = inner
        self._metrics = metrics

    async def send(self, message: EmailMessage, *, outbox_id: int) -> None:
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            await self.inner.send(message, outbox_id=outbox_id)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            self._metrics.observe(SENDGRID_CALL_SECONDS, time.perf_counter() - started)
            self._metrics.count(SENDGRID_CALLS, outcome=_outcome(failure))


def metered_revel(inner: OrderGateway, metrics: Metrics) -> OrderGateway:
    return MeteredOrderGateway(inner, metrics)


def metered_mailer(inner: Mailer | None, metrics: Metrics) -> Mailer | None:
    """None stays None: without SendGrid, emails are recorded in the outbox, not sent."""
    return None if inner is None else MeteredMailer(inner, metrics)
