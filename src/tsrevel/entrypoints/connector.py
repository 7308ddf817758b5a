"""The embeddable connector: build it from settings or from adapters, hand it webhooks, read what became of them.

This is the library face of the same use cases the service runs (``tsrevel.domain.processing``):
``handle`` is the webhook endpoint and ``/test/webhook`` in one call (verify, store, process
now), ``map`` is the pure preview, ``drain`` and ``start_worker`` do what the service's worker
does. Nothing here performs I/O at import or construction time; resources open in ``open()``
(or ``async with``) and close in ``aclose()``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from contextlib import AsyncExitStack
from types import TracebackType
from typing import TYPE_CHECKING, Any

import attrs

from tsrevel.adapters.system import SystemClock
from tsrevel.domain import deliveries as st
from tsrevel.domain.correlation import accept_correlation_id
from tsrevel.domain.errors import ConfigError, PayloadError
from tsrevel.domain.events import TripleSeatEvent, WebhookEnvelope, decode_json
from tsrevel.domain.mapping import MappingConfig, MappingFailure, map_event, mapping_from_dict
from tsrevel.domain.orders import RevelOrder
from tsrevel.domain.ports import Clock, EmailMessage, EventSource, Mailer, OrderGateway, Store
from tsrevel.domain.processing import Processor
from tsrevel.domain.window import DEFERRED_NOTE_PREFIX
from tsrevel.entrypoints.settings import Settings

if TYPE_CHECKING:  # imported for annotations only: the container pulls in httpx and dependency_injector
    from tsrevel.entrypoints.container import Container
    from tsrevel.entrypoints.worker import Worker

log = logging.getLogger("tsrevel.connector")

MappingSource = MappingConfig | Mapping[str, Any] | str | os.PathLike[str]

# States in which someone (a worker here or in another process) is about to settle the delivery.
_IN_HAND = frozenset({st.RECEIVED, st.QUEUED, st.PROCESSING})


@attrs.frozen(kw_only=True)
class Outcome:
    """What became of one webhook: the intake answer, and where its delivery stands now."""

    status: str  # "accepted", "duplicate" (the same body was delivered before) or "rejected" (unusable payload)
    delivery_id: int
    correlation_id: str  # the delivery's: on its log lines, its Revel requests and its emails
    state: str  # a delivery state: done, dry_run, needs_attention, retrying, dead, held, skipped, ignored, ...
    event_id: str | None = None
    order_reference: str | None = None  # "tripleseat-<event id>" once the event has its Revel order
    revel_order_id: int | None = None
    note: str | None = None  # the latest line of the delivery's timeline
    error: str | None = None
    next_attempt_at: datetime | None = None  # when a retrying (or deferred) delivery is due again
    emails: tuple[EmailMessage, ...] = ()  # what this delivery queued for the operations team

    @property
    def ordered(self) -> bool:
        """The event's Revel order exists (created by this delivery or found from an earlier one)."""
        return self.revel_order_id is not None

    @property
    def deferred(self) -> bool:
        """Waiting for its order window (ORDER_WINDOW_HOURS) to open; shown as state ``retrying``."""
        return self.state == st.RETRYING and (self.note or "").startswith(DEFERRED_NOTE_PREFIX)


class Connector:
    """tsrevel embedded in your program: ``await connector.handle(body, headers)`` per TripleSeat webhook.

    Build it from the environment (``Connector.from_env()``), from a ``Settings``
    (``Connector.from_settings(settings)``), or from adapters you pass in::

        Connector(store=MemoryStore(), revel=FakeRevel(), mapping="mapping.toml", settings=Settings(dry_run=False))

    With adapters passed in, ``settings`` supplies only the knobs (flags, signing secret, retry
    policy, order window, ...); its URLs and keys are not used, and closing the adapters stays
    your job. Use it as ``async with`` so what it opened is closed.
    """

    def __init__(
        self,
        *,
        store: Store,
        revel: OrderGateway,
        mapping: MappingSource,
        mailer: Mailer | None = None,
        events: EventSource | None = None,
        clock: Clock | None = None,
        settings: Settings | None = None,
    ) -> None:
        from tsrevel.bootstrap import use_cases_over
        from tsrevel.entrypoints.container import boot_flags, processing_settings

        self._settings = settings or Settings()
        self._mapping = load_mapping(mapping)
        use_cases = use_cases_over(
            store=store,
            revel=revel,
            mapping=self._mapping,
            boot_flags=boot_flags(self._settings),
            settings=processing_settings(self._settings, own_revel=False),
            clock=clock or SystemClock(),
            mailer=mailer,
            events=events,
        )
        self._processor: Processor | None = use_cases.processor()
        self._wake: asyncio.Event | None = use_cases.wake()
        self._container: Container | None = None
        self._migrate = True
        self._opened = False
        self._open_lock = asyncio.Lock()
        self._worker: Worker | None = None
        self._resources = AsyncExitStack()

    # ---- ways to build one -------------------------------------------------------------------

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Connector:
        """Read and validate the environment (docs/configuration.md) now; open nothing yet.

        Raises ConfigError naming the variable. ``overrides`` are as for from_settings.
        """
        return cls.from_settings(Settings.from_env(os.environ if env is None else env), **overrides)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, store: Store | None = None, revel: OrderGateway | None = None,
        mailer: Mailer | None = None, events: EventSource | None = None, clock: Clock | None = None,
    ) -> Connector:
        """Everything the service would build from these settings; any adapter given replaces the configured one.

        The mapping file is read now, so a bad one raises ConfigError here; the database and the
        HTTP clients open in ``open()``.
        """
        from dependency_injector import providers

        from tsrevel.adapters.mapping_toml import load_mapping_file
        from tsrevel.entrypoints.container import build_container, processing_settings

        container = build_container(settings)
        if revel is not None:  # REVEL_* are not what going live depends on: the given adapter is
            container.processing.override(providers.Object(processing_settings(settings, own_revel=False)))
        mapping = load_mapping_file(settings.mapping_file)
        container.mapping.override(providers.Object(mapping))
        for provider, adapter in (
            (container.store, store),
            (container.revel, revel),
            (container.mailer, mailer),
            (container.events, events),
            (container.clock, clock),
        ):
            if adapter is not None:
                provider.override(providers.Object(adapter))
        self = cls.__new__(cls)
        self._settings = settings
        self._wake = None  # the container's, once open
        self._mapping = mapping
        self._processor = None
        self._container = container
        self._migrate = store is not None  # the container's own store is migrated by its resource
        self._opened = False
        self._open_lock = asyncio.Lock()
        self._worker = None
        self._resources = AsyncExitStack()
        return self

    @classmethod
    def over(cls, processor: Processor, *, settings: Settings | None = None, wake: asyncio.Event | None = None) -> Connector:
        """A connector over an existing Processor (``tsrevel.testing`` uses it); the caller owns the processor's adapters.

        ``wake`` is the event the processor sets when work arrives (its container's); without
        one, a processor that sets nothing is given one here.
        """
        self = cls.__new__(cls)
        self._settings = settings or Settings()
        self._wake = wake
        self._mapping = processor.mapping
        self._processor = processor
        self._container = None
        self._migrate = False
        self._opened = False
        self._open_lock = asyncio.Lock()
        self._worker = None
        self._resources = AsyncExitStack()
        if self._wake is None:
            self._wake = asyncio.Event()
            if processor.on_accepted is None:
                processor.on_accepted = self._wake.set
        return self

    # ---- lifecycle --------------------------------------------------------------------------

    async def open(self) -> Connector:
        """Open the store (applying migrations) and the HTTP clients; idempotent. ``async with`` calls it."""
        async with self._open_lock:
            if self._opened:
                return self
            if self._container is not None:
                from tsrevel.entrypoints.container import opened, resolve

                self._processor = await self._resources.enter_async_context(opened(self._container))
                self._wake = await resolve(self._container.wake())
            if self._migrate:
                await self.processor.store.migrate()
            if self.processor.settings.signing_secret is None:
                log.warning("no signing secret (TRIPLESEAT_SIGNING_SECRET): webhook signatures are NOT checked")
            self._opened = True
            return self

    async def aclose(self) -> None:
        """Stop the worker (finishing the item in hand) and close what from_settings/from_env opened."""
        if self._worker is not None:
            await self._worker.stop()
            self._worker = None
        await self._resources.aclose()  # what open() opened (nothing for a connector over given adapters)
        self._opened = False

    async def __aenter__(self) -> Connector:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # ---- what it is made of ----------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def mapping(self) -> MappingConfig:
        return self._mapping

    @property
    def processor(self) -> Processor:
        """The use cases underneath (replay, flags, the store), for what this class does not wrap."""
        if self._processor is None:
            raise RuntimeError("the connector is not open: use `async with connector:` or `await connector.open()`")
        return self._processor

    # ---- the use cases ----------------------------------------------------------------------

    async def handle(self, body: bytes, headers: Mapping[str, str] | None = None, *, wait_s: float = 15.0) -> Outcome:
        """Verify X-Signature over the raw body, store the delivery, process it now, and say what happened.

        Raises SignatureError (answer 401; nothing was stored) when a signing secret is set and
        the signature is missing or wrong. An unusable payload is stored as ``rejected``; a body
        seen before answers ``duplicate`` with the first delivery's state. Every flag is
        honoured (kill switch, dry run, allowed locations, order window). Emails are queued in
        the outbox; ``drain()`` or the worker sends them.
        """
        processor = await self._ready()
        given = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
        intake = await processor.accept(
            body,
            signature=given.get("x-signature"),
            correlation_id=accept_correlation_id(given.get("x-correlation-id")),
            header_names=tuple(sorted(given)),
        )
        if intake.status == "accepted":
            await processor.process_now(intake.delivery_id)
        deadline = time.monotonic() + wait_s
        outcome = await self.outcome(intake.delivery_id, status=intake.status)
        # Someone else holds it (our worker, or another process on the same database): wait, bounded.
        while outcome.state in _IN_HAND and (outcome.state == st.PROCESSING or self._worker is not None):
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
            outcome = await self.outcome(intake.delivery_id, status=intake.status)
        return outcome

    def map(self, payload: Mapping[str, Any] | bytes | str) -> RevelOrder | MappingFailure:
        """The Revel order a webhook (or a bare event object) would become; stores and sends nothing.

        Accepts the decoded JSON or the raw body. Raises PayloadError for a payload that is not a
        TripleSeat webhook or event.
        """
        data = decode_json(payload.encode() if isinstance(payload, str) else payload) if isinstance(payload, (bytes, str)) else payload
        if not isinstance(data, Mapping):
            raise PayloadError("$", data, "is not a JSON object")
        # The same reading as Processor.preview, without needing an open connector.
        if "webhook_trigger_type" in data:
            event = WebhookEnvelope.from_payload(data).event
            if event is None:
                raise PayloadError("event", None, "is missing: the webhook carries no event")
        else:
            event = TripleSeatEvent.from_payload(data)
        unmapped = self._processor.settings.unmapped_items if self._processor is not None else self._settings.unmapped_items
        return map_event(event, self._mapping, unmapped=unmapped)

    async def outcome(self, delivery_id: int, *, status: str | None = None) -> Outcome:
        """Where a delivery stands now (after a retry, a replay, or the worker's work)."""
        from tsrevel.entrypoints.views import delivery_record

        record = await delivery_record(await self._ready(), delivery_id)
        delivery, entry, emails = record.delivery, record.order, record.emails
        created = entry is not None and entry.state == st.LEDGER_CREATED
        return Outcome(
            status=status or ("rejected" if delivery.state == st.REJECTED else "accepted"),
            delivery_id=delivery.id,
            correlation_id=delivery.correlation_id,
            state=delivery.state,
            event_id=delivery.event_id,
            order_reference=delivery.order_reference or (entry.reference if created and entry else None),
            revel_order_id=entry.revel_order_id if created and entry else None,
            note=delivery.timeline[-1].note if delivery.timeline else None,
            error=delivery.last_error,
            next_attempt_at=delivery.next_attempt_at,
            emails=tuple(e.message for e in emails),
        )

    async def drain(self, *, max_steps: int = 10_000) -> int:
        """Do every piece of work that is due now: deliveries (retries, opened windows), then emails.

        For a program without a background worker (a cron job, a serverless function). Returns
        the number of steps taken; bounded by max_steps.
        """
        processor = await self._ready()
        steps = 0
        while steps < max_steps and await processor.process_next() is not None:
            steps += 1
        while steps < max_steps and await processor.send_next_email():
            steps += 1
        return steps

    def start_worker(self, *, loops: int | None = None, poll_interval_s: float | None = None) -> None:
        """Run the service's worker loops in this event loop until aclose(): retries, windows and emails happen on their own."""
        from tsrevel.entrypoints.worker import Worker

        if self._worker is not None:
            return
        self._worker = Worker(
            self.processor,
            loops=loops or self._settings.workers,
            poll_interval_s=poll_interval_s or self._settings.poll_interval_s,
            wake=self._wake,
        )
        self._worker.start()

    async def replay(self, delivery_id: int, *, reason: str, actor: str = "library") -> bool:
        """Re-queue a held, skipped, dead or dry-run delivery (audited); False when it is in another state."""
        processor = await self._ready()
        return await processor.replay(delivery_id, actor=actor, reason=reason)

    async def _ready(self) -> Processor:
        if not self._opened:
            await self.open()
        return self.processor


def load_mapping(source: MappingSource) -> MappingConfig:
    """A MappingConfig from itself, a decoded mapping (dict), or the path of a TOML mapping file."""
    if isinstance(source, MappingConfig):
        return source
    if isinstance(source, (str, os.PathLike)):
        from tsrevel.adapters.mapping_toml import load_mapping_file

        return load_mapping_file(Path(source))
    if isinstance(source, Mapping):
        return mapping_from_dict(source)
    raise ConfigError(f"mapping: expected a MappingConfig, a dict or a file path, got {type(source).__name__}")


__all__ = ["Connector", "Outcome", "load_mapping"]
