"""Rows to records for both SQL stores: SQLite hands back text (times, JSON, 0/1), PostgreSQL typed values; both map here."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tsrevel.adapters.store_common import UTC, parse_time
from tsrevel.domain.deliveries import Delivery, LedgerEntry, TimelineEntry
from tsrevel.domain.ports import AuditEntry, EmailMessage, FlagOverrides, OutboxEmail
from tsrevel.domain.store_rules import missing_delivery

if TYPE_CHECKING:
    from tsrevel.adapters.sql_store import Db

Row = Mapping[str, Any]


def literals(states: Iterable[str]) -> tuple[str, ...]:
    """States as SQL literals; states are fixed lower-case words from the domain, never input."""
    out = []
    for state in states:
        if not re.fullmatch(r"[a-z_]+", state):
            raise ValueError(f"state {state!r} cannot be written as a plain SQL literal")
        out.append(f"'{state}'")
    return tuple(out)


def time_or_none(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        return parse_time(value)
    return value.astimezone(UTC)


def _bool_or_none(value: int | bool | None) -> bool | None:
    return None if value is None else bool(value)


async def add_timeline(db: Db, delivery_id: int, at: datetime, state: str, note: str) -> None:
    await db.run("INSERT INTO timeline (delivery_id, at, state, note) VALUES (%s, %s, %s, %s)", (delivery_id, at, state, note))


async def get_delivery(db: Db, delivery_id: int) -> Delivery:
    # One statement, so the delivery and its timeline come from one snapshot even outside a transaction.
    rows = await db.all(
        """SELECT d.*, t.at AS t_at, t.state AS t_state, t.note AS t_note
           FROM deliveries AS d LEFT JOIN timeline AS t ON t.delivery_id = d.id
           WHERE d.id = %s ORDER BY t.id""",
        (delivery_id,),
    )
    if not rows:
        raise missing_delivery(delivery_id)
    timeline = tuple(
        TimelineEntry(at=time_or_none(row["t_at"]), state=row["t_state"], note=row["t_note"])  # type: ignore[arg-type]
        for row in rows if row["t_state"] is not None
    )
    return delivery_from_row(rows[0], timeline)


def delivery_from_row(row: Row, timeline: tuple[TimelineEntry, ...]) -> Delivery:
    return Delivery(
        id=row["id"],
        key=row["key"],
        body=bytes(row["body"]),
        correlation_id=row["correlation_id"],
        received_at=time_or_none(row["received_at"]),  # type: ignore[arg-type]
        trigger_type=row["trigger_type"],
        event_id=row["event_id"],
        state=row["state"],
        attempts=row["attempts"],
        next_attempt_at=time_or_none(row["next_attempt_at"]),
        last_error=row["last_error"],
        order_reference=row["order_reference"],
        result=row["result"],
        lease_token=row["lease_token"],
        lease_until=time_or_none(row["lease_until"]),
        updated_at=time_or_none(row["updated_at"]),
        timeline=timeline,
        source=row["source"],
    )


def ledger_entry(row: Row) -> LedgerEntry:
    return LedgerEntry(
        event_id=row["event_id"],
        reference=row["reference"],
        establishment_id=row["establishment_id"],
        delivery_id=row["delivery_id"],
        state=row["state"],
        revel_order_id=row["revel_order_id"],
        revel_uri=row["revel_uri"],
        snapshot=row["snapshot"],
        created_at=time_or_none(row["created_at"]),
        updated_at=time_or_none(row["updated_at"]),
    )


def outbox_email(row: Row) -> OutboxEmail:
    recipients = row["recipients"]
    message = EmailMessage(
        kind=row["kind"],
        subject=row["subject"],
        text=row["text"],
        delivery_id=row["delivery_id"],
        correlation_id=row["correlation_id"],
        to=tuple(json.loads(recipients) if isinstance(recipients, str) else recipients),
    )
    return OutboxEmail(
        id=row["id"],
        message=message,
        state=row["state"],
        attempts=row["attempts"],
        next_attempt_at=time_or_none(row["next_attempt_at"]),
        last_error=row["last_error"],
        created_at=time_or_none(row["created_at"]),
        sent_at=time_or_none(row["sent_at"]),
        lease_token=row["lease_token"],
    )


def audit_entry(row: Row) -> AuditEntry:
    return AuditEntry(id=row["id"], at=time_or_none(row["at"]), actor=row["actor"], action=row["action"],  # type: ignore[arg-type]
                      detail=row["detail"], reason=row["reason"])


def flags_from_row(row: Row | None) -> FlagOverrides:
    if row is None:
        return FlagOverrides()
    return FlagOverrides(
        enable_connector=_bool_or_none(row["enable_connector"]),
        dry_run=_bool_or_none(row["dry_run"]),
        actor=row["actor"],
        reason=row["reason"],
        updated_at=time_or_none(row["updated_at"]),
    )
