"""The tsrevel command line: a thin layer over the same container as the service."""

from __future__ import annotations

import os
import signal
import sys

import click

from tsrevel.domain.errors import ConfigError
from tsrevel.entrypoints.settings import Settings
from tsrevel.version import __version__


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
    click.echo(f"Then look at it: curl -sS {url}/health   (admin endpoints need TSREVEL_ADMIN_TOKEN)", err=True)
    app = create_app(container)
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal with the handler that
    # was there before it: make that handler a clean exit, so a stop after draining is exit 0.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=15)


def _exit_cleanly(signum: int, frame: object) -> None:
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover - python -m tsrevel.entrypoints.cli
    main()
