"""JSON views of domain records, as the admin API answers them (deliveries, ledger entries, polls, the mapping)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from tsrevel.domain import catchup
from tsrevel.domain.deliveries import Delivery, LedgerEntry
from tsrevel.domain.processing import MappingStatus


def iso(value: datetime | None) -> str | None:
    """A moment as ISO 8601, or None."""
    return value.isoformat() if value else None


def delivery_view(d: Delivery, *, full: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": d.id,
        "state": d.state,
        "event_id": d.event_id,
        "trigger_type": d.trigger_type,
        "correlation_id": d.correlation_id,
        "received_at": iso(d.received_at),
        "updated_at": iso(d.updated_at),
        "attempts": d.attempts,
        "next_attempt_at": iso(d.next_attempt_at),
        "last_error": d.last_error,
        "order_reference": d.order_reference,
        "source": d.source,  # webhook, sync or catchup
    }
    if full:
        view["result"] = json.loads(d.result) if d.result else None
        view["timeline"] = [{"at": iso(t.at), "state": t.state, "note": t.note} for t in d.timeline]
        view["body"] = d.body.decode("utf-8", "replace")
    return view


def order_view(entry: LedgerEntry | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {
        "event_id": entry.event_id,
        "reference": entry.reference,
        "establishment_id": entry.establishment_id,
        "state": entry.state,
        "revel_order_id": entry.revel_order_id,
        "revel_uri": entry.revel_uri,
        "delivery_id": entry.delivery_id,
        "created_at": iso(entry.created_at),
    }


def poll_view(report: catchup.PollReport | None) -> dict[str, Any] | None:
    """The last catch-up poll as /admin/status shows it."""
    if report is None:
        return None
    return {
        "finished_at": iso(report.finished_at), "started_at": iso(report.started_at), "since": report.since.isoformat(),
        "events_seen": report.events_seen, "already_seen": report.already_seen,
        "deliveries_created": report.deliveries_created, "delivery_ids": list(report.delivery_ids),
        "errors": list(report.errors), "holder": report.holder,
    }


def mapping_view(status: MappingStatus) -> dict[str, Any]:
    return {
        "file": status.file,
        "loaded_at": iso(status.loaded_at),
        "generation": status.generation,
        "locations": status.locations,
        "sites": status.sites,
        "products": status.products,
    }
