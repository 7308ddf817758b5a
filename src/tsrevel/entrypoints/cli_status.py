"""`tsrevel status` and `tsrevel flags`: what is in force and why, and the runtime kill switch and DRY_RUN."""

from __future__ import annotations

import json
import os
from typing import Any

import click

from tsrevel.entrypoints import console
from tsrevel.entrypoints.cli_common import actor_option, echo_json, load_settings, reason_option, run_in_session
from tsrevel.entrypoints.console import echo_table, when
from tsrevel.version import __version__


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def status(as_json: bool) -> None:
    """Flags in force and their source, deliveries by state, oldest pending, last order, last operator action."""
    from tsrevel.entrypoints.container import database_location
    from tsrevel.entrypoints.operator import read_status, redact_url

    settings = load_settings()
    s = run_in_session(read_status, settings=settings)
    database, mapping_file = database_location(settings.database_url), os.path.abspath(settings.mapping_file)
    if as_json:
        echo_json({
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


@click.group()
def flags() -> None:
    """Show or change the kill switch and DRY_RUN at runtime (every replica follows within a second)."""


@flags.command("show")
def flags_show() -> None:
    """The flags in force and where each comes from."""

    async def read(session: Any) -> tuple[Any, Any]:
        return await session.processor.flags(), await session.store.get_flags()

    current, overrides = run_in_session(read)
    echo_table(["FLAG", "VALUE", "SOURCE"], _flags_rows(current, overrides))


@flags.command("set")
@click.option("--enable-connector/--disable-connector", "enable_connector", default=None,
              help="Kill switch: --disable-connector holds every delivery (stored, answered 200, not processed).")
@click.option("--dry-run/--no-dry-run", "dry_run", default=None, help="Map and record without writing to Revel.")
@reason_option()
@actor_option
def flags_set(enable_connector: bool | None, dry_run: bool | None, reason: str, actor: str) -> None:
    """Override ENABLE_CONNECTOR and/or DRY_RUN at runtime; the override wins over the environment."""
    if enable_connector is None and dry_run is None:
        raise click.UsageError("give --enable-connector/--disable-connector and/or --dry-run/--no-dry-run")
    settings = load_settings()

    async def act(session: Any) -> tuple[Any, Any]:
        await session.processor.set_flags(enable_connector=enable_connector, dry_run=dry_run, actor=actor, reason=reason)
        return await session.processor.flags(), await session.store.get_flags()

    current, overrides = run_in_session(act, settings=settings)
    echo_table(["FLAG", "VALUE", "SOURCE"], _flags_rows(current, overrides))
    if enable_connector is True:
        click.echo("Held deliveries stay held until replayed: tsrevel replay --state held --reason ...", err=True)


@flags.command("reset")
@reason_option()
@actor_option
def flags_reset(reason: str, actor: str) -> None:
    """Drop the runtime overrides: back to the ENABLE_CONNECTOR and DRY_RUN of the environment."""

    async def act(session: Any) -> tuple[Any, Any]:
        await session.processor.clear_flags(actor=actor, reason=reason)
        return await session.processor.flags(), await session.store.get_flags()

    current, overrides = run_in_session(act)
    echo_table(["FLAG", "VALUE", "SOURCE"], _flags_rows(current, overrides))


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
