"""Prometheus metrics: gauges read from the store at scrape time, rendered in the text format."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from tsrevel.domain.deliveries import STATES
from tsrevel.domain.processing import Processor


async def render_metrics(processor: Processor) -> str:
    """A fresh registry per scrape, so replicas and tests never share global metric state."""
    registry = CollectorRegistry()
    by_state = Gauge("tsrevel_deliveries", "Deliveries by state", ["state"], registry=registry)
    counts = await processor.store.count_by_state()
    for state in STATES:
        by_state.labels(state=state).set(counts.get(state, 0))
    flags = await processor.flags()
    Gauge("tsrevel_flag_enable_connector", "1 when the connector is enabled", registry=registry).set(int(flags.enable_connector))
    Gauge("tsrevel_flag_dry_run", "1 when DRY_RUN is on", registry=registry).set(int(flags.dry_run))
    oldest = await processor.store.oldest_pending()
    age = (processor.clock.now() - oldest).total_seconds() if oldest else 0.0
    Gauge("tsrevel_oldest_pending_age_seconds", "Age of the oldest delivery still to be processed", registry=registry).set(age)
    return generate_latest(registry).decode()
