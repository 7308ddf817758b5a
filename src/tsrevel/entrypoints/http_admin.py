"""The admin and test endpoints (bearer token): status, flags, deliveries, replay, sync, mapping reload, test and preview.

Each one calls a Processor use case with actor ``admin-api``; request bodies are read as raw JSON
objects here (json_object) and refused with a PayloadError naming the field, which the one error
map of http_errors answers with 422.
"""

from __future__ import annotations

import hmac
import json
from typing import Annotated, Any

import attrs
from litestar import Request, Router, delete, get, post, put
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromQuery, PathParameter, QueryParameter

from tsrevel.domain import catchup
from tsrevel.domain import deliveries as st
from tsrevel.domain.errors import InvalidRequest, PayloadError
from tsrevel.domain.events import decode_json
from tsrevel.domain.mapping import MappingFailure
from tsrevel.domain.orders import RevelOrder
from tsrevel.domain.processing import Processor
from tsrevel.domain.text import audit_reason
from tsrevel.entrypoints.http_errors import AdminForbidden, AdminUnauthorized, BadQuery, correlation_id
from tsrevel.entrypoints.http_openapi import (
    BEARER_SCHEME,
    FLAGS_BODY,
    REASON_BODY,
    REPLAY_BODY,
    SYNC_BODY,
    WEBHOOK_BODY,
    documented,
)
from tsrevel.entrypoints.http_views import delivery_view, iso, mapping_view, order_view, poll_view
from tsrevel.entrypoints.settings import Settings
from tsrevel.entrypoints.views import FlagRow, delivery_record, mapped_order, settled_trace, status_of
from tsrevel.version import __version__

# A delivery id the stores can hold (SQL BIGINT); a larger one is a 400, not an overflow and a 500.
DeliveryId = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]


@post("/test/webhook", status_code=200, summary="Process a payload now and answer with the whole trace", operation_class=documented(WEBHOOK_BODY))
async def test_webhook(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> dict[str, Any]:
    body = await request.body()
    trace = await settled_trace(processor, await processor.run_now(body, correlation_id=correlation_id()))
    flags = await processor.flags()
    result = mapped_order(trace.delivery, trace.order) or (json.loads(trace.delivery.result) if trace.delivery.result else None)
    return {
        "correlation_id": trace.delivery.correlation_id,
        "status": trace.intake.status,
        "flags": {"enable_connector": flags.enable_connector, "dry_run": flags.dry_run, "allowed_locations": sorted(flags.allowed_locations)},
        "decision": trace.delivery.state,
        "delivery": delivery_view(trace.delivery, full=True),
        "mapped_order": result,
        "revel": order_view(trace.order) if trace.order and trace.order.state == st.LEDGER_CREATED else None,
        "dry_run": trace.delivery.state == st.DRY_RUN,
        "emails": [{"kind": e.kind, "subject": e.subject, "to": list(e.to)} for e in trace.emails],
    }


def json_object(raw: bytes, *, empty_ok: bool = False) -> dict[str, Any]:
    """An admin body as a JSON object (lone surrogates already replaced), or a PayloadError naming "$"."""
    data = {} if empty_ok and not raw.strip() else decode_json(raw)
    if not isinstance(data, dict):
        raise PayloadError("$", data, "is not a JSON object")
    return data


@post(
    "/test/preview", status_code=200, summary="Map a payload to a Revel order without storing or sending anything",
    operation_class=documented(WEBHOOK_BODY),
)
async def preview(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> dict[str, Any]:
    payload = json_object(await request.body())
    mapped = processor.preview(payload)
    if isinstance(mapped, MappingFailure):
        return {"ok": False, "problem": mapped.describe(), "unmapped": [u.describe() for u in mapped.unmapped]}
    assert isinstance(mapped, RevelOrder)
    return {"ok": True, "order": mapped.to_snapshot()}


@get("/admin/status", summary="Effective flags and their source, counts by state, oldest pending age, last order")
async def admin_status(processor: NamedDependency[Processor]) -> dict[str, Any]:
    status = await status_of(processor)
    overrides = status.overrides
    return {
        "flags": {
            **{row.flag: {"value": sorted(row.value) if isinstance(row.value, frozenset) else row.value, "source": _flag_source(row, processor)}
               for row in status.flag_rows()},
            "override": {"actor": overrides.actor, "reason": overrides.reason, "updated_at": iso(overrides.updated_at)},
        },
        "counts": status.counts,
        "oldest_pending_age_s": status.oldest_pending_age_s,
        "last_order": order_view(status.last_order) if status.last_order else None,
        "last_poll": poll_view(status.last_poll),
        "mapping": mapping_view(processor.mapping_status()),
        "version": __version__,
    }


@post(
    "/admin/sync", status_code=200, summary="Fetch one event from the TripleSeat API and store it as a delivery (source sync)",
    operation_class=documented(SYNC_BODY),
)
async def admin_sync(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> dict[str, Any]:
    data = json_object(await request.body())
    event_id, reason = data.get("event_id"), data.get("reason")
    if isinstance(event_id, bool) or not isinstance(event_id, int | str) or not str(event_id).strip():
        raise PayloadError("event_id", event_id, "must be a TripleSeat event id")
    reason = audit_reason(reason)
    result = await catchup.sync_event(processor, str(event_id), actor="admin-api", reason=reason, correlation_id=correlation_id())
    return {
        "status": result.status, "delivery_id": result.delivery_id, "event_id": result.event_id,
        "correlation_id": result.correlation_id, "event_version": result.event_version,
    }


@post(
    "/admin/mapping/reload", status_code=200, summary="Read the mapping file again: in force for the next delivery, on every replica",
    operation_class=documented(REASON_BODY),
)
async def reload_mapping(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> dict[str, Any]:
    """A file that does not validate is refused with 422 (file, line, problem) and the mapping in force stays."""
    data = json_object(await request.body(), empty_ok=True)
    reason = audit_reason(data.get("reason", ""), required=False)  # decode_json already replaced any lone surrogate
    status = await processor.reload_mapping(actor="admin-api", reason=reason or "(no reason given)")
    return {"reloaded": True, "mapping": mapping_view(status)}


def _flag_source(row: FlagRow, processor: Processor) -> str:
    if not row.overridden:
        return "environment"
    if row.refused:  # a stored dry_run=false that this (unsigned) service does not obey
        return f"runtime override dry_run=false refused here: needs {processor.live_refused()}"
    return "runtime override"


@attrs.frozen
class FlagsChange:
    enable_connector: bool | None = None
    dry_run: bool | None = None
    reason: str = ""


def _parse_flags_body(raw: bytes) -> FlagsChange:
    data = json_object(raw, empty_ok=True)
    unknown = sorted(set(data) - {"enable_connector", "dry_run", "reason"})
    if unknown:
        raise PayloadError(unknown[0], data[unknown[0]], "is not a flag (use enable_connector, dry_run, reason)")
    for key in ("enable_connector", "dry_run"):
        if key in data and data[key] is not None and not isinstance(data[key], bool):
            raise PayloadError(key, data[key], "is not true or false")
    change = FlagsChange(data.get("enable_connector"), data.get("dry_run"), audit_reason(data.get("reason", ""), required=False))
    if change.enable_connector is None and change.dry_run is None:
        raise PayloadError("$", data, "names no flag: give enable_connector and/or dry_run")
    return change


@put("/admin/flags", status_code=200, summary="Set runtime overrides of ENABLE_CONNECTOR and DRY_RUN", operation_class=documented(FLAGS_BODY))
async def put_flags(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> dict[str, Any]:
    change = _parse_flags_body(await request.body())
    # dry_run=false on a service that may not go live raises LiveRefused (409) in the use case.
    flags = await processor.set_flags(
        enable_connector=change.enable_connector, dry_run=change.dry_run, actor="admin-api", reason=change.reason or "(no reason given)"
    )
    return {"enable_connector": flags.enable_connector, "dry_run": flags.dry_run, "allowed_locations": sorted(flags.allowed_locations)}


@delete("/admin/flags", status_code=200, summary="Drop the runtime overrides: back to the environment values")
async def delete_flags(processor: NamedDependency[Processor]) -> dict[str, Any]:
    flags = await processor.clear_flags(actor="admin-api", reason="DELETE /admin/flags")
    return {"enable_connector": flags.enable_connector, "dry_run": flags.dry_run, "allowed_locations": sorted(flags.allowed_locations)}


@get("/admin/deliveries", summary="Recent deliveries, newest first")
async def list_deliveries(
    processor: NamedDependency[Processor],
    state_filter: Annotated[str | None, QueryParameter(name="state")] = None,
    limit: FromQuery[int] = 50,
) -> dict[str, Any]:
    # "state" is a reserved handler parameter name in Litestar, hence the alias.
    state = state_filter
    if state is not None and state not in st.STATES:
        raise BadQuery(f"state: {state!r} is not one of {', '.join(st.STATES)}")
    limit = max(1, min(limit, 500))
    items = await processor.store.list_deliveries(state=state, limit=limit)
    return {"deliveries": [delivery_view(d) for d in items], "count": len(items)}


@get("/admin/deliveries/{delivery_id:int}", summary="One delivery with its timeline, result and emails")
async def get_delivery(processor: NamedDependency[Processor], delivery_id: DeliveryId) -> dict[str, Any]:
    record = await delivery_record(processor, delivery_id)
    view = delivery_view(record.delivery, full=True)
    view["emails"] = [
        {"id": e.id, "kind": e.message.kind, "subject": e.message.subject, "state": e.state, "attempts": e.attempts, "last_error": e.last_error}
        for e in record.emails
    ]
    view["order"] = order_view(record.order)
    view["mapped_order"] = mapped_order(record.delivery, record.order)
    return view


@post("/admin/deliveries/{delivery_id:int}/replay", status_code=200, summary="Re-queue one held, skipped, dead or dry-run delivery")
async def replay_one(processor: NamedDependency[Processor], delivery_id: DeliveryId) -> dict[str, Any]:
    delivery = await processor.store.get_delivery(delivery_id)
    done = await processor.replay(delivery_id, actor="admin-api", reason="POST /admin/deliveries/{id}/replay")
    if not done:
        raise InvalidRequest(f"delivery {delivery_id} is {delivery.state}: only {', '.join(sorted(st.REPLAYABLE_STATES))} can be replayed")
    return {"count": 1, "delivery_id": delivery_id}


@post(
    "/admin/replay", status_code=200, summary="Re-queue every delivery in a state (held, skipped, dead, dry_run), in arrival order",
    operation_class=documented(REPLAY_BODY),
)
async def replay_many(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> dict[str, Any]:
    data = decode_json(await request.body())
    state = data.get("state") if isinstance(data, dict) else None
    if not isinstance(state, str) or state not in st.REPLAYABLE_STATES:  # a list or object is unhashable
        raise PayloadError("state", state, f"is not one of {', '.join(sorted(st.REPLAYABLE_STATES))}")
    count = await processor.replay_state(state, actor="admin-api", reason="POST /admin/replay")
    return {"count": count, "state": state}


def admin_router(settings: Settings) -> Router:
    """Every admin and test endpoint, behind the bearer-token guard (403 for all while no TSREVEL_ADMIN_TOKEN is set)."""
    return Router(
        path="/",
        route_handlers=[test_webhook, preview, admin_status, admin_sync, put_flags, delete_flags, list_deliveries, get_delivery, replay_one,
                        replay_many, reload_mapping],
        guards=[_admin_guard(settings)],
        security=[{BEARER_SCHEME: []}],
    )


def _admin_guard(settings: Settings):  # noqa: ANN202 - a Litestar guard
    token = settings.admin_token

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if token is None:
            raise AdminForbidden("admin and test endpoints are disabled: set TSREVEL_ADMIN_TOKEN")
        given = connection.headers.get("authorization", "")
        scheme, _sep, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            raise AdminUnauthorized("missing or wrong admin bearer token (Authorization: Bearer <TSREVEL_ADMIN_TOKEN>)")

    return guard
