"""The Litestar app factory: create_app(container) builds the service around a container, opening resources in its lifespan.

The routes live by what they do: http_intake (the webhook, /health, /ready, /metrics), http_admin
(the bearer-token endpoints), web_console (/console); http_errors holds the one map from errors to
statuses, http_openapi the schema document.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from litestar.di import Provide
from litestar.middleware import DefineMiddleware

from tsrevel.domain.errors import MappingRejected
from tsrevel.domain.mapping import MappingConfig
from tsrevel.domain.processing import Processor
from tsrevel.domain.safety import unknown_allowed_entries
from tsrevel.entrypoints.body_limits import BodyBudget, BodyGuard
from tsrevel.entrypoints.container import Container, database_location, opened, resolve
from tsrevel.entrypoints.http_admin import admin_router
from tsrevel.entrypoints.http_errors import EXCEPTION_HANDLERS, CorrelationMiddleware
from tsrevel.entrypoints.http_intake import Runtime, health, metrics, ready, receive_webhook
from tsrevel.entrypoints.http_openapi import openapi_config
from tsrevel.entrypoints.logs import configure_logging
from tsrevel.entrypoints.settings import SECRET_FIELDS, Settings
from tsrevel.entrypoints.web_console import console_router
from tsrevel.entrypoints.web_console_templates import template_config
from tsrevel.entrypoints.worker import Worker, catch_up_options
from tsrevel.version import __version__

log = logging.getLogger("tsrevel.http")

MAX_BODY_BYTES = 1024 * 1024


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

    return Litestar(
        route_handlers=[receive_webhook, health, ready, metrics, admin_router(settings), console_router(settings)],  # console: docs/console.md
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
