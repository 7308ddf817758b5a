"""The delivery commands: list and show deliveries, replay, discard, forget, prune, audit, and sync from TripleSeat."""

from __future__ import annotations

import os
import socket
import sys
from datetime import timedelta
from typing import Any

import click

from tsrevel.domain import deliveries as st
from tsrevel.entrypoints.cli_common import (
    actor_option,
    echo_json,
    fail,
    load_settings,
    reason_option,
    reason_text,
    run_in_session,
    wait_for,
)
from tsrevel.entrypoints.console import echo_table, mark, when


@click.group()
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

    items = run_in_session(read)
    if as_json:
        echo_json([_delivery_data(d) for d in items])
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
    from tsrevel.entrypoints.operator import order_summary
    from tsrevel.entrypoints.views import delivery_record, mapped_order

    async def read(session: Any) -> Any:
        return await delivery_record(session.processor, delivery_id)

    record = run_in_session(read)
    d, emails, order = record.delivery, record.emails, record.order
    if as_json:
        data = _delivery_data(d)
        data["timeline"] = [{"at": t.at, "state": t.state, "note": t.note} for t in d.timeline]
        data["emails"] = [{"id": e.id, "kind": e.message.kind, "state": e.state, "attempts": e.attempts, "last_error": e.last_error} for e in emails]
        data["order"] = {"reference": order.reference, "state": order.state, "revel_order_id": order.revel_order_id, "delivery_id": order.delivery_id} if order else None
        data["mapped_order"] = mapped_order(d, order)
        if body:
            data["body"] = d.body
        echo_json(data)
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


@click.command()
@click.argument("delivery_id", type=int, required=False)
@click.option("--state", type=click.Choice(sorted(st.REPLAYABLE_STATES)), help="Re-queue every delivery in this state, in arrival order.")
@reason_option()
@actor_option
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

    ids = run_in_session(act)
    click.echo(f"Re-queued {len(ids)} deliver{'y' if len(ids) == 1 else 'ies'}" + (f" ({state})" if state else f" ({delivery_id})") + ".")
    if wait and ids:
        wait_for(ids, timeout)


@click.command()
@click.argument("delivery_id", type=int)
@reason_option()
@actor_option
def discard(delivery_id: int, reason: str, actor: str) -> None:
    """Give up on a held, skipped, dead or dry-run delivery for good: it becomes ignored and is never replayed."""

    async def act(session: Any) -> tuple[bool, str]:
        current = await session.store.get_delivery(delivery_id)
        return await session.processor.discard(delivery_id, actor=actor, reason=reason), current.state

    done, was = run_in_session(act)
    if not done:
        fail(f"delivery {delivery_id} is {was}: only {', '.join(sorted(st.DISCARDABLE_STATES))} deliveries can be discarded", 1)
    click.echo(f"Delivery {delivery_id} discarded ({was} -> ignored).")


@click.command()
@click.argument("event_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@reason_option()
@actor_option
def forget(event_id: str, yes: bool, reason: str, actor: str) -> None:
    """Forget the order recorded for a TripleSeat event, after its order was cleaned up in Revel by hand.

    The next delivery of the event (for example after the venue re-saves it in TripleSeat) may then
    create its order again. Only do this once the order is gone from Revel: tsrevel looks Revel up
    before creating, so an order still there is found, not duplicated.
    """

    async def look(session: Any) -> Any:
        return await session.store.get_order(event_id)

    entry = run_in_session(look)
    if entry is None:
        fail(f"no order is recorded for event {event_id}; nothing to forget", 1)
    click.echo(f"Event {event_id}: {entry.reference}, {entry.state}, Revel order {entry.revel_order_id or '-'}, made by delivery {entry.delivery_id} at {when(entry.created_at)}")
    if not yes:
        click.confirm("Forget it, so that a later delivery may create this event's order again?", abort=True)

    async def act(session: Any) -> Any:
        return await session.processor.forget(event_id, actor=actor, reason=reason)

    if run_in_session(act) is None:
        fail(f"event {event_id} had no ledger entry any more", 1)
    click.echo(f"Forgotten. The next delivery of event {event_id} may create {entry.reference} again.")


@click.command()
@click.option("--older-than-days", type=click.IntRange(min=1), default=None,
              help="Delete finished deliveries last updated more than this many days ago [default: TSREVEL_RETENTION_DAYS or 90].")
@click.option("--include-replayable", is_flag=True, help="Also delete old held, skipped, dead and dry-run deliveries (refused otherwise).")
@reason_option(default="retention")
@actor_option
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

    count = run_in_session(act, settings=settings)
    click.echo(f"Pruned {count} deliver{'y' if count == 1 else 'ies'} last updated more than {days} days ago.")


@click.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def audit(limit: int, as_json: bool) -> None:
    """Operator actions, newest first: who, when, what and why (CLI users and the admin API)."""

    async def read(session: Any) -> list[Any]:
        return await session.store.list_audit(limit=limit)

    entries = run_in_session(read)
    if as_json:
        echo_json([{"id": a.id, "at": a.at, "actor": a.actor, "action": a.action, "detail": a.detail, "reason": a.reason} for a in entries])
        return
    echo_table(["AT", "ACTOR", "ACTION", "DETAIL", "REASON"], [[a.at, a.actor, a.action, a.detail, a.reason] for a in entries], empty="No operator actions recorded.")


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


@click.command()
@click.argument("event_id", required=False)
@click.option("--since", callback=_duration, help="Instead of one event: run one catch-up pass over the events updated in this window (48h, 90m, 2d) and print what it found.")
@click.option("--reason", callback=reason_text, help="Why, as recorded in the audit log (required with EVENT_ID).")
@actor_option
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

        result = run_in_session(one)
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

        report = run_in_session(one_pass)
        if report is None:
            fail("another replica is running the catch-up poll right now; try again in a minute", 1)
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
        wait_for(ids, timeout)
