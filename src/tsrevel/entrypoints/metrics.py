"""Prometheus metrics: a per-app registry fed through the Metrics port, and gauges read from the store at
scrape time (the metered Revel and SendGrid wrappers are in adapters/metering.py).

Each container owns one PrometheusMetrics (and so one CollectorRegistry): nothing is registered in
prometheus_client's global registry, so tests can build many apps in one process.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tsrevel.domain.catchup import PollReport
from tsrevel.domain.deliveries import STATES
from tsrevel.domain.ports import (
    ACK_SECONDS,
    DEAD_LETTERS,
    PROCESSING_SECONDS,
    RETRIES,
    REVEL_CALL_SECONDS,
    REVEL_CALLS,
    SENDGRID_CALL_SECONDS,
    SENDGRID_CALLS,
)
from tsrevel.domain.processing import Processor
from tsrevel.domain.safety import SafetyFlags
from tsrevel.entrypoints.views import status_of

log = logging.getLogger("tsrevel.metrics")

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
    status = await status_of(processor)
    # No await between setting the gauges and rendering them: concurrent scrapes cannot interleave.
    metrics.set_store_state(status.counts, status.flags, max(status.oldest_pending_age_s or 0.0, 0.0))
    metrics.set_last_poll(status.last_poll)
    return metrics.render()
