"""The tsrevel command line: a thin layer over the same container and store as the service.

Every command but ``serve``, ``verify`` and ``drill`` opens the store the service uses, so it works
while the service is down. Operator actions go through the Processor's use cases, which write the
audit log (who, when, why). Exit codes: 0 done or clean, 1 refused or problems found, 2 bad
configuration, bad usage or an outside system that cannot be read.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import click

from tsrevel.domain import deliveries as st
from tsrevel.domain.errors import ConfigError, GatewayError, MappingRejected, NotFound, StoreUnavailable, TsrevelError
from tsrevel.entrypoints import console
from tsrevel.entrypoints.console import echo_table, mark, when
from tsrevel.entrypoints.settings import Settings
from tsrevel.version import __version__

T = TypeVar("T")

# The operator commands import tsrevel.entrypoints.operator (the container, the store, the adapters) when
# they run: `verify` right after a rollback, and `--help`, should not pay for loading all of that.


def load_settings() -> Settings:
    """Settings from the environment, or a clear message and exit code 2."""
    try:
        return Settings.from_env(os.environ)
    except ConfigError as exc:
        click.echo(f"tsrevel: configuration error: {exc}", err=True)
        sys.exit(2)


@click.group()
@click.version_option(__version__, prog_name="tsrevel")
def main() -> None:
    """tsrevel: TripleSeat -> Revel connector."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Run the HTTP service and its worker until SIGTERM."""
    import uvicorn

    from tsrevel.entrypoints.container import build_container
    from tsrevel.entrypoints.http import create_app

    settings = load_settings()
    container = build_container(settings)
    try:
        container.mapping()  # a bad mapping file stops start-up here, with the file and the key
    except ConfigError as exc:
        click.echo(f"tsrevel: configuration error: {exc}", err=True)
        sys.exit(2)
    _check_database(settings)
    url = f"http://{host}:{port}"
    click.echo(f"tsrevel {__version__} serving on {url} (DRY_RUN={settings.dry_run}, ENABLE_CONNECTOR={settings.enable_connector})", err=True)
    click.echo("Send the example webhook:", err=True)
    if settings.signing_secret:
        click.echo(
            "  sig=$(openssl dgst -sha256 -hmac \"$TRIPLESEAT_SIGNING_SECRET\" -hex < examples/webhook-definite.json | sed 's/^.* //')\n"
            f"  curl -sS -X POST {url}/webhooks/tripleseat -H 'Content-Type: application/json' "
            "-H \"X-Signature: $sig\" --data-binary @examples/webhook-definite.json",
            err=True,
        )
    else:
        click.echo(
            f"  curl -sS -X POST {url}/webhooks/tripleseat -H 'Content-Type: application/json' "
            "--data-binary @examples/webhook-definite.json",
            err=True,
        )
    click.echo(f"Then look at it: curl -sS {url}/health", err=True)
    if settings.admin_token:
        # The token itself is never printed: `make run` keeps its generated one in var/admin-token.
        token_source = "$(cat var/admin-token)" if os.path.exists("var/admin-token") else "$TSREVEL_ADMIN_TOKEN"
        click.echo(f"  curl -sS -H \"Authorization: Bearer {token_source}\" {url}/admin/deliveries", err=True)
    else:
        click.echo("  (admin endpoints answer 403 until TSREVEL_ADMIN_TOKEN is set)", err=True)
    app = create_app(container)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal with the handler that
    # was there before it: make that handler a clean exit, so a stop after draining is exit 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=15)


def _check_database(settings: Settings) -> None:
    """Open the database (bounded) before the banner: an unusable one is one line and exit 2, not a traceback."""
    from tsrevel.entrypoints.container import check_database, database_location
    from tsrevel.entrypoints.operator import database_problem

    try:
        with _log_threshold(logging.CRITICAL, "tsrevel.store"), _log_threshold(logging.CRITICAL, "psycopg"):
            asyncio.run(check_database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous))
    except StoreUnavailable as exc:
        _fail(database_problem(settings.database_url, exc), 2)
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", 2)
    click.echo(f"database {database_location(settings.database_url)}, mapping file {os.path.abspath(settings.mapping_file)}", err=True)


def _exit_cleanly(signum: int, frame: object) -> None:
    sys.exit(0)


# ---- plumbing shared by the operator commands ------------------------------------------------------


def os_user() -> str:
    """The operating-system user: the default actor in the audit log."""
    try:
        return getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (a bare container): still record something
        return "unknown-user"


def _actor_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--actor", default=os_user, show_default="the OS user",
        help="Who is acting, as recorded in the audit log.",
    )(fn)


def _reason_option(default: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--reason, required unless a default is given (click 8.5 treats an explicit default=None as a value)."""
    if default is None:
        return click.option("--reason", required=True, callback=_some_text, help="Why, as recorded in the audit log.")
    return click.option("--reason", default=default, show_default=True, callback=_some_text, help="Why, as recorded in the audit log.")


def _some_text(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise click.BadParameter("must say why (it goes into the audit log)")
    return value.strip()[:500] if value is not None else None


def _run(
    action: Callable[[Any], Awaitable[T]], *, need_mapping: bool = False, settings: Settings | None = None, need_store: bool = True
) -> T:
    """Open the service's container, run action(session), close it; domain errors become messages and exit codes."""
    from tsrevel.entrypoints.operator import open_session

    settings = settings or load_settings()

    async def go() -> T:
        async with open_session(settings, need_mapping=need_mapping, need_store=need_store) as session:
            if session.mapping_problem:
                click.echo(f"tsrevel: warning: mapping file not loaded ({session.mapping_problem})", err=True)
            return await action(session)

    try:
        # The store's own outage line would repeat the one-line message below.
        with _log_threshold(logging.ERROR), _log_threshold(logging.CRITICAL, "tsrevel.store"), _log_threshold(logging.CRITICAL, "psycopg"):
            return asyncio.run(go())
    except StoreUnavailable as exc:
        from tsrevel.entrypoints.operator import database_problem

        _fail(database_problem(settings.database_url, exc), 2)
    except MappingRejected as exc:
        _fail(str(exc), 2)
    except ConfigError as exc:
        _fail(f"configuration error: {exc}", 2)
    except GatewayError as exc:
        _fail(f"{exc}", 2)
    except TsrevelError as exc:  # OperatorError, InvalidRequest, NotFound: refused, with the reason
        _fail(str(exc), 1)
    raise AssertionError("unreachable")  # _fail exits


def _fail(message: str, code: int) -> None:
    click.echo(f"tsrevel: {message}", err=True)
    sys.exit(code)


def _flags_rows(flags: Any, overrides: Any) -> list[list[str]]:
    def source(value: bool | None) -> str:
        if value is None:
            return "environment"
        return f"runtime override by {overrides.actor} at {when(overrides.updated_at)}: {overrides.reason}"

    def shown(value: bool) -> str:
        return "true" if value else "false"

    return [
        ["ENABLE_CONNECTOR", shown(flags.enable_connector), source(overrides.enable_connector)],
        ["DRY_RUN", shown(flags.dry_run), source(overrides.dry_run)],
        ["ALLOWED_LOCATIONS", ",".join(sorted(flags.allowed_locations)) or "(every mapped location)", "environment"],
    ]


def _json_default(value: object) -> object:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"not JSON: {type(value).__name__}")


def _echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=_json_default))


@contextmanager
def _log_threshold(level: int, name: str = "tsrevel") -> Iterator[None]:
    """Raise the threshold of tsrevel's loggers for one command: its output already says what the log lines would."""
    logger = logging.getLogger(name)
    was = logger.level
    logger.setLevel(max(level, was))
    try:
        yield
    finally:
        logger.setLevel(was)


# ---- status and flags ------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def status(as_json: bool) -> None:
    """Flags in force and their source, deliveries by state, oldest pending, last order, last operator action."""
    from tsrevel.entrypoints.container import database_location
    from tsrevel.entrypoints.operator import read_status, redact_url

    settings = load_settings()
    s = _run(read_status, settings=settings)
    database, mapping_file = database_location(settings.database_url), os.path.abspath(settings.mapping_file)
    if as_json:
        _echo_json({
            "store": redact_url(settings.database_url),
            "database": database,
            "mapping_file": mapping_file,
            "mapping_reload": s.mapping_reload,
            "flags": {"enable_connector": s.flags.enable_connector, "dry_run": s.flags.dry_run, "allowed_locations": sorted(s.flags.allowed_locations)},
            "override": {"enable_connector": s.overrides.enable_connector, "dry_run": s.overrides.dry_run, "actor": s.overrides.actor,
                         "reason": s.overrides.reason, "updated_at": s.overrides.updated_at},
            "counts": s.counts,
            "oldest_pending_age_s": s.oldest_pending_age_s,
            "last_order": {"reference": s.last_order.reference, "revel_order_id": s.last_order.revel_order_id,
                           "state": s.last_order.state, "created_at": s.last_order.created_at} if s.last_order else None,
        })
        return
    click.echo(f"tsrevel {__version__}, store {redact_url(settings.database_url)}")
    click.echo(f"Database: {database}")
    reload = s.mapping_reload
    reloaded = f" (last reload: #{reload['generation']} by {reload['actor']} at {reload['at']})" if reload else ""
    click.echo(f"Mapping file: {mapping_file}{reloaded}")
    click.echo()
    echo_table(["FLAG", "VALUE", "SOURCE"], _flags_rows(s.flags, s.overrides))
    click.echo()
    echo_table(["STATE", "DELIVERIES"], [[state, n] for state, n in sorted(s.counts.items())], empty="No deliveries stored.")
    click.echo()
    click.echo(f"Oldest pending delivery: {console.age(s.oldest_pending_age_s) + ' old' if s.oldest_pending_age_s is not None else 'none'}")
    if s.last_order:
        o = s.last_order
        click.echo(f"Last order: {o.reference} ({o.state}, Revel id {o.revel_order_id or '-'}) at {when(o.created_at)}")
    else:
        click.echo("Last order: none")
    if s.last_action:
        a = s.last_action
        click.echo(f"Last operator action: {a.action} by {a.actor} at {when(a.at)}: {a.detail} ({a.reason})")


@main.group()
def flags() -> None:
    """Show or change the kill switch and DRY_RUN at runtime (every replica follows within a second)."""


@flags.command("show")
def flags_show() -> None:
    """The flags in force and where each comes from."""

    async def read(session: Any) -> tuple[Any, Any]:
        return await session.processor.flags(), await session.store.get_flags()

    current, overrides = _run(read)
    echo_table(["FLAG", "VALUE", "SOURCE"], _flags_rows(current, overrides))


@flags.command("set")
@click.option("--enable-connector/--disable-connector", "enable_connector", default=None,
              help="Kill switch: --disable-connector holds every delivery (stored, answered 200, not processed).")
@click.option("--dry-run/--no-dry-run", "dry_run", default=None, help="Map and record without writing to Revel.")
@_reason_option()
@_actor_option
def flags_set(enable_connector: bool | None, dry_run: bool | None, reason: str, actor: str) -> None:
    """Override ENABLE_CONNECTOR and/or DRY_RUN at runtime; the override wins over the environment."""
    if enable_connector is None and dry_run is None:
        raise click.UsageError("give --enable-connector/--disable-connector and/or --dry-run/--no-dry-run")
    settings = load_settings()
    if dry_run is False and not settings.revel_configured:
        _fail("--no-dry-run needs REVEL_BASE_URL, REVEL_API_KEY and REVEL_API_SECRET to be configured", 1)

    async def act(session: Any) -> tuple[Any, Any]:
        await session.processor.set_flags(enable_connector=enable_connector, dry_run=dry_run, actor=actor, reason=reason)
        return await session.processor.flags(), await session.store.get_flags()

    current, overrides = _run(act, settings=settings)
    echo_table(["FLAG", "VALUE", "SOURCE"], _flags_rows(current, overrides))
    if enable_connector is True:
        click.echo("Held deliveries stay held until replayed: tsrevel replay --state held --reason ...", err=True)


@flags.command("reset")
@_reason_option()
@_actor_option
def flags_reset(reason: str, actor: str) -> None:
    """Drop the runtime overrides: back to the ENABLE_CONNECTOR and DRY_RUN of the environment."""

    async def act(session: Any) -> tuple[Any, Any]:
        await session.processor.clear_flags(actor=actor, reason=reason)
        return await session.processor.flags(), await session.store.get_flags()

    current, overrides = _run(act)
    echo_table(["FLAG", "VALUE", "SOURCE"], _flags_rows(current, overrides))


# ---- deliveries ------------------------------------------------------------------------------------


@main.group()
def deliveries() -> None:
    """Look at stored webhook deliveries."""


@deliveries.command("list")
@click.option("--state", type=click.Choice(st.STATES), help="Only deliveries in this state.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def deliveries_list(state: str | None, limit: int, as_json: bool) -> None:
    """Recent deliveries, newest first."""

    async def read(session: Any) -> list[Any]:
        return await session.store.list_deliveries(state=state, limit=limit)

    items = _run(read)
    if as_json:
        _echo_json([_delivery_data(d) for d in items])
        return
    rows = [
        [d.id, d.state, d.event_id, d.trigger_type, d.attempts, d.received_at, d.updated_at, d.order_reference or d.last_error or ""]
        for d in items
    ]
    echo_table(["ID", "STATE", "EVENT", "TRIGGER", "ATTEMPTS", "RECEIVED", "UPDATED", "ORDER / LAST ERROR"], rows, empty="No deliveries.")


def _delivery_data(d: Any) -> dict[str, Any]:
    return {
        "id": d.id, "state": d.state, "event_id": d.event_id, "trigger_type": d.trigger_type, "correlation_id": d.correlation_id,
        "received_at": d.received_at, "updated_at": d.updated_at, "attempts": d.attempts, "next_attempt_at": d.next_attempt_at,
        "last_error": d.last_error, "order_reference": d.order_reference,
    }


@deliveries.command("show")
@click.argument("delivery_id", type=int)
@click.option("--body", is_flag=True, help="Also print the raw webhook body.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def deliveries_show(delivery_id: int, body: bool, as_json: bool) -> None:
    """One delivery: where it stands, its timeline, its emails and its event's order."""

    async def read(session: Any) -> tuple[Any, Any, Any]:
        d = await session.store.get_delivery(delivery_id)
        emails = await session.store.list_emails(delivery_id=delivery_id)
        order = await session.store.get_order(d.event_id) if d.event_id else None
        return d, emails, order

    d, emails, order = _run(read)
    if as_json:
        data = _delivery_data(d)
        data["timeline"] = [{"at": t.at, "state": t.state, "note": t.note} for t in d.timeline]
        data["emails"] = [{"id": e.id, "kind": e.message.kind, "state": e.state, "attempts": e.attempts, "last_error": e.last_error} for e in emails]
        data["order"] = {"reference": order.reference, "state": order.state, "revel_order_id": order.revel_order_id, "delivery_id": order.delivery_id} if order else None
        if body:
            data["body"] = d.body
        _echo_json(data)
        return
    for label, value in [
        ("Delivery", d.id), ("State", d.state), ("Event", d.event_id or "-"), ("Trigger", d.trigger_type or "-"),
        ("Correlation id", d.correlation_id), ("Received", when(d.received_at)), ("Updated", when(d.updated_at)),
        ("Attempts", d.attempts), ("Next attempt", when(d.next_attempt_at)), ("Last error", d.last_error or "-"),
        ("Order", f"{order.reference} ({order.state}, Revel id {order.revel_order_id or '-'}, by delivery {order.delivery_id})" if order else "-"),
    ]:
        click.echo(f"{label + ':':<16}{value}")
    click.echo()
    echo_table(["AT", "STATE", "NOTE"], [[t.at, t.state, t.note] for t in d.timeline], empty="No timeline.")
    click.echo()
    echo_table(["EMAIL", "KIND", "STATE", "ATTEMPTS", "LAST ERROR"], [[e.id, e.message.kind, e.state, e.attempts, e.last_error] for e in emails], empty="No emails.")
    if d.state in st.REPLAYABLE_STATES:
        click.echo(f"\nReplayable: tsrevel replay {d.id} --reason ...   or never: tsrevel discard {d.id} --reason ...")
    if body:
        click.echo()
        click.echo(d.body.decode("utf-8", "replace"))


# ---- replay, discard, forget, prune -------------------------------------------------------------------


@main.command()
@click.argument("delivery_id", type=int, required=False)
@click.option("--state", type=click.Choice(sorted(st.REPLAYABLE_STATES)), help="Re-queue every delivery in this state, in arrival order.")
@_reason_option()
@_actor_option
@click.option("--wait", is_flag=True, help="Wait (with progress) until the running service has processed them.")
@click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(0.1), help="Seconds --wait waits at most.")
def replay(delivery_id: int | None, state: str | None, reason: str, actor: str, wait: bool, timeout: float) -> None:
    """Re-queue one held, skipped, dead or dry-run delivery (by ID), or every one in a state (--state)."""
    if (delivery_id is None) == (state is None):
        raise click.UsageError("give a delivery ID or --state, not both")
    from tsrevel.entrypoints.operator import OperatorError


    async def act(session: Any) -> list[int]:
        if delivery_id is not None:
            current = await session.store.get_delivery(delivery_id)
            if not await session.processor.replay(delivery_id, actor=actor, reason=reason):
                replayable = ", ".join(sorted(st.REPLAYABLE_STATES))
                raise OperatorError(f"delivery {delivery_id} is {current.state}: only {replayable} deliveries can be replayed")
            return [delivery_id]
        chosen = [d.id for d in await session.store.list_deliveries(state=state, limit=1_000_000)]
        count = await session.processor.replay_state(state, actor=actor, reason=reason)
        if count != len(chosen):  # deliveries came or went between the listing and the replay: wait for what we saw
            click.echo(f"tsrevel: note: {count} re-queued, {len(chosen)} listed a moment before", err=True)
        return sorted(chosen)

    ids = _run(act)
    click.echo(f"Re-queued {len(ids)} deliver{'y' if len(ids) == 1 else 'ies'}" + (f" ({state})" if state else f" ({delivery_id})") + ".")
    if wait and ids:
        _wait_for(ids, timeout)


def _wait_for(ids: list[int], timeout: float) -> None:
    """Poll the store until none of ids is pending any more, with a progress bar."""
    from tsrevel.entrypoints.operator import pending_of

    deadline = time.monotonic() + timeout
    with console.progress(len(ids), "Processing") as bar:
        left = ids

        async def poll(session: Any) -> list[int]:
            nonlocal left
            while True:
                now_left = await pending_of(session, left)
                bar.update(len(left) - len(now_left))
                left = now_left
                if not left or time.monotonic() >= deadline:
                    return left
                await asyncio.sleep(0.25)

        left = _run(poll)
    if left:
        _fail(f"{len(left)} of {len(ids)} still pending after {timeout:g}s (is the service running?): {', '.join(map(str, left[:20]))}", 1)

    async def outcome(session: Any) -> dict[str, int]:
        counts: dict[str, int] = {}
        for delivery_id in ids:
            try:
                d = await session.store.get_delivery(delivery_id)
            except NotFound:
                continue
            counts[d.state] = counts.get(d.state, 0) + 1
        return counts

    counts = _run(outcome)
    click.echo("Processed: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))


@main.command()
@click.argument("delivery_id", type=int)
@_reason_option()
@_actor_option
def discard(delivery_id: int, reason: str, actor: str) -> None:
    """Give up on a held, skipped, dead or dry-run delivery for good: it becomes ignored and is never replayed."""

    async def act(session: Any) -> tuple[bool, str]:
        current = await session.store.get_delivery(delivery_id)
        return await session.processor.discard(delivery_id, actor=actor, reason=reason), current.state

    done, was = _run(act)
    if not done:
        _fail(f"delivery {delivery_id} is {was}: only {', '.join(sorted(st.DISCARDABLE_STATES))} deliveries can be discarded", 1)
    click.echo(f"Delivery {delivery_id} discarded ({was} -> ignored).")


@main.command()
@click.argument("event_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_reason_option()
@_actor_option
def forget(event_id: str, yes: bool, reason: str, actor: str) -> None:
    """Forget the order recorded for a TripleSeat event, after its order was cleaned up in Revel by hand.

    The next delivery of the event (for example after the venue re-saves it in TripleSeat) may then
    create its order again. Only do this once the order is gone from Revel: tsrevel looks Revel up
    before creating, so an order still there is found, not duplicated.
    """

    async def look(session: Any) -> Any:
        return await session.store.get_order(event_id)

    entry = _run(look)
    if entry is None:
        _fail(f"no order is recorded for event {event_id}; nothing to forget", 1)
    click.echo(f"Event {event_id}: {entry.reference}, {entry.state}, Revel order {entry.revel_order_id or '-'}, made by delivery {entry.delivery_id} at {when(entry.created_at)}")
    if not yes:
        click.confirm("Forget it, so that a later delivery may create this event's order again?", abort=True)

    async def act(session: Any) -> Any:
        return await session.processor.forget(event_id, actor=actor, reason=reason)

    if _run(act) is None:
        _fail(f"event {event_id} had no ledger entry any more", 1)
    click.echo(f"Forgotten. The next delivery of event {event_id} may create {entry.reference} again.")


@main.command()
@click.option("--older-than-days", type=click.IntRange(min=1), default=None,
              help="Delete finished deliveries last updated more than this many days ago [default: TSREVEL_RETENTION_DAYS or 90].")
@click.option("--include-replayable", is_flag=True, help="Also delete old held, skipped, dead and dry-run deliveries (refused otherwise).")
@_reason_option(default="retention")
@_actor_option
def prune(older_than_days: int | None, include_replayable: bool, reason: str, actor: str) -> None:
    """Delete old finished deliveries with their timelines and sent emails; the order ledger and audit log stay."""
    from tsrevel.entrypoints.operator import OperatorError, replayable_older_than

    settings = load_settings()
    days = older_than_days or settings.retention_days

    async def act(session: Any) -> int:
        cutoff = session.processor.clock.now() - timedelta(days=days)
        unfinished = await replayable_older_than(session, cutoff)
        if unfinished and not include_replayable:
            shown = ", ".join(f"{n} {s}" for s, n in sorted(unfinished.items()))
            raise OperatorError(f"{shown} deliveries are older than {days} days and could still be replayed; "
                                "replay or discard them first, or pass --include-replayable")
        return await session.processor.prune(older_than=cutoff, actor=actor, reason=reason)

    count = _run(act, settings=settings)
    click.echo(f"Pruned {count} deliver{'y' if count == 1 else 'ies'} last updated more than {days} days ago.")


@main.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def audit(limit: int, as_json: bool) -> None:
    """Operator actions, newest first: who, when, what and why (CLI users and the admin API)."""

    async def read(session: Any) -> list[Any]:
        return await session.store.list_audit(limit=limit)

    entries = _run(read)
    if as_json:
        _echo_json([{"id": a.id, "at": a.at, "actor": a.actor, "action": a.action, "detail": a.detail, "reason": a.reason} for a in entries])
        return
    echo_table(["AT", "ACTOR", "ACTION", "DETAIL", "REASON"], [[a.at, a.actor, a.action, a.detail, a.reason] for a in entries], empty="No operator actions recorded.")


# ---- the mapping file ---------------------------------------------------------------------------------


@main.group()
def mapping() -> None:
    """The mapping file: have the running service(s) read it again, without a restart."""


@mapping.command("reload")
@_reason_option()
@_actor_option
def mapping_reload(reason: str, actor: str) -> None:
    """Validate TSREVEL_MAPPING_FILE and have every running service read it again before its next delivery.

    The reload is recorded in the store the services share, so every replica follows it (each reads
    its own TSREVEL_MAPPING_FILE); it is audited. A file that does not validate changes nothing:
    exit 2 with the file, the line and the problem.
    """

    async def act(session: Any) -> Any:
        return await session.processor.reload_mapping(actor=actor, reason=reason)

    status = _run(act)
    click.echo(f"Mapping reload #{status.generation} recorded: {status.describe()}.")
    click.echo("Every running service reads the file again before its next delivery; replay what failed: tsrevel replay --state dead --reason ...")


# ---- Revel checks ------------------------------------------------------------------------------------


@main.command("check-mapping")
def check_mapping() -> None:
    """Check that every establishment and product in the mapping file exists in Revel (read-only)."""
    from tsrevel.entrypoints.operator import check_mapping as run_check_mapping
    from tsrevel.entrypoints.operator import revel_lister

    settings = load_settings()

    async def act(session: Any) -> Any:
        return await run_check_mapping(session.processor.mapping, await revel_lister(session))

    result = _run(act, need_mapping=True, settings=settings, need_store=False)
    click.echo(f"{settings.mapping_file}: {result.establishments_checked} establishment(s), {result.products_checked} product(s) checked against Revel")
    for problem in result.problems:
        click.echo(f"{mark(False)} {problem}")
    if not result.ok:
        _fail(f"{len(result.problems)} mapping problem(s)", 1)
    click.echo(f"{mark(True)} every establishment and product exists in Revel")


@main.command()
@click.option("--from", "date_from", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day (UTC), YYYY-MM-DD.")
@click.option("--to", "date_to", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day (UTC), included.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, allow_dash=True), help="Also write the report as JSON to FILE ('-' for stdout).")
@click.option("--chunk-days", default=1, show_default=True, type=click.IntRange(1, 31), help="Days of Revel orders per request window.")
def reconcile(date_from: datetime, date_to: datetime, json_file: str | None, chunk_days: int) -> None:
    """Compare the order ledger with Revel's tripleseat-* orders: missing, duplicate and orphan orders. Read-only.

    Exits 1 when any problem is found. Nothing is created, changed or voided: each problem is for a person to settle.
    """
    from tsrevel.entrypoints.operator import report_json, revel_lister, run_reconcile

    start, end = date_from.date(), date_to.date()
    if json_file and json_file != "-":
        folder = os.path.dirname(os.path.abspath(json_file))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            _fail(f"--json {json_file}: cannot write there (directory {folder} does not exist or is not writable)", 2)

    async def act(session: Any) -> Any:
        revel = await revel_lister(session)
        with console.progress(0, "Reading Revel orders") as bar:

            def advance(done: int, total: int) -> None:
                bar.length = total  # known once the windows and establishments are
                bar.update(1)

            return await run_reconcile(session, revel, start, end, chunk_days=chunk_days, on_progress=advance)

    run = _run(act)
    report = run.report
    data = report_json(run)
    if json_file == "-":
        _echo_json(data)
    else:
        if json_file:
            try:
                with open(json_file, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, indent=2, sort_keys=True)
            except OSError as exc:  # a one-line answer, not a traceback
                _fail(f"--json {json_file}: cannot write the report ({exc.strerror or exc})", 2)
        click.echo(f"Reconcile {start} .. {end}: {report.ledger_checked} ledger row(s), {report.orders_checked} Revel order(s) "
                   f"in establishment(s) {', '.join(map(str, run.establishments)) or '(none)'}"
                   + (f"; {report.legacy_orders} under a legacy reference (REVEL_LEGACY_LOCAL_IDS)" if report.legacy_orders else ""))
        rows = (
            [["duplicate", d.reference, ", ".join(map(str, d.order_ids)), d.entry.revel_order_id if d.entry else "-"] for d in report.duplicates]
            + [["missing", m.reference, "-", m.entry.revel_order_id] for m in report.missing]
            + [["orphan", o.reference, o.order_id, "-"] for o in report.orphans]
        )
        echo_table(["PROBLEM", "REFERENCE", "REVEL ORDER(S)", "LEDGER'S REVEL ID"], rows, empty=f"{mark(True)} ledger and Revel agree")
    if not report.ok:
        _fail(f"{len(report.problems())} problem(s); nothing was changed", 1)


@main.command("import-legacy")
@click.option("--locations", "locations_path", required=True, type=click.Path(dir_okay=False),
              help="The previous connector's config/locations.json.")
@click.option("--env", "env_path", type=click.Path(dir_okay=False), help="The previous connector's .env (secrets are read, never printed).")
@click.option("--out", default="mapping.toml", show_default=True, type=click.Path(dir_okay=False), help="The mapping file to write (never overwritten).")
def import_legacy(locations_path: str, env_path: str | None, out: str) -> None:
    """Convert the previous connector's locations.json and .env into a mapping file and the variables to set.

    Writes only --out; prints the variables, which secrets to copy (by name), and every value it could not carry over.
    """
    from tsrevel.entrypoints.legacy_import import run_import

    sys.exit(run_import(locations_path, env_path, out, echo=click.echo))


# ---- checks against a running service, and rehearsals ------------------------------------------------


@main.command()
@click.argument("url")
@click.option("--token", envvar="TSREVEL_ADMIN_TOKEN", show_envvar=True,
              help="Admin bearer token for /test/webhook (prefer the environment variable: it stays out of shell history).")
@click.option("--expect-enabled/--expect-disabled", "expect_enabled", default=None, help="Fail unless ENABLE_CONNECTOR is this.")
@click.option("--expect-dry-run/--expect-live", "expect_dry_run", default=None, help="Fail unless DRY_RUN is this.")
def verify(url: str, token: str | None, expect_enabled: bool | None, expect_dry_run: bool | None) -> None:
    """Run the runbook's Rollback Verification checklist against a running service.

    /health answers 200; the flags are as expected; /test/webhook answers a harmless probe (a lead,
    which never makes an order) with a correlation id and a trace; /ready answers 200.
    """
    from tsrevel.entrypoints.verify import verify as run_verify

    click.echo(f"Verifying {url}")
    result = run_verify(
        url, token=token, expect_enabled=expect_enabled, expect_dry_run=expect_dry_run,
        on_check=lambda c: click.echo(f"{mark(c.ok)} {c.name:<20} {c.evidence}"),
    )
    passed = sum(c.ok is True for c in result.checks)
    failed = sum(c.ok is False for c in result.checks)
    info = sum(c.ok is None for c in result.checks)
    click.echo(f"{passed} passed, {failed} failed, {info} not checked, in {result.seconds:.2f} s")
    if failed:
        sys.exit(1)


@main.command()
@click.option("--scenario", "scenarios", multiple=True, type=click.Choice(["runtime-errors", "data-integrity", "third-party-failure", "security-incident"]),
              help="Run only this scenario (repeatable); all four by default.")
@click.option("--verbose", is_flag=True, help="Show the connector's log lines too.")
def drill(scenarios: tuple[str, ...], verbose: bool) -> None:
    """Rehearse the runbook's four incidents on in-memory fakes and check the invariants (no I/O)."""
    from tsrevel.entrypoints.drill import ScenarioResult, run_drill

    def show(r: ScenarioResult) -> None:
        click.echo(click.style(f"== {r.title} ({r.key})", bold=True))
        click.echo(f"   what failed: {r.failure}")
        for lever in r.levers:
            click.echo(f"   lever: {lever}")
        for inv in r.invariants:
            click.echo(f"   {mark(inv.ok)} {inv.name}: {inv.evidence}")
        click.echo()

    with _log_threshold(logging.NOTSET if verbose else logging.CRITICAL + 1):
        results = asyncio.run(run_drill(list(scenarios) or None, on_result=show))
    broken = [r.key for r in results if not r.ok]
    click.echo(f"{len(results) - len(broken)}/{len(results)} scenario(s) kept every invariant" + (f"; broken: {', '.join(broken)}" if broken else ""))
    if broken:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover - python -m tsrevel.entrypoints.cli
    main()
