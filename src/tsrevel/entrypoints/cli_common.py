"""What the operator commands share: settings, --actor and --reason, running a use case in a session, exit codes, output.

A command opens the service's container and store through run_in_session, so it works while the
service is down; a domain error becomes one line on stderr and the exit code of cli.py's docstring.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, NoReturn, TypeVar

import click

from tsrevel.domain.errors import (
    ConfigError,
    GatewayError,
    LiveRefused,
    MappingRejected,
    NotFound,
    PayloadError,
    StoreUnavailable,
    TsrevelError,
)
from tsrevel.domain.text import audit_reason
from tsrevel.entrypoints import console
from tsrevel.entrypoints.settings import Settings

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


def os_user() -> str:
    """The operating-system user: the default actor in the audit log."""
    try:
        return getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (a bare container): still record something
        return "unknown-user"


def actor_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--actor, the OS user unless given."""
    return click.option(
        "--actor", default=os_user, show_default="the OS user",
        help="Who is acting, as recorded in the audit log.",
    )(fn)


def reason_option(default: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--reason, required unless a default is given (click 8.5 treats an explicit default=None as a value)."""
    if default is None:
        return click.option("--reason", required=True, callback=reason_text, help="Why, as recorded in the audit log.")
    return click.option("--reason", default=default, show_default=True, callback=reason_text, help="Why, as recorded in the audit log.")


def reason_text(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """--reason as the audit log keeps it (domain/text.py), or a usage error saying why one is needed."""
    if value is None:
        return None
    try:
        return audit_reason(value)
    except PayloadError as exc:
        raise click.BadParameter(exc.problem) from None


def run_in_session(
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
        with log_threshold(logging.ERROR), log_threshold(logging.CRITICAL, "tsrevel.store"), log_threshold(logging.CRITICAL, "psycopg"):
            return asyncio.run(go())
    except StoreUnavailable as exc:
        from tsrevel.entrypoints.operator import database_problem

        fail(database_problem(settings.database_url, exc), 2)
    except MappingRejected as exc:
        fail(str(exc), 2)
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)
    except GatewayError as exc:
        fail(f"{exc}", 2)
    except LiveRefused as exc:  # the going-live rule of domain/safety.py, asked by the use case
        fail(f"--no-dry-run needs {exc.needs}", 1)
    except TsrevelError as exc:  # OperatorError, InvalidRequest, NotFound: refused, with the reason
        fail(str(exc), 1)


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr, then exit with code."""
    click.echo(f"tsrevel: {message}", err=True)
    sys.exit(code)


def _json_default(value: object) -> object:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"not JSON: {type(value).__name__}")


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=_json_default))


@contextmanager
def log_threshold(level: int, name: str = "tsrevel") -> Iterator[None]:
    """Raise the threshold of tsrevel's loggers for one command: its output already says what the log lines would."""
    logger = logging.getLogger(name)
    was = logger.level
    logger.setLevel(max(level, was))
    try:
        yield
    finally:
        logger.setLevel(was)


def wait_for(ids: list[int], timeout: float) -> None:
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

        left = run_in_session(poll)
    if left:
        fail(f"{len(left)} of {len(ids)} still pending after {timeout:g}s (is the service running?): {', '.join(map(str, left[:20]))}", 1)

    async def outcome(session: Any) -> dict[str, int]:
        counts: dict[str, int] = {}
        for delivery_id in ids:
            try:
                d = await session.store.get_delivery(delivery_id)
            except NotFound:
                continue
            counts[d.state] = counts.get(d.state, 0) + 1
        return counts

    counts = run_in_session(outcome)
    click.echo("Processed: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
