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
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import click

from tsrevel.domain import deliveries as st
from tsrevel.domain.errors import ConfigError, GatewayError, LiveRefused, MappingRejected, NotFound, StoreUnavailable, TsrevelError
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
@click.option("--host", envvar="HOST", default="127.0.0.1", show_default=True, help="Address to listen on (env HOST; the flag wins).")
@click.option("--port", envvar="PORT", default=8080, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (env PORT, as a PaaS sets it; the flag wins; 0 picks a free one).")
def serve(host: str, port: int) -> None:
    """Run the HTTP service and its worker until SIGTERM."""
    import uvicorn

    from tsrevel.entrypoints.container import build_container
    from tsrevel.entrypoints.http import create_app, uvicorn_options

    settings = load_settings()
    container = build_container(settings)
    try:
        container.mapping()  # a bad mapping file stops start-up here, with the file and the key
    except ConfigError as exc:
        click.echo(f"tsrevel: configuration error: {exc}", err=True)
        sys.exit(2)
    # Bind before the banner: a port in use is one line and exit 2, not a banner then a traceback.
    sock = _listen(host, port)
    _check_database(settings)
    bound_port = sock.getsockname()[1]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{bound_port}"
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
    uvicorn.Server(uvicorn.Config(app, **uvicorn_options(settings))).run(sockets=[sock])


def _listen(host: str, port: int) -> Any:
    """A listening socket on host:port, or one line saying why not (and what to do) and exit 2."""
    import errno
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc} (check --host or HOST)", 2)
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart over TIME_WAIT
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            _fail(f"cannot listen on {host}:{port}: the port is already in use; pick another with --port N or PORT=N (or stop what holds it)", 2)
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc} (check --host/HOST and --port/PORT)", 2)
    sock.set_inheritable(True)
    return sock


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
    except LiveRefused as exc:  # the going-live rule of domain/safety.py, asked by the use case
        _fail(f"--no-dry-run needs {exc.needs}", 1)
    except TsrevelError as exc:  # OperatorError, InvalidRequest, NotFound: refused, with the reason
        _fail(str(exc), 1)
    raise AssertionError("unreachable")  # _fail exits


def _fail(message: str, code: int) -> None:
    click.echo(f"tsrevel: {message}", err=True)
    sys.exit(code)


def _flags_rows(flags: Any, overrides: Any) -> list[list[str]]:
    from tsrevel.entrypoints.views import flag_rows

    def source(row: Any) -> str:
        if not row.overridden:
            return "environment"
        said = f"runtime override by {overrides.actor} at {when(overrides.updated_at)}: {overrides.reason}"
        # A stored dry_run=false that this service may not obey (no signing secret): it stays in dry run.
        return f"{said} (refused here: going live is not allowed, see the log)" if row.refused else said

    def shown(value: bool | frozenset[str]) -> str:
        if isinstance(value, frozenset):
            return ",".join(sorted(value)) or "(every mapped location)"
        return "true" if value else "false"

    return [[row.flag.upper(), shown(row.value), source(row)] for row in flag_rows(flags, overrides)]


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
            "last_poll": json.loads(s.last_poll.to_json()) if s.last_poll else None,
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
    click.echo(_poll_line(s.last_poll))


def _poll_line(report: Any) -> str:
    """The last catch-up poll for `tsrevel status`."""
    if report is None:
        return "Last catch-up poll: none"
    errors = f", {len(report.errors)} error(s): {report.errors[0]}" if report.errors else ", no errors"
    return (f"Last catch-up poll: {when(report.finished_at)} (since {report.since.isoformat()}): {report.events_seen} event(s) seen, "
            f"{report.deliveries_created} delivery(ies) created{errors}")


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
    from tsrevel.entrypoints.operator import mapped_order, order_summary

    from tsrevel.entrypoints.views import delivery_record

    async def read(session: Any) -> Any:
        return await delivery_record(session.processor, delivery_id)

    record = _run(read)
    d, emails, order = record.delivery, record.emails, record.order
    if as_json:
        data = _delivery_data(d)
        data["timeline"] = [{"at": t.at, "state": t.state, "note": t.note} for t in d.timeline]
        data["emails"] = [{"id": e.id, "kind": e.message.kind, "state": e.state, "attempts": e.attempts, "last_error": e.last_error} for e in emails]
        data["order"] = {"reference": order.reference, "state": order.state, "revel_order_id": order.revel_order_id, "delivery_id": order.delivery_id} if order else None
        data["mapped_order"] = mapped_order(d, order)
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
    shown = mapped_order(d, order)
    if shown is not None:
        click.echo("Mapped order:   " + "\n".join(order_summary(shown)))
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
    """The mapping file: have the running service(s) read it again, see what it misses, get products proposed."""


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
@click.option("--chunk-days", default=None, type=click.IntRange(1, 31),
              help="Days of Revel orders per request window (default: one listing over the whole range, paged by order).")
def reconcile(date_from: datetime, date_to: datetime, json_file: str | None, chunk_days: int | None) -> None:
    """Compare the order ledger with Revel's tripleseat-* orders: missing, duplicate, orphan orders, final totals. Read-only.

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
            + [["total", t.reference, f"{t.order_id}: final_total {t.revel_total}", f"{t.entry.revel_order_id}: recorded {t.ledger_total}"]
               for t in report.mismatches]
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


# ---- catch-up sync: one event by id, or one pass of the poll (domain/catchup.py) -----------------


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    """48h, 90m, 2d or 3600s as a timedelta."""
    if value is None:
        return None
    text = value.strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        amount, unit = float(text[:-1]), units[text[-1]]
    except (ValueError, KeyError, IndexError):
        raise click.BadParameter("write a duration such as 48h, 90m, 2d") from None
    if not 0 < amount * unit <= 366 * 86400:
        raise click.BadParameter("must be more than 0 and at most a year")
    return timedelta(seconds=amount * unit)


@main.command()
@click.argument("event_id", required=False)
@click.option("--since", callback=_duration, help="Instead of one event: run one catch-up pass over the events updated in this window (48h, 90m, 2d) and print what it found.")
@click.option("--reason", callback=_some_text, help="Why, as recorded in the audit log (required with EVENT_ID).")
@_actor_option
@click.option("--wait", is_flag=True, help="Wait (with progress) until the running service has processed the new deliveries.")
@click.option("--timeout", default=300.0, show_default=True, type=click.FloatRange(0.1), help="Seconds --wait waits at most.")
def sync(event_id: str | None, since: timedelta | None, reason: str | None, actor: str, wait: bool, timeout: float) -> None:
    """Fetch EVENT_ID from the TripleSeat API and store it as a delivery (source sync), or run one catch-up pass (--since)."""
    from tsrevel.domain import catchup

    if (event_id is None) == (since is None):
        raise click.UsageError("give an EVENT_ID or --since, not both")
    if event_id is not None:
        if reason is None:
            raise click.UsageError("--reason is required with EVENT_ID (it goes into the audit log)")

        async def one(session: Any) -> Any:
            return await catchup.sync_event(session.processor, event_id, actor=actor, reason=reason)

        result = _run(one)
        click.echo(f"Event {result.event_id} stored as delivery {result.delivery_id} (source sync, {result.event_version or 'no updated_at'}).")
        ids = [result.delivery_id]
    else:
        assert since is not None

        async def one_pass(session: Any) -> Any:
            now = session.processor.clock.now()
            return await catchup.catch_up(
                session.processor, since=now - since, holder=f"cli:{actor}@{socket.gethostname()}:{os.getpid()}",
                actor=actor, reason=reason or "manual catch-up pass (tsrevel sync --since)",
            )

        report = _run(one_pass)
        if report is None:
            _fail("another replica is running the catch-up poll right now; try again in a minute", 1)
        click.echo(
            f"Catch-up since {report.since.isoformat()}: {report.events_seen} event(s) seen, {report.already_seen} already seen, "
            f"{report.deliveries_created} delivery(ies) created" + (f": {', '.join(map(str, report.delivery_ids))}" if report.delivery_ids else "") + "."
        )
        for error in report.errors:
            click.echo(f"{mark(False)} {error}")
        ids = list(report.delivery_ids)
        if report.errors and not wait:
            sys.exit(1)
    if wait and ids:
        _wait_for(ids, timeout)


# ---- the mapping file's helpers: what it misses, and proposals ---------------------------------------


@mapping.command("unmapped")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def mapping_unmapped(as_json: bool) -> None:
    """TripleSeat items and locations the mapping misses, with how many stored deliveries they stopped."""
    from tsrevel.entrypoints.views import unmapped_seen

    async def read(session: Any) -> list[Any]:
        return await unmapped_seen(session.processor)

    found = _run(read, need_mapping=True)
    if as_json:
        _echo_json([
            {"kind": u.kind, "name": u.name or u.what, "menu_item_id": u.menu_item_id, "locations": list(u.locations),
             "deliveries": u.count, "delivery_ids": list(u.delivery_ids), "toml": u.toml}
            for u in found
        ])
        return
    echo_table(
        ["WHAT", "NAME", "MENU ITEM", "LOCATION", "DELIVERIES"],
        [[u.kind, u.name or u.what, u.menu_item_id or "-", ",".join(u.locations) or "-", u.count] for u in found],
        empty="Nothing unmapped in the stored deliveries.",
    )
    if found:
        click.echo()
        click.echo("Propose products for them with: tsrevel mapping suggest")


@mapping.command("suggest")
@click.option("--location", "location_id", help="Only this TripleSeat location: its establishment's products, a [locations.ID.products] table.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False), help="Write the fragment to this new file (never overwritten) instead of printing it.")
@click.option("--min-score", default=80.0, show_default=True, type=click.FloatRange(0, 100), help="Propose nothing below this similarity (0-100).")
def mapping_suggest(location_id: str | None, out_file: str | None, min_score: float) -> None:
    """Propose a Revel product for each item name seen or unmapped, as a TOML fragment with the scores as comments."""
    from tsrevel.entrypoints import mapping_suggest as assist
    from tsrevel.entrypoints.operator import OperatorError, product_catalog
    from tsrevel.entrypoints.views import item_names_seen, unmapped_seen

    if out_file is not None and os.path.exists(out_file):
        _fail(f"{out_file} exists; not overwriting it (choose another --out)", 2)

    async def act(session: Any) -> str:
        mapping = session.processor.mapping
        if location_id is not None and location_id not in mapping.locations:
            raise OperatorError(f"location {location_id} is not in the mapping file ({session.settings.mapping_file})")
        venues = [mapping.locations[location_id]] if location_id else [*mapping.locations.values(), *mapping.sites.values()]
        establishments = sorted({v.revel_establishment for v in venues})
        catalog = await product_catalog(session)
        products = [
            assist.Product(product_id=pid, name=name, establishment_id=est)
            for est in establishments for pid, name in await catalog.list_products(est)
        ]
        items = assist.items_to_map(await unmapped_seen(session.processor), await item_names_seen(session.processor), mapping)
        if location_id is not None:
            items = [i for i in items if not i.locations or location_id in i.locations]
        table = f"locations.{location_id}.products" if location_id else "products"
        suggestions = assist.suggest(items, products, min_score=min_score)
        return assist.render_toml(suggestions, table=table, min_score=min_score, establishments=establishments, now=session.processor.clock.now())

    fragment = _run(act, need_mapping=True)
    if out_file is None:
        click.echo(fragment, nl=False)
        return
    try:
        with open(out_file, "x", encoding="utf-8") as handle:
            handle.write(fragment)
    except FileExistsError:
        _fail(f"{out_file} exists; not overwriting it (choose another --out)", 2)
    click.echo(f"Wrote {out_file}; review it, then paste what is right into the mapping file.")


if __name__ == "__main__":  # pragma: no cover - python -m tsrevel.entrypoints.cli
    main()
