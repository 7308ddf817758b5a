"""Prometheus metrics: a per-app registry fed through the Metrics port, metered Revel and SendGrid wrappers, and
gauges read from the store at scrape time.

Each container owns one PrometheusMetrics (and so one CollectorRegistry): nothing is registered in
prometheus_client's global registry, so tests can build many apps in one process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Mapping
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tsrevel.domain.catchup import PollReport, last_poll
from tsrevel.domain.deliveries import STATES
from tsrevel.domain.errors import GatewayError
from tsrevel.domain.orders import OrderRef, RevelOrder
from tsrevel.domain.ports import (
    ACK_SECONDS,
    DEAD_LETTERS,
    PROCESSING_SECONDS,
    RETRIES,
    REVEL_CALL_SECONDS,
    REVEL_CALLS,
    SENDGRID_CALL_SECONDS,
    SENDGRID_CALLS,
    EmailMessage,
    Mailer,
    Metrics,
    OrderGateway,
)
from tsrevel.domain.processing import Processor
from tsrevel.domain.safety import SafetyFlags

log = logging.getLogger("tsrevel.metrics")

T = TypeVar("T")

# Seconds. An ack is a verify plus one durable insert: milliseconds; a pass may wait on Revel for REVEL_TIMEOUT_S.
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OUTCOMES = ("ok", "transient", "permanent", "credentials", "error")


class PrometheusMetrics:
    """The Metrics port over a CollectorRegistry of its own; recording never raises into the caller."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._histograms: dict[str, Histogram] = {
            ACK_SECONDS: Histogram(
                "tsrevel_webhook_ack_seconds", "Time from a webhook's arrival to its answer (verify and durable store)",
                ["status"], buckets=ACK_BUCKETS, registry=r,
            ),
            PROCESSING_SECONDS: Histogram(
                "tsrevel_processing_seconds", "Time one worker pass spent on a delivery, by the state it left it in",
                ["outcome"], buckets=CALL_BUCKETS, registry=r,
            ),
            REVEL_CALL_SECONDS: Histogram(
                "tsrevel_revel_call_seconds", "Revel API call latency", ["operation"], buckets=CALL_BUCKETS, registry=r,
            ),
            SENDGRID_CALL_SECONDS: Histogram(
                "tsrevel_sendgrid_call_seconds", "SendGrid send latency", buckets=CALL_BUCKETS, registry=r,
            ),
        }
        self._counters: dict[str, Counter] = {
            REVEL_CALLS: Counter("tsrevel_revel_calls", "Revel API calls by operation and outcome", ["operation", "outcome"], registry=r),
            SENDGRID_CALLS: Counter("tsrevel_sendgrid_calls", "SendGrid sends by outcome", ["outcome"], registry=r),
            RETRIES: Counter("tsrevel_retries", "Retries scheduled after a transient failure", ["kind"], registry=r),
            DEAD_LETTERS: Counter("tsrevel_dead_letters", "Deliveries gone dead and emails failed for good", ["kind"], registry=r),
        }
        # Series that alerts use exist from the start at 0, so rate() and absent() behave.
        for kind in ("delivery", "email"):
            self._counters[RETRIES].labels(kind=kind)
            self._counters[DEAD_LETTERS].labels(kind=kind)
        for outcome in OUTCOMES:
            self._counters[SENDGRID_CALLS].labels(outcome=outcome)
            for operation in ("find", "create"):
                self._counters[REVEL_CALLS].labels(operation=operation, outcome=outcome)
        self._by_state = Gauge("tsrevel_deliveries", "Deliveries by state", ["state"], registry=r)
        self._enabled = Gauge("tsrevel_flag_enable_connector", "1 when the connector is enabled", registry=r)
        self._dry_run = Gauge("tsrevel_flag_dry_run", "1 when DRY_RUN is on", registry=r)
        self._oldest = Gauge("tsrevel_oldest_pending_age_seconds", "Age of the oldest delivery still to be processed", registry=r)
        # The last catch-up poll (any replica), read from the store at scrape time; 0 before the first.
        self._poll_at = Gauge("tsrevel_catchup_last_poll_timestamp_seconds", "When the last catch-up poll finished (unix time)", registry=r)
        self._poll_counts = Gauge(
            "tsrevel_catchup_last_poll_events", "The last catch-up poll's events: seen, already_seen, deliveries_created, errors",
            ["what"], registry=r,
        )

    def observe(self, name: str, value: float, **labels: str) -> None:
        try:
            histogram = self._histograms[name]
            (histogram.labels(**labels) if labels else histogram).observe(value)
        except Exception:  # a metrics mistake must never fail a delivery
            log.exception("metrics: cannot observe %s %r", name, labels)

    def count(self, name: str, amount: float = 1.0, **labels: str) -> None:
        try:
            counter = self._counters[name]
            (counter.labels(**labels) if labels else counter).inc(amount)
        except Exception:  # a metrics mistake must never fail a delivery
            log.exception("metrics: cannot count %s %r", name, labels)

    def set_store_state(self, counts: Mapping[str, int], flags: SafetyFlags, oldest_pending_age_s: float) -> None:
        """The scrape-time gauges: deliveries by state, flags in force, oldest pending age."""
        for state in STATES:
            self._by_state.labels(state=state).set(counts.get(state, 0))
        self._enabled.set(int(flags.enable_connector))
        self._dry_run.set(int(flags.dry_run))
        self._oldest.set(oldest_pending_age_s)

    def set_last_poll(self, report: PollReport | None) -> None:
        """The scrape-time gauges of the last catch-up poll."""
        self._poll_at.set(report.finished_at.timestamp() if report else 0)
        for what, value in (
            ("seen", report.events_seen if report else 0),
            ("already_seen", report.already_seen if report else 0),
            ("deliveries_created", report.deliveries_created if report else 0),
            ("errors", len(report.errors) if report else 0),
        ):
            self._poll_counts.labels(what=what).set(value)

    def render(self) -> str:
        return generate_latest(self.registry).decode()


async def render_metrics(processor: Processor) -> str:
    """The Prometheus text for GET /metrics: the processor's own registry with the store's gauges refreshed."""
    metrics = processor.metrics if isinstance(processor.metrics, PrometheusMetrics) else PrometheusMetrics()
    counts = await processor.store.count_by_state()
    flags = await processor.flags()
    oldest = await processor.store.oldest_pending()
    age = (processor.clock.now() - oldest).total_seconds() if oldest else 0.0
    poll = await last_poll(processor)
    # No await between setting the gauges and rendering them: concurrent scrapes cannot interleave.
    metrics.set_store_state(counts, flags, max(age, 0.0))
    metrics.set_last_poll(poll)
    return metrics.render()


# ---- metered ports: composition, so adapters and fakes stay unaware of metrics ---------------------


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
