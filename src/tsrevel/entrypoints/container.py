"""The one composition root: Settings in, adapters and use cases wired, client lifecycles as Resources."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from dependency_injector import containers, providers

from tsrevel.adapters.mapping_toml import TomlMappingFile, load_mapping_file
from tsrevel.adapters.metering import metered_mailer, metered_revel
from tsrevel.adapters.system import SystemClock, UnconfiguredRevel
from tsrevel.bootstrap import UseCases
from tsrevel.domain.errors import StoreUnavailable
from tsrevel.domain.legacy import LegacyReferences, with_legacy_lookup
from tsrevel.domain.mapping import MappingConfig
from tsrevel.domain.ports import Clock, EventSource, Mailer, OrderGateway, Store
from tsrevel.domain.processing import CRASH_POINTS, ProcessingSettings, Processor, no_crash
from tsrevel.domain.retry import RetryPolicy
from tsrevel.domain.safety import OrderPolicy, SafetyFlags
from tsrevel.entrypoints.metrics import PrometheusMetrics
from tsrevel.entrypoints.settings import Settings
from tsrevel.version import __version__

USER_AGENT = f"tsrevel/{__version__}"


def make_store(database_url: str, *, sqlite_synchronous: str = "full", create: bool = True) -> Store:
    """The store named by TSREVEL_DATABASE_URL (no I/O until migrate()); create=False refuses a new, empty database."""
    if database_url.startswith("sqlite:///"):
        from tsrevel.adapters.sqlite_store import SqliteStore

        return SqliteStore.from_url(database_url, synchronous=sqlite_synchronous, create=create)
    from tsrevel.adapters.postgres_store import PostgresStore

    return PostgresStore.from_url(database_url, create=create)


def database_location(database_url: str) -> str:
    """Where the store is, fit to print: the SQLite file's absolute path, or PostgreSQL's host:port/dbname (no password)."""
    if database_url.startswith("sqlite:///"):
        from tsrevel.adapters.sqlite_store import path_from_url

        return str(path_from_url(database_url).absolute())
    from tsrevel.adapters.postgres_store import host_of

    try:
        return f"PostgreSQL at {host_of(database_url)}"
    except Exception:  # an unparsable URL: say nothing of it (it may hold a password)
        return "PostgreSQL (unparsable URL)"


# How long start-up and the CLI try to reach the database before they give up and say why.
DATABASE_OPEN_S = 10.0


async def probe_database(database_url: str, *, within_s: float = DATABASE_OPEN_S) -> None:
    """PostgreSQL: connect once, retrying within the bound; StoreUnavailable names the last reason and the bound."""
    if database_url.startswith("sqlite:///"):
        return  # opening the file says why at once; nothing to wait for
    from tsrevel.adapters.postgres_store import PostgresStore

    store = PostgresStore.from_url(database_url)
    try:
        await store.probe(within_s=within_s)
    finally:
        await store.close()


async def check_database(database_url: str, *, sqlite_synchronous: str = "full", create: bool = True, within_s: float = DATABASE_OPEN_S) -> None:
    """Open the store, apply migrations and close it, within a bound: StoreUnavailable (or ConfigError) says why."""
    await probe_database(database_url, within_s=within_s)
    store = make_store(database_url, sqlite_synchronous=sqlite_synchronous, create=create)
    try:
        try:
            async with asyncio.timeout(within_s):
                await store.migrate()
        except TimeoutError:
            raise StoreUnavailable(f"no answer; gave up after {within_s:g} s") from None
    finally:
        await store.close()


async def store_resource(database_url: str, sqlite_synchronous: str = "full", create: bool = True) -> AsyncIterator[Store]:
    """Open the store and apply migrations before anything uses it; close it at shutdown."""
    store = make_store(database_url, sqlite_synchronous=sqlite_synchronous, create=create)
    await store.migrate()
    try:
        yield store
    finally:
        await store.close()


async def http_client_resource(base_url: str | None, timeout_s: float) -> AsyncIterator[httpx.AsyncClient | None]:
    """One pooled AsyncClient per outside API, or None when that API is not configured."""
    if not base_url:
        yield None
        return
    client = httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
        limits=httpx.Limits(max_connections=10, max_keepalive_connections=10),
        headers={"User-Agent": USER_AGENT},
    )
    try:
        yield client
    finally:
        await client.aclose()


def make_revel(settings: Settings, client: httpx.AsyncClient | None) -> OrderGateway:
    """Revel over its pooled client when REVEL_* is set; otherwise UnconfiguredRevel, whose every call says what to set."""
    if client is None or not settings.revel_configured:
        return UnconfiguredRevel()
    from tsrevel.adapters.revel_http import HttpxRevelGateway

    assert settings.revel_api_key is not None and settings.revel_api_secret is not None
    return HttpxRevelGateway(
        client, api_key=settings.revel_api_key, api_secret=settings.revel_api_secret,
        min_interval_s=settings.revel_min_interval_s, deadline_s=settings.call_deadline_s,
    )


def legacy_lookup(gateway: OrderGateway, settings: Settings, mapping: MappingConfig) -> OrderGateway:
    """The find-before-create lookup also tries REVEL_LEGACY_LOCAL_IDS, in every mapped establishment (docs/migrating.md)."""
    establishments = {v.revel_establishment for v in (*mapping.locations.values(), *mapping.sites.values())}
    return with_legacy_lookup(gateway, LegacyReferences(settings.revel_legacy_local_ids), establishments=establishments)


async def sendgrid_client_resource(settings: Settings) -> AsyncIterator[httpx.AsyncClient | None]:
    """One pooled AsyncClient for SendGrid's mail/send (every email over one kept-alive connection), or None without a key."""
    if not settings.sendgrid_configured:
        yield None
        return
    client = httpx.AsyncClient(
        timeout=settings.sendgrid_timeout_s,  # connect and each read, as the library's urllib timeout
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
    )
    try:
        yield client
    finally:
        await client.aclose()


def make_mailer(settings: Settings, http: httpx.AsyncClient | None = None) -> Mailer | None:
    """SendGrid when a key is set; otherwise None, and emails are recorded in the outbox as unsent."""
    if not settings.sendgrid_configured:
        return None
    from tsrevel.adapters.sendgrid_mail import SendGridMailer, make_sendgrid_client

    assert settings.sendgrid_api_key is not None and settings.email_from is not None
    client = make_sendgrid_client(
        settings.sendgrid_api_key, host=settings.sendgrid_api_host, timeout_s=settings.sendgrid_timeout_s
    )
    return SendGridMailer(
        client, sender=settings.email_from, recipients=settings.email_to, timeout_s=settings.sendgrid_timeout_s,
        deadline_s=settings.call_deadline_s, http=http,
    )


def make_event_source(
    settings: Settings, client: httpx.AsyncClient | None, store: Store | None = None, clock: Clock | None = None
) -> EventSource | None:
    """The TripleSeat API (sync by id, the catch-up poll) when TRIPLESEAT_CLIENT_* is set; otherwise None."""
    if client is None or not settings.tripleseat_configured:
        return None
    from tsrevel.adapters.tripleseat_api import HttpxTripleSeatSource, StoreTokenStore

    assert settings.tripleseat_client_id is not None and settings.tripleseat_client_secret is not None
    return HttpxTripleSeatSource(
        client,
        client_id=settings.tripleseat_client_id,
        client_secret=settings.tripleseat_client_secret,
        refresh_token=settings.tripleseat_refresh_token,
        # Rotated refresh tokens are kept in the store, so a restart (or another replica) uses the newest.
        token_store=StoreTokenStore(store, clock or SystemClock()) if store is not None else None,
        deadline_s=settings.call_deadline_s,
    )


def make_crash_hook(crash_at: str | None) -> Callable[[str], None]:
    """Test-only seam: exit at once, as SIGKILL would, at the named point (TSREVEL_TEST_CRASH_AT)."""
    if not crash_at:
        return no_crash
    points = {p.strip() for p in crash_at.split(",")}
    unknown = points - set(CRASH_POINTS)
    if unknown:
        raise ValueError(f"TSREVEL_TEST_CRASH_AT: unknown point(s) {sorted(unknown)}; known: {', '.join(CRASH_POINTS)}")

    def crash(point: str) -> None:
        if point in points:
            os._exit(137)  # no cleanup, no flush: exactly what a SIGKILL leaves behind

    return crash


def processing_settings(settings: Settings, *, own_revel: bool = True) -> ProcessingSettings:
    """The use cases' knobs; own_revel=False when the caller supplies its Revel adapter (REVEL_* unused)."""
    return ProcessingSettings(
        order_policy=OrderPolicy(order_on_statuses=settings.order_on_statuses),
        unmapped_items=settings.unmapped_items,
        retry=RetryPolicy(
            max_attempts=settings.max_attempts,
            base_s=settings.retry_base_s,
            cap_s=settings.retry_cap_s,
            retry_after_cap_s=settings.retry_after_cap_s,
        ),
        email_retry=RetryPolicy(
            max_attempts=max(settings.max_attempts, 10),
            base_s=max(settings.retry_base_s, 1.0),
            cap_s=settings.retry_cap_s,
            retry_after_cap_s=settings.retry_after_cap_s,
        ),
        lease_s=settings.lease_s,
        email_to=settings.email_to,
        signing_secret=settings.signing_secret,
        allow_unsigned=settings.allow_unsigned,
        revel_missing=settings.revel_missing if own_revel else (),
        order_window_hours=settings.order_window_hours,
    )


def boot_flags(settings: Settings) -> SafetyFlags:
    return SafetyFlags(
        enable_connector=settings.enable_connector,
        dry_run=settings.dry_run,
        allowed_locations=settings.allowed_locations,
    )


class Container(containers.DeclarativeContainer):
    """Everything tsrevel is made of; tests override providers (revel, mailer, store, clock...)."""

    settings = providers.Dependency(instance_of=Settings)

    clock = providers.Singleton(SystemClock)
    mapping = providers.Singleton(load_mapping_file, settings.provided.mapping_file)
    mapping_source = providers.Singleton(TomlMappingFile, settings.provided.mapping_file)
    # The operator CLI overrides store_may_create with False: it must not make a new, empty database.
    store_may_create = providers.Object(True)
    store = providers.Resource(
        store_resource, settings.provided.database_url, settings.provided.sqlite_synchronous, store_may_create
    )

    revel_client = providers.Resource(
        http_client_resource, settings.provided.revel_base_url, settings.provided.revel_timeout_s
    )
    tripleseat_client = providers.Resource(
        http_client_resource, settings.provided.tripleseat_api_url, settings.provided.revel_timeout_s
    )
    revel = providers.Singleton(make_revel, settings, revel_client)
    sendgrid_client = providers.Resource(sendgrid_client_resource, settings)
    mailer = providers.Singleton(make_mailer, settings, sendgrid_client)
    events = providers.Singleton(make_event_source, settings, tripleseat_client, store, clock)
    # One registry per container (so per app): tests build many apps in one process.
    metrics = providers.Singleton(PrometheusMetrics)

    processing = providers.Callable(processing_settings, settings)
    # The use cases over these adapters (tsrevel/bootstrap.py builds the one Processor).
    use_cases = providers.Container(
        UseCases,
        store=store,
        # Legacy lookup outside the meter: each Revel call it makes is timed and counted on its own.
        revel=providers.Singleton(legacy_lookup, providers.Singleton(metered_revel, revel, metrics), settings, mapping),
        mapping=mapping,
        boot_flags=providers.Callable(boot_flags, settings),
        settings=processing,
        clock=clock,
        mailer=providers.Singleton(metered_mailer, mailer, metrics),
        events=events,
        feed=events,  # the same TripleSeat adapter: sync by id and the catch-up poll
        crash=providers.Callable(make_crash_hook, settings.provided.crash_at),
        metrics=metrics,
        mapping_source=mapping_source,
    )
    processor = use_cases.processor
    wake = use_cases.wake


def build_container(settings: Settings) -> Container:
    """A container for these settings; nothing is opened until its resources are initialised."""
    return Container(settings=settings)


async def resolve(value: Any) -> Any:
    """dependency-injector answers an awaitable once async resources are involved; accept both."""
    return await value if inspect.isawaitable(value) else value


@asynccontextmanager
async def opened(container: containers.Container) -> AsyncIterator[Processor]:
    """Open the container's resources, hand over its Processor, close them: the HTTP lifespan, the CLI, the library."""
    await resolve(container.init_resources())
    try:
        yield await resolve(container.processor())
    finally:
        await resolve(container.shutdown_resources())
