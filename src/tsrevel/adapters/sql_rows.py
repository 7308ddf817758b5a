"""Rows to records for both SQL stores: SQLite hands back text (times, JSON, 0/1), PostgreSQL typed values; both map here."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from tsrevel.adapters.store_common import UTC
from tsrevel.domain.deliveries import Delivery, LedgerEntry, TimelineEntry
from tsrevel.domain.ports import AuditEntry, EmailMessage, FlagOverrides, OutboxEmail
from tsrevel.domain.store_rules import missing_delivery

if TYPE_CHECKING:
    from tsrevel.adapters.sql_store import Db

Row = Mapping[str, Any]
R = TypeVar("R")
# The columns that hold instants: SQLite hands them back as time_text() strings, PostgreSQL as datetimes.
_TIMES = frozenset({"at", "received_at", "next_attempt_at", "lease_until", "updated_at", "created_at", "sent_at"})


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
    return (datetime.fromisoformat(value) if isinstance(value, str) else value).astimezone(UTC)


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


def record(cls: type[R], row: Row, **given: Any) -> R:
    """The attrs record whose fields are the row's columns of the same names (instants in UTC), given ones aside."""
    names = (field.name for field in attrs.fields(cls) if field.name not in given)  # type: ignore[misc]
    return cls(**{name: time_or_none(row[name]) if name in _TIMES else row[name] for name in names}, **given)


def delivery_from_row(row: Row, timeline: tuple[TimelineEntry, ...]) -> Delivery:
    return record(Delivery, row, body=bytes(row["body"]), timeline=timeline)


def ledger_entry(row: Row) -> LedgerEntry:
    return record(LedgerEntry, row)


def outbox_email(row: Row) -> OutboxEmail:
    recipients = row["recipients"]
    to = tuple(json.loads(recipients) if isinstance(recipients, str) else recipients)
    return record(OutboxEmail, row, message=record(EmailMessage, row, to=to))


def audit_entry(row: Row) -> AuditEntry:
    return record(AuditEntry, row)


def flags_from_row(row: Row | None) -> FlagOverrides:
    if row is None:
        return FlagOverrides()
    return record(FlagOverrides, row, enable_connector=_bool_or_none(row["enable_connector"]),
                  dry_run=_bool_or_none(row["dry_run"]))
