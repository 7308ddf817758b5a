"""`tsrevel serve`: bind, check the database, print how to reach the service, then run it until SIGTERM."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import sys

import click

from tsrevel.domain.errors import ConfigError, StoreUnavailable
from tsrevel.entrypoints.cli_common import fail, load_settings, log_threshold
from tsrevel.entrypoints.settings import Settings
from tsrevel.version import __version__


@click.command()
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


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or one line saying why not (and what to do) and exit 2."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc} (check --host or HOST)", 2)
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restart over TIME_WAIT
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fail(f"cannot listen on {host}:{port}: the port is already in use; pick another with --port N or PORT=N (or stop what holds it)", 2)
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc} (check --host/HOST and --port/PORT)", 2)
    sock.set_inheritable(True)
    return sock


def _check_database(settings: Settings) -> None:
    """Open the database (bounded) before the banner: an unusable one is one line and exit 2, not a traceback."""
    from tsrevel.entrypoints.container import check_database, database_location

    try:
        with log_threshold(logging.CRITICAL, "tsrevel.store"), log_threshold(logging.CRITICAL, "psycopg"):
            asyncio.run(check_database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous))
    except StoreUnavailable as exc:
        from tsrevel.entrypoints.operator import database_problem  # the operator commands' module: not loaded to serve

        fail(database_problem(settings.database_url, exc), 2)
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)
    click.echo(f"database {database_location(settings.database_url)}, mapping file {os.path.abspath(settings.mapping_file)}", err=True)


def _exit_cleanly(signum: int, frame: object) -> None:
    sys.exit(0)
