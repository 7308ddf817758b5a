"""Read-only checks and rehearsals: `tsrevel reconcile` (the ledger against Revel), `verify` (a running service), `drill`."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from datetime import datetime
from typing import Any

import click

from tsrevel.entrypoints import console
from tsrevel.entrypoints.cli_common import echo_json, fail, log_threshold, run_in_session
from tsrevel.entrypoints.console import echo_table, mark


@click.command()
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
            fail(f"--json {json_file}: cannot write there (directory {folder} does not exist or is not writable)", 2)

    async def act(session: Any) -> Any:
        revel = await revel_lister(session)
        with console.progress(0, "Reading Revel orders") as bar:

            def advance(done: int, total: int) -> None:
                bar.length = total  # known once the windows and establishments are
                bar.update(1)

            return await run_reconcile(session, revel, start, end, chunk_days=chunk_days, on_progress=advance)

    run = run_in_session(act)
    report = run.report
    data = report_json(run)
    if json_file == "-":
        echo_json(data)
    else:
        if json_file:
            try:
                with open(json_file, "w", encoding="utf-8") as fh:
                    json.dump(data, fh, indent=2, sort_keys=True)
            except OSError as exc:  # a one-line answer, not a traceback
                fail(f"--json {json_file}: cannot write the report ({exc.strerror or exc})", 2)
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
        fail(f"{len(report.problems())} problem(s); nothing was changed", 1)


# ---- checks against a running service, and rehearsals ------------------------------------------------


@click.command()
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


@click.command()
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

    with log_threshold(logging.NOTSET if verbose else logging.CRITICAL + 1):
        results = asyncio.run(run_drill(list(scenarios) or None, on_result=show))
    broken = [r.key for r in results if not r.ok]
    click.echo(f"{len(results) - len(broken)}/{len(results)} scenario(s) kept every invariant" + (f"; broken: {', '.join(broken)}" if broken else ""))
    if broken:
        sys.exit(1)
