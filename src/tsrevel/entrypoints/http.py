"""The Litestar app factory: translates HTTP to the Processor's use cases and maps errors to statuses once."""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Annotated, Any

import attrs
from litestar import HttpMethod, Litestar, MediaType, Request, Response, Router, delete, get, post, put, route
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.enums import ParamType
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, OpenAPIMediaType, OpenAPIType, Operation, Parameter, RequestBody, Schema, SecurityScheme
from litestar.params import FromQuery, PathParameter, QueryParameter
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from tsrevel.domain import deliveries as st
from tsrevel.domain.correlation import accept_correlation_id, current_correlation_id
from tsrevel.domain.deliveries import Delivery, LedgerEntry
from tsrevel.domain import catchup
from tsrevel.domain.errors import (
    GatewayError,
    InvalidRequest,
    MappingRejected,
    NotFound,
    PayloadError,
    SignatureError,
    StoreUnavailable,
)
from tsrevel.domain.mapping import MappingConfig, MappingFailure
from tsrevel.domain.orders import RevelOrder
from tsrevel.domain.ports import ACK_SECONDS
from tsrevel.domain.processing import MappingStatus, Processor
from tsrevel.domain.safety import unknown_allowed_entries
from tsrevel.entrypoints.body_limits import RETRY_AFTER_S, BodiesInFlightFull, BodyBudget, BodyGuard, BodyTimeout
from tsrevel.entrypoints.console_views import readiness_problems
from tsrevel.entrypoints.container import Container, database_location, opened, resolve
from tsrevel.entrypoints.views import FlagRow, delivery_record, settled_trace, status_of
from tsrevel.entrypoints.logs import configure_logging
from tsrevel.entrypoints.operator import mapped_order
from tsrevel.entrypoints.settings import SECRET_FIELDS, Settings
from tsrevel.entrypoints.web_console import console_router, template_config
from tsrevel.entrypoints.worker import Worker, catch_up_options
from tsrevel.version import __version__

log = logging.getLogger("tsrevel.http")

MAX_BODY_BYTES = 1024 * 1024
HEADER_NAMES_LOGGED = 20  # deliveries whose header names are logged, to learn what TripleSeat sends
HEADER_NAMES_PER_LINE = 64
CORRELATION_HEADER = "x-correlation-id"
# A delivery id the stores can hold (SQL BIGINT); a larger one is a 400, not an overflow and a 500.
DeliveryId = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]


class AdminForbidden(Exception):
    """Admin and test endpoints are disabled (no TSREVEL_ADMIN_TOKEN): 403, whatever the credentials."""


class AdminUnauthorized(Exception):
    """The admin bearer token is missing or wrong: 401 with a Bearer challenge."""


class BadQuery(Exception):
    """A query parameter with a value the endpoint does not take: 400 naming the allowed values."""


@attrs.define
class Runtime:
    """What the lifespan builds and the handlers use: the processor, the worker, the store."""

    settings: Settings
    processor: Processor | None = None
    worker: Worker | None = None
    deliveries_seen: int = 0
    started_at: float = attrs.field(factory=time.monotonic)

    def get_processor(self) -> Processor:
        if self.processor is None:
            raise RuntimeError("the app has not started yet (lifespan not run)")
        return self.processor

    def get_settings(self) -> Settings:
        return self.settings


# ---- correlation ids: one per request, on every response and log line -------------------------


class CorrelationMiddleware:
    """Keeps a valid incoming X-Correlation-ID or makes one, exposes it to logs, and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", ()):
            if name == b"x-correlation-id":
                incoming = value.decode("latin-1")
                break
        cid = accept_correlation_id(incoming)
        token = current_correlation_id.set(cid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-correlation-id"]
                headers.append((b"x-correlation-id", cid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_correlation_id.reset(token)


def correlation_id() -> str:
    return current_correlation_id.get() or accept_correlation_id(None)


# ---- errors: the one map from domain errors to statuses --------------------------------------


def _error(status: int, message: str, *, cid: str | None = None, **extra: Any) -> Response[dict[str, Any]]:
    cid = cid or correlation_id()
    # The header too: a 404/405 for an unknown route is answered before CorrelationMiddleware runs.
    return Response(
        {"error": message, "correlation_id": cid, **extra}, status_code=status, headers={"X-Correlation-ID": cid}, media_type=MediaType.JSON
    )


def _signature_error(_: Request, exc: SignatureError) -> Response[dict[str, Any]]:
    log.warning("webhook refused: %s", exc)
    return _error(401, str(exc))


def _payload_error(_: Request, exc: PayloadError) -> Response[dict[str, Any]]:
    return _error(422, str(exc), field=exc.path)


def _not_found(_: Request, exc: NotFound) -> Response[dict[str, Any]]:
    return _error(404, str(exc))


def _invalid(_: Request, exc: InvalidRequest) -> Response[dict[str, Any]]:
    return _error(409, str(exc))


def _gateway(_: Request, exc: GatewayError) -> Response[dict[str, Any]]:
    # An outside system (the TripleSeat API for /admin/sync) failed; its message is already scrubbed.
    return _error(502, str(exc))


# When the store cannot take writes: TripleSeat re-sends a webhook that was not answered 2xx.
STORE_RETRY_AFTER_S = 30


def _store_unavailable(_: Request, exc: StoreUnavailable) -> Response[dict[str, Any]]:
    # Not logged here: the store logs each outage once, when it starts and when it ends.
    answer = _error(503, f"{exc}; try again later")
    answer.headers["Retry-After"] = str(STORE_RETRY_AFTER_S)
    return answer


def _mapping_rejected(_: Request, exc: MappingRejected) -> Response[dict[str, Any]]:
    return _error(422, str(exc), file=exc.file, line=exc.line, problem=exc.problem)


def _forbidden(_: Request, exc: AdminForbidden) -> Response[dict[str, Any]]:
    return _error(403, str(exc))


def _unauthorized(_: Request, exc: AdminUnauthorized) -> Response[dict[str, Any]]:
    response = _error(401, str(exc))
    response.headers["WWW-Authenticate"] = 'Bearer realm="tsrevel admin"'
    return response


def _bad_query(_: Request, exc: BadQuery) -> Response[dict[str, Any]]:
    return _error(400, str(exc))


def _http_exception(request: Request, exc: HTTPException) -> Response[dict[str, Any]]:
    extra = {"detail": exc.extra} if isinstance(exc, ValidationException) and exc.extra else {}
    cid = current_correlation_id.get() or accept_correlation_id(request.headers.get(CORRELATION_HEADER))
    return _error(exc.status_code, exc.detail, cid=cid, **extra)


def _unhandled(request: Request, exc: Exception) -> Response[dict[str, Any]]:
    """A bug or an outage nobody mapped: logged once with its traceback, answered in our shape."""
    cid = current_correlation_id.get() or accept_correlation_id(request.headers.get(CORRELATION_HEADER))
    log.error(
        "unhandled %s in %s %s: %s", type(exc).__name__, request.method, request.url.path, exc,
        exc_info=exc, extra={"correlation_id": cid},
    )
    return _error(500, f"internal error ({type(exc).__name__}); the log has the details under this correlation id", cid=cid)


def _body_timeout(_: Request, exc: BodyTimeout) -> Response[dict[str, Any]]:
    response = _error(408, str(exc))
    response.headers["Connection"] = "close"  # the rest of the body may still be on its way
    return response


def _bodies_in_flight_full(_: Request, exc: BodiesInFlightFull) -> Response[dict[str, Any]]:
    response = _error(503, str(exc))
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    response.headers["Connection"] = "close"
    return response


EXCEPTION_HANDLERS = {
    BodyTimeout: _body_timeout,
    BodiesInFlightFull: _bodies_in_flight_full,
    SignatureError: _signature_error,
    PayloadError: _payload_error,
    NotFound: _not_found,
    InvalidRequest: _invalid,
    GatewayError: _gateway,
    StoreUnavailable: _store_unavailable,
    MappingRejected: _mapping_rejected,
    AdminForbidden: _forbidden,
    AdminUnauthorized: _unauthorized,
    BadQuery: _bad_query,
    NotAuthorizedException: _http_exception,
    PermissionDeniedException: _http_exception,
    HTTPException: _http_exception,
    Exception: _unhandled,
}


# ---- the OpenAPI document: what the raw-body handlers read, said where Litestar cannot see it ------


def _body(description: str, schema: Schema) -> RequestBody:
    return RequestBody(content={"application/json": OpenAPIMediaType(schema=schema)}, description=description, required=True)


def _documented(body: RequestBody, *headers: Parameter) -> type[Operation]:
    """An Operation that also describes a body read with request.body() (and any headers read by hand)."""

    @dataclasses.dataclass
    class DocumentedOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = self.request_body or body
            if headers:
                self.parameters = [*(self.parameters or []), *headers]

    return DocumentedOperation


_WEBHOOK_BODY = _body(
    "A TripleSeat webhook: the JSON object TripleSeat posts (webhook_trigger_type and the event), as raw bytes.",
    Schema(type=OpenAPIType.OBJECT, required=["webhook_trigger_type"], properties={
        "webhook_trigger_type": Schema(type=OpenAPIType.STRING, examples=["STATUS_CHANGE_EVENT"]),
        "event": Schema(type=OpenAPIType.OBJECT, description="The TripleSeat event (alias: object)."),
    }),
)
_SIGNATURE_HEADER = Parameter(
    name="X-Signature", param_in=ParamType.HEADER, required=False, schema=Schema(type=OpenAPIType.STRING),
    description="HMAC-SHA256 of the raw body with TRIPLESEAT_SIGNING_SECRET, as hex (either case), base64, "
    "sha256=<hex> or t=<unix>,v1=<hex> over '<t>.<body>'. Required when a signing secret is set.",
)
_FLAGS_BODY = _body(
    "Runtime overrides; at least one flag. dry_run=false is refused (409) unless the service may go live.",
    Schema(type=OpenAPIType.OBJECT, additional_properties=False, properties={
        "enable_connector": Schema(type=OpenAPIType.BOOLEAN),
        "dry_run": Schema(type=OpenAPIType.BOOLEAN),
        "reason": Schema(type=OpenAPIType.STRING, max_length=500, description="Why, for the audit log."),
    }),
)
_REPLAY_BODY = _body(
    "Which deliveries to re-queue.",
    Schema(type=OpenAPIType.OBJECT, required=["state"], properties={
        "state": Schema(type=OpenAPIType.STRING, enum=sorted(st.REPLAYABLE_STATES)),
    }),
)
_REASON_BODY = _body(
    "Why, for the audit log (optional).",
    Schema(type=OpenAPIType.OBJECT, properties={"reason": Schema(type=OpenAPIType.STRING, max_length=500)}),
)
_SYNC_BODY = _body(
    "Which TripleSeat event to fetch, and why (for the audit log).",
    Schema(type=OpenAPIType.OBJECT, required=["event_id"], properties={
        "event_id": Schema(one_of=[Schema(type=OpenAPIType.STRING), Schema(type=OpenAPIType.INTEGER)]),
        "reason": Schema(type=OpenAPIType.STRING, max_length=500),
    }),
)
BEARER_SCHEME = "BearerToken"


def _schema_not_found_in_our_shape(response: Response[Any]) -> Response[Any]:
    """Litestar answers an unknown /schema/... path (a UI we do not serve) with an HTML page: ours instead."""
    if response.status_code == 404 and response.media_type == MediaType.HTML:
        return _error(404, "not found: only /schema/openapi.json and /schema/openapi.yaml are served (no documentation UI)")
    return response


def openapi_config() -> OpenAPIConfig:
    """Only the schema files: the documentation UIs Litestar can render load their scripts from a CDN."""
    return OpenAPIConfig(
        title="tsrevel", version=__version__, path="/schema",
        render_plugins=[JsonRenderPlugin(), YamlRenderPlugin()],
        openapi_router=Router("/schema", route_handlers=[], include_in_schema=False, after_request=_schema_not_found_in_our_shape),
        components=Components(security_schemes={
            BEARER_SCHEME: SecurityScheme(type="http", scheme="bearer", description="TSREVEL_ADMIN_TOKEN"),
        }),
    )


# ---- JSON views of domain records -----------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def delivery_view(d: Delivery, *, full: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": d.id,
        "state": d.state,
        "event_id": d.event_id,
        "trigger_type": d.trigger_type,
        "correlation_id": d.correlation_id,
        "received_at": _iso(d.received_at),
        "updated_at": _iso(d.updated_at),
        "attempts": d.attempts,
        "next_attempt_at": _iso(d.next_attempt_at),
        "last_error": d.last_error,
        "order_reference": d.order_reference,
        "source": d.source,  # webhook, sync or catchup
    }
    if full:
        view["result"] = json.loads(d.result) if d.result else None
        view["timeline"] = [{"at": _iso(t.at), "state": t.state, "note": t.note} for t in d.timeline]
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
        "created_at": _iso(entry.created_at),
    }


# ---- handlers -----------------------------------------------------------------------------


@post(
    ["/webhooks/tripleseat", "/webhook"], status_code=200, summary="Receive a TripleSeat webhook",
    operation_class=_documented(_WEBHOOK_BODY, _SIGNATURE_HEADER),
)
async def receive_webhook(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> dict[str, Any]:
    """Verify X-Signature over the raw body, store the delivery durably, then answer; no outside call."""
    # One dependency, not two: Litestar resolves two or more in an anyio task group per request,
    # which cost this hot path about a tenth of its CPU (docs/performance.md, P1).
    processor = runtime.get_processor()
    started = time.perf_counter()
    body = await request.body()
    names = tuple(sorted({k.lower() for k in request.headers.keys()}))
    outcome = "error"
    try:
        result = await processor.accept(
            body, signature=request.headers.get("x-signature"), correlation_id=correlation_id(), header_names=names
        )
        outcome = result.status
        # Only once the signature verified: an anonymous caller must not be able to fill the log.
        runtime.deliveries_seen += 1
        if runtime.deliveries_seen <= HEADER_NAMES_LOGGED:
            log.info("webhook header names: %s", _names_line(names))  # names only, never values
    except SignatureError:
        outcome = "unauthorized"
        raise
    finally:
        # Reading, verifying and durably storing the body: what TripleSeat waits for.
        processor.metrics.observe(ACK_SECONDS, time.perf_counter() - started, status=outcome)
    answer: dict[str, Any] = {
        "status": result.status,
        "delivery_id": result.delivery_id,
        "correlation_id": result.correlation_id,
    }
    if result.reason:
        answer["reason"] = result.reason
    return answer


def _names_line(names: tuple[str, ...]) -> str:
    shown = ", ".join(name[:100] for name in names[:HEADER_NAMES_PER_LINE])
    more = len(names) - HEADER_NAMES_PER_LINE
    return f"{shown} (and {more} more)" if more > 0 else shown


@get("/health", summary="Liveness and the flags in force")
async def health(processor: NamedDependency[Processor]) -> dict[str, Any]:
    try:
        flags, source = await processor.flags(), "store"
    except Exception:  # the store may be down; health still answers with what the environment says
        log.exception("health: cannot read runtime flags")
        flags, source = processor.boot_flags, "environment (store unreadable)"
    return {
        "status": "ok",
        "enable_connector": flags.enable_connector,
        "dry_run": flags.dry_run,
        "allowed_locations": sorted(flags.allowed_locations),
        "flags_source": source,
        "version": __version__,
    }


@get("/ready", summary="200 once migrations are applied, the store is writable and the worker runs")
async def ready(processor: NamedDependency[Processor], runtime: NamedDependency[Runtime]) -> Response[dict[str, Any]]:
    problems = await readiness_problems(processor, runtime.worker)  # the console's overview shows the same
    if problems:
        return Response({"status": "not ready", "problems": problems}, status_code=503)
    return Response({"status": "ready"}, status_code=200)


@route("/metrics", http_method=[HttpMethod.GET, HttpMethod.HEAD], media_type=MediaType.TEXT, summary="Prometheus metrics")
async def metrics(processor: NamedDependency[Processor]) -> str:
    from tsrevel.entrypoints.metrics import render_metrics

    return await render_metrics(processor)


# ---- admin and test endpoints (bearer token) ---------------------------------------------


@post("/test/webhook", status_code=200, summary="Process a payload now and answer with the whole trace", operation_class=_documented(_WEBHOOK_BODY))
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
    from tsrevel.domain.events import decode_json

    data = {} if empty_ok and not raw.strip() else decode_json(raw)
    if not isinstance(data, dict):
        raise PayloadError("$", data, "is not a JSON object")
    return data


@post(
    "/test/preview", status_code=200, summary="Map a payload to a Revel order without storing or sending anything",
    operation_class=_documented(_WEBHOOK_BODY),
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
            "override": {"actor": overrides.actor, "reason": overrides.reason, "updated_at": _iso(overrides.updated_at)},
        },
        "counts": status.counts,
        "oldest_pending_age_s": status.oldest_pending_age_s,
        "last_order": order_view(status.last_order) if status.last_order else None,
        "last_poll": poll_view(status.last_poll),
        "mapping": mapping_view(processor.mapping_status()),
        "version": __version__,
    }


def poll_view(report: catchup.PollReport | None) -> dict[str, Any] | None:
    """The last catch-up poll as /admin/status shows it."""
    if report is None:
        return None
    return {
        "finished_at": _iso(report.finished_at), "started_at": _iso(report.started_at), "since": report.since.isoformat(),
        "events_seen": report.events_seen, "already_seen": report.already_seen,
        "deliveries_created": report.deliveries_created, "delivery_ids": list(report.delivery_ids),
        "errors": list(report.errors), "holder": report.holder,
    }


@post(
    "/admin/sync", status_code=200, summary="Fetch one event from the TripleSeat API and store it as a delivery (source sync)",
    operation_class=_documented(_SYNC_BODY),
)
async def admin_sync(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> dict[str, Any]:
    data = json_object(await request.body())
    event_id, reason = data.get("event_id"), data.get("reason")
    if isinstance(event_id, bool) or not isinstance(event_id, int | str) or not str(event_id).strip():
        raise PayloadError("event_id", event_id, "must be a TripleSeat event id")
    if not isinstance(reason, str) or not reason.strip():
        raise PayloadError("reason", reason, "must say why (it goes into the audit log)")
    result = await catchup.sync_event(processor, str(event_id), actor="admin-api", reason=reason.strip()[:500], correlation_id=correlation_id())
    return {
        "status": result.status, "delivery_id": result.delivery_id, "event_id": result.event_id,
        "correlation_id": result.correlation_id, "event_version": result.event_version,
    }


def mapping_view(status: MappingStatus) -> dict[str, Any]:
    return {
        "file": status.file,
        "loaded_at": _iso(status.loaded_at),
        "generation": status.generation,
        "locations": status.locations,
        "sites": status.sites,
        "products": status.products,
    }


@post(
    "/admin/mapping/reload", status_code=200, summary="Read the mapping file again: in force for the next delivery, on every replica",
    operation_class=_documented(_REASON_BODY),
)
async def reload_mapping(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> dict[str, Any]:
    """A file that does not validate is refused with 422 (file, line, problem) and the mapping in force stays."""
    data = json_object(await request.body(), empty_ok=True)
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        raise PayloadError("reason", reason, "is not text")
    reason = reason.strip()[:500]  # decode_json already replaced any lone surrogate
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
    reason = data.get("reason", "")
    if not isinstance(reason, str):
        raise PayloadError("reason", reason, "is not text")
    change = FlagsChange(data.get("enable_connector"), data.get("dry_run"), reason.strip()[:500])
    if change.enable_connector is None and change.dry_run is None:
        raise PayloadError("$", data, "names no flag: give enable_connector and/or dry_run")
    return change


@put("/admin/flags", status_code=200, summary="Set runtime overrides of ENABLE_CONNECTOR and DRY_RUN", operation_class=_documented(_FLAGS_BODY))
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
    operation_class=_documented(_REPLAY_BODY),
)
async def replay_many(request: Request[Any, Any, Any], processor: NamedDependency[Processor]) -> dict[str, Any]:
    from tsrevel.domain.events import decode_json

    data = decode_json(await request.body())
    state = data.get("state") if isinstance(data, dict) else None
    if not isinstance(state, str) or state not in st.REPLAYABLE_STATES:  # a list or object is unhashable
        raise PayloadError("state", state, f"is not one of {', '.join(sorted(st.REPLAYABLE_STATES))}")
    count = await processor.replay_state(state, actor="admin-api", reason="POST /admin/replay")
    return {"count": count, "state": state}


# ---- the factory --------------------------------------------------------------------------


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


def log_settings(settings: Settings) -> None:
    """The start-up banner: every setting, secrets redacted, flags spelled as the runbook expects."""
    for name, shown in settings.describe():
        log.info("%s: %s", name, shown, extra={"setting": name})
    # Relative defaults depend on the working directory: say which files these are.
    log.info("database: %s; mapping file: %s", database_location(settings.database_url), os.path.abspath(settings.mapping_file))
    if settings.signing_secret is None:
        log.warning("TRIPLESEAT_SIGNING_SECRET is unset: webhook signatures are NOT checked")


def warn_unknown_allowed_locations(allowed: frozenset[str], mapping: MappingConfig) -> None:
    """One warning naming the ALLOWED_LOCATIONS entries that match no location or site of the mapping file."""
    unknown = unknown_allowed_entries(allowed, frozenset(mapping.locations), frozenset(mapping.sites))
    if unknown:
        log.warning("ALLOWED_LOCATIONS names entries the mapping file does not have (no event can match them): %s", ", ".join(unknown))


def create_app(container: Container, *, run_worker: bool = True, configure_logs: bool = True) -> Litestar:
    """Build the HTTP app around a container; resources open in the lifespan, not here."""
    settings: Settings = container.settings()
    runtime = Runtime(settings=settings)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        if configure_logs:
            secrets = [getattr(settings, f) for f in SECRET_FIELDS]
            configure_logging(level=settings.log_level, fmt=settings.log_format, secrets=secrets)
        log_settings(settings)
        started = False
        try:
            async with opened(container) as processor:
                started = True
                try:
                    runtime.processor = processor
                    _reload_mapping_on_sighup(processor)
                    warn_unknown_allowed_locations(settings.allowed_locations, processor.mapping)
                    if run_worker:
                        runtime.worker = Worker(
                            processor, loops=settings.workers, poll_interval_s=settings.poll_interval_s, wake=await resolve(container.wake()),
                            **catch_up_options(processor, settings),
                        )
                        runtime.worker.start()
                    log.info("tsrevel %s ready", __version__)
                    yield
                finally:
                    if runtime.worker is not None:
                        await runtime.worker.stop()
        finally:
            if started:  # resources were opened, and are closed now
                log.info("tsrevel stopped")

    admin = Router(
        path="/",
        route_handlers=[test_webhook, preview, admin_status, admin_sync, put_flags, delete_flags, list_deliveries, get_delivery, replay_one,
                        replay_many, reload_mapping],
        guards=[_admin_guard(settings)],
        security=[{BEARER_SCHEME: []}],
    )
    return Litestar(
        route_handlers=[receive_webhook, health, ready, metrics, admin, console_router(settings)],  # console: docs/console.md
        dependencies={
            "processor": Provide(runtime.get_processor, sync_to_thread=False),
            "settings": Provide(runtime.get_settings, sync_to_thread=False),
            "runtime": Provide(lambda: runtime, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
        middleware=[
            CorrelationMiddleware,
            DefineMiddleware(
                BodyGuard, timeout_s=settings.body_timeout_s, budget=BodyBudget(settings.max_inflight_body_bytes), max_body_bytes=MAX_BODY_BYTES
            ),
        ],
        lifespan=[lifespan],
        request_max_body_size=MAX_BODY_BYTES,
        template_config=template_config(),
        openapi_config=openapi_config(),
        logging_config=None,
    )


def _reload_mapping_on_sighup(processor: Processor) -> None:
    """`kill -HUP <pid>` reads the mapping file again, as POST /admin/mapping/reload does (serve's main loop only)."""

    async def reload() -> None:
        try:
            await processor.reload_mapping(actor="SIGHUP", reason="SIGHUP")
        except MappingRejected:
            pass  # logged and audited by the use case; the mapping in force stays
        except Exception:
            log.exception("SIGHUP: the mapping reload failed; the mapping in force stays")

    tasks: set[asyncio.Task[None]] = set()

    def on_sighup() -> None:
        task = asyncio.get_running_loop().create_task(reload())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        pass  # not the main thread (a test client) or no SIGHUP here: the HTTP and CLI reloads remain


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How tsrevel runs uvicorn: its logging off (ours is on), and the connection limits of docs/configuration.md."""
    return {
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 15,
        "loop": "auto",  # uvloop, installed by uvicorn[standard] (docs/performance.md, round 2)
        "http": "h11",  # the parser whose header-size limit is set here (httptools would ignore it): kept over speed
        "limit_concurrency": settings.max_connections,  # over it: 503 at once, nothing read
        "timeout_keep_alive": settings.keep_alive_s,
        "h11_max_incomplete_event_size": settings.max_header_bytes,  # request line + headers
    }
