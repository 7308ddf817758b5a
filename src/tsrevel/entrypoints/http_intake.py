"""The service's own routes: the TripleSeat webhook intake, /health, /ready, /metrics, and the Runtime they read.

The webhook is verified over its raw bytes and stored durably before the answer; nothing here
calls Revel, SendGrid or TripleSeat (the worker does, after the answer).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import attrs
from litestar import HttpMethod, MediaType, Request, Response, get, post, route
from litestar.di import NamedDependency

from tsrevel.domain.errors import SignatureError
from tsrevel.domain.ports import ACK_SECONDS
from tsrevel.domain.processing import Processor
from tsrevel.entrypoints.console_views import readiness_problems
from tsrevel.entrypoints.http_errors import correlation_id
from tsrevel.entrypoints.http_openapi import SIGNATURE_HEADER, WEBHOOK_BODY, documented
from tsrevel.entrypoints.settings import Settings
from tsrevel.entrypoints.worker import Worker
from tsrevel.version import __version__

log = logging.getLogger("tsrevel.http")

HEADER_NAMES_LOGGED = 20  # deliveries whose header names are logged, to learn what TripleSeat sends
HEADER_NAMES_PER_LINE = 64


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


@post(
    ["/webhooks/tripleseat", "/webhook"], status_code=200, summary="Receive a TripleSeat webhook",
    operation_class=documented(WEBHOOK_BODY, SIGNATURE_HEADER),
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
