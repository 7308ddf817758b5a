"""The store operations, written once in SQL for SQLite and PostgreSQL; the engines add only what the databases do differently.

Each operation is an ``async def`` over a tiny connection protocol (``Db``) that both drivers
satisfy: PostgreSQL's awaits psycopg; SQLite's never suspends, so a whole operation runs as one
synchronous call inside its ``BEGIN IMMEDIATE`` transaction (adapters/sqlite_engine.py). The SQL
uses psycopg's placeholders, which sqlite_engine translates. The decisions are the domain's
(domain/store_rules.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from tsrevel.adapters import sql_operations as ops
from tsrevel.adapters.sql_rows import audit_entry, flags_from_row, get_delivery, ledger_entry, outbox_email
from tsrevel.adapters.store_common import UTC, utc, utc_or_none
from tsrevel.domain.deliveries import Delivery, LedgerEntry, NewDelivery
from tsrevel.domain.orders import OrderRef
from tsrevel.domain.verdict import Verdict
from tsrevel.domain.ports import EMAIL_SENDING, EMAIL_SENT, AuditEntry, EmailMessage, FlagOverrides, OutboxEmail, Reservation
from tsrevel.domain.store_rules import check_email_state, check_finish_state, check_new_state, check_replayable

T = TypeVar("T")
Row = Mapping[str, Any]


class Db(Protocol):
    """One connection inside the engine's transaction (or, for PostgreSQL reads, in autocommit)."""

    async def one(self, query: str, params: Any = ()) -> Row | None: ...
    async def all(self, query: str, params: Any = ()) -> list[Row]: ...
    async def run(self, query: str, params: Any = ()) -> int: ...  # the rows changed
    async def many(self, query: str, rows: Sequence[Any]) -> None: ...


Op = Callable[..., Awaitable[T]]


class SqlStore:
    """Every Store operation over the engine's ``_write`` (one transaction) and ``_read``.

    The engines supply the transactions, the claim (``_claim``), migrations and the lifecycle, and
    may write intake (``_insert``) their own faster way: that is where SQLite and PostgreSQL differ.
    """

    _prune_batch = 2000  # pruning deletes in batches, so a big backlog never holds the lock for long

    async def _write(self, op: Op[T], *args: Any) -> T:
        raise NotImplementedError

    async def _read(self, op: Op[T], *args: Any) -> T:
        raise NotImplementedError

    async def check_writable(self) -> None:
        """Write the heartbeat row; raises StoreUnavailable when the database cannot take a write."""
        await self._write(ops.beat, datetime.now(UTC))

    async def add_delivery(self, new: NewDelivery) -> tuple[Delivery, bool]:
        check_new_state(new.state)
        utc(new.received_at)  # a naive time is refused before anything is queued or written
        return await self._insert(new)

    async def _insert(self, new: NewDelivery) -> tuple[Delivery, bool]:
        """Intake's insert, which an engine may make faster (SQLite's group commit, PostgreSQL's one statement)."""
        return await self._write(ops.insert_delivery, new)

    async def get_delivery(self, delivery_id: int) -> Delivery:
        return await self._read(get_delivery, delivery_id)

    async def list_deliveries(
        self, *, state: str | None = None, limit: int = 50, event_id: str | None = None, before_id: int | None = None
    ) -> list[Delivery]:
        return await self._read(ops.list_deliveries, state, limit, event_id, before_id)

    async def count_by_state(self) -> dict[str, int]:
        return await self._read(ops.count_by_state)

    async def oldest_pending(self) -> datetime | None:
        return await self._read(ops.oldest_pending)

    async def claim_delivery(
        self, *, now: datetime, lease_until: datetime, delivery_id: int | None = None
    ) -> Delivery | None:
        return await self._write(self._claim, utc(now), utc(lease_until), delivery_id)

    @staticmethod
    async def _claim(db: Db, now: datetime, lease_until: datetime, only: int | None) -> Delivery | None:
        """Lease the oldest claimable delivery (only that one, if given) whose event nobody else holds."""
        raise NotImplementedError

    async def add_note(self, delivery_id: int, *, token: int, now: datetime, note: str) -> bool:
        return await self._write(ops.add_note, delivery_id, token, utc(now), note)

    async def finish(self, delivery_id: int, *, token: int, now: datetime, outcome: Verdict) -> bool:
        check_finish_state(outcome.state)
        return await self._write(ops.finish, delivery_id, token, utc(now), outcome)

    async def reserve_order(
        self, *, event_id: str, reference: str, establishment_id: int, delivery_id: int, token: int, now: datetime
    ) -> Reservation:
        return await self._write(ops.reserve_order, event_id, reference, establishment_id, delivery_id, token, utc(now))

    async def complete_order(
        self, *, event_id: str, delivery_id: int, token: int, ref: OrderRef, snapshot: str, now: datetime, note: str,
        emails: Sequence[EmailMessage] = (),
    ) -> bool:
        return await self._write(ops.complete_order, event_id, delivery_id, token, ref, snapshot, utc(now), note, tuple(emails))

    async def get_order(self, event_id: str) -> LedgerEntry | None:
        return await self._read(ops.get_order, event_id, False)

    async def list_orders(self, *, limit: int = 100) -> list[LedgerEntry]:
        rows = await self._read(ops.all_rows, "SELECT * FROM orders ORDER BY id DESC LIMIT %s", (max(limit, 0),))
        return [ledger_entry(row) for row in rows]

    async def forget_order(self, event_id: str) -> bool:
        return await self._write(ops.execute, "DELETE FROM orders WHERE event_id = %s", (event_id,)) == 1

    async def replay_delivery(self, delivery_id: int, *, now: datetime, note: str) -> bool:
        return await self._write(ops.replay_delivery, delivery_id, utc(now), note)

    async def replay_state(self, state: str, *, now: datetime, note: str) -> int:
        check_replayable(state)
        return await self._write(ops.replay_state, state, utc(now), note)

    async def discard_delivery(self, delivery_id: int, *, now: datetime, note: str) -> bool:
        return await self._write(ops.discard_delivery, delivery_id, utc(now), note)

    async def get_flags(self) -> FlagOverrides:
        # Read from the database every time: that is how a flip in one process reaches all of them.
        return flags_from_row(await self._read(ops.one_row, "SELECT * FROM flags WHERE id = 1", ()))

    async def set_flags(
        self, *, enable_connector: bool | None, dry_run: bool | None, actor: str, reason: str, now: datetime
    ) -> FlagOverrides:
        return await self._write(ops.set_flags, enable_connector, dry_run, actor, reason, utc(now))

    async def clear_flags(self, *, actor: str, reason: str, now: datetime) -> None:
        await self._write(ops.execute, """INSERT INTO flags (id, enable_connector, dry_run, actor, reason, updated_at)
               VALUES (1, NULL, NULL, %s, %s, %s)
               ON CONFLICT (id) DO UPDATE SET enable_connector = NULL, dry_run = NULL,
                   actor = excluded.actor, reason = excluded.reason, updated_at = excluded.updated_at""",
                          (actor, reason, utc(now)))

    async def claim_email(self, *, now: datetime, lease_until: datetime) -> OutboxEmail | None:
        row = await self._write(ops.one_row, ops.CLAIM_EMAIL, {"now": utc(now), "lease_until": utc(lease_until)})
        return None if row is None else outbox_email(row)

    async def finish_email(
        self, email_id: int, *, token: int, state: str, now: datetime, error: str | None = None,
        attempts: int | None = None, next_attempt_at: datetime | None = None,
    ) -> bool:
        check_email_state(state)
        params = {"state": state, "error": error, "attempts": attempts, "next_attempt_at": utc_or_none(next_attempt_at),
                  "sent": EMAIL_SENT, "now": utc(now), "id": email_id, "token": token, "sending": EMAIL_SENDING}
        return await self._write(ops.execute, ops.FINISH_EMAIL, params) == 1

    async def list_emails(self, *, delivery_id: int | None = None, limit: int = 100) -> list[OutboxEmail]:
        if delivery_id is None:
            query, params = "SELECT * FROM emails ORDER BY id LIMIT %s", (max(limit, 0),)
        else:
            query, params = "SELECT * FROM emails WHERE delivery_id = %s ORDER BY id LIMIT %s", (delivery_id, max(limit, 0))
        return [outbox_email(row) for row in await self._read(ops.all_rows, query, params)]

    async def add_audit(self, *, actor: str, action: str, detail: str, reason: str, now: datetime) -> None:
        await self._write(ops.execute, "INSERT INTO audit (at, actor, action, detail, reason) VALUES (%s, %s, %s, %s, %s)",
                          (utc(now), actor, action, detail, reason))

    async def list_audit(self, *, limit: int = 100) -> list[AuditEntry]:
        rows = await self._read(ops.all_rows, "SELECT * FROM audit ORDER BY id DESC LIMIT %s", (max(limit, 0),))
        return [audit_entry(row) for row in rows]

    async def get_value(self, name: str) -> str | None:
        row = await self._read(ops.one_row, "SELECT value FROM kv WHERE name = %s", (name,))
        return None if row is None else row["value"]

    async def put_value(self, name: str, value: str, *, now: datetime) -> None:
        await self._write(ops.execute, ops.PUT_VALUE, (name, value, utc(now)))

    async def prune_history(self, *, older_than: datetime) -> int:
        """Delete terminal deliveries last touched before older_than, with their timelines and settled emails.

        Pending deliveries, the order ledger (it is what prevents a second order) and the audit log
        are never pruned; emails still waiting to be sent are kept; event versions first seen
        before older_than are forgotten. Works in batches, each its own transaction.
        """
        older_than = utc(older_than)
        await self._write(ops.execute, "DELETE FROM event_versions WHERE seen_at < %s", (older_than,))
        total = 0
        while True:
            batch = self._prune_batch
            pruned = await self._write(ops.prune_batch, older_than, batch)
            total += pruned
            if pruned < batch:
                return total

    async def version_seen(self, event_version: str) -> bool:
        return await self._read(ops.one_row, "SELECT 1 AS seen FROM event_versions WHERE version = %s", (event_version,)) is not None

    async def take_lease(self, name: str, *, holder: str, now: datetime, until: datetime) -> int | None:
        row = await self._write(ops.one_row, """INSERT INTO leases (name, token, holder, until) VALUES (%s, 1, %s, %s)
               ON CONFLICT (name) DO UPDATE SET token = leases.token + 1, holder = excluded.holder, until = excluded.until
               WHERE leases.until <= %s
               RETURNING token""", (name, holder, utc(until), utc(now)))
        return None if row is None else int(row["token"])

    async def keep_lease(self, name: str, *, token: int, now: datetime, until: datetime) -> bool:
        return await self._write(ops.execute, "UPDATE leases SET until = %s WHERE name = %s AND token = %s AND until > %s",
                                 (utc(until), name, token, utc(now))) == 1

    async def end_lease(self, name: str, *, token: int, now: datetime, value_name: str, value: str) -> bool:
        return await self._write(ops.end_lease, name, token, utc(now), value_name, value)

