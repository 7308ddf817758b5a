"""The PostgreSQL Store: the SQLite store's semantics on a database that several replicas share.

Every write is one transaction on a pooled psycopg connection. Claims use ``FOR UPDATE SKIP LOCKED``
plus a transaction-level advisory lock per TripleSeat event, so two replicas never both lease
deliveries of one event; migrations run under an advisory lock, so replicas starting together
apply each one exactly once. Nothing is cached in memory: another replica may change any row.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from tsrevel.adapters.store_common import (
    NOTE_CLAIMED,
    StoreOutage,
    NOTE_TAKEN_OVER,
    UTC,
    check_email_state,
    check_finish_state,
    check_new_state,
    check_replayable,
    intake_note,
    missing_delivery,
    utc,
    utc_or_none,
)
from tsrevel.domain.deliveries import (
    DISCARDABLE_STATES,
    DONE,
    IGNORED,
    LEDGER_CREATED,
    LEDGER_PENDING,
    PENDING_STATES,
    PROCESSING,
    QUEUED,
    REPLAYABLE_STATES,
    RETRYING,
    TERMINAL_STATES,
    Delivery,
    LedgerEntry,
    NewDelivery,
    TimelineEntry,
)
from tsrevel.domain.deliveries import SOURCE_WEBHOOK, duplicate_by_version
from tsrevel.domain.errors import ConfigError, DatabaseMissing, StoreUnavailable
from tsrevel.domain.orders import OrderRef
from tsrevel.domain.ports import (
    BUSY,
    EMAIL_FAILED,
    EMAIL_PENDING,
    EMAIL_RETRYING,
    EMAIL_SENDING,
    EMAIL_SENT,
    EMAIL_UNSENT,
    EXISTING,
    RESERVED,
    AuditEntry,
    EmailMessage,
    FlagOverrides,
    OutboxEmail,
    Reservation,
)

URL_PREFIXES = ("postgresql://", "postgres://")


def _literal(state: str) -> str:
    """A state as an SQL literal; states are fixed lower-case words from the domain, never input."""
    if not re.fullmatch(r"[a-z_]+", state):
        raise ValueError(f"state {state!r} cannot be written as a plain SQL literal")
    return f"'{state}'"


_QUEUED, _RETRYING, _PROCESSING = _literal(QUEUED), _literal(RETRYING), _literal(PROCESSING)
_EMAIL_PENDING, _EMAIL_RETRYING, _EMAIL_SENDING = (
    _literal(EMAIL_PENDING), _literal(EMAIL_RETRYING), _literal(EMAIL_SENDING)
)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Advisory lock keys (the two-int4 form, so they never meet a one-bigint lock another app may take).
_MIGRATION_LOCK = (0x74730001, 0)
_EVENT_LOCK_CLASS = 0x74730002  # second key: hashtext(event_id)

# Pruning deletes in batches, so a first prune of a big backlog never holds locks for long.
_PRUNE_BATCH = 2000

# The same schema versions as the SQLite store, in PostgreSQL's dialect. orders.delivery_id and
# emails.delivery_id deliberately have no foreign key: pruning old deliveries must keep the ledger
# (it is what prevents a second order) and any email still waiting to be sent.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE deliveries (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            key TEXT NOT NULL UNIQUE,
            body BYTEA NOT NULL,
            correlation_id TEXT NOT NULL,
            received_at TIMESTAMPTZ NOT NULL,
            trigger_type TEXT,
            event_id TEXT,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TIMESTAMPTZ,
            last_error TEXT,
            order_reference TEXT,
            result TEXT,
            lease_token BIGINT NOT NULL DEFAULT 0,
            lease_until TIMESTAMPTZ,
            updated_at TIMESTAMPTZ NOT NULL,
            header_names JSONB NOT NULL DEFAULT '[]'
        )""",
        "CREATE INDEX deliveries_by_state ON deliveries (state, id)",
        "CREATE INDEX deliveries_by_event ON deliveries (event_id, state)",
        # Only pending rows, in arrival order: a claim walks it instead of sorting the whole backlog.
        f"CREATE INDEX deliveries_claimable ON deliveries (id) WHERE state IN ({_QUEUED}, {_RETRYING}, {_PROCESSING})",
        """CREATE TABLE timeline (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            delivery_id BIGINT NOT NULL REFERENCES deliveries (id),
            at TIMESTAMPTZ NOT NULL,
            state TEXT NOT NULL,
            note TEXT NOT NULL
        )""",
        "CREATE INDEX timeline_by_delivery ON timeline (delivery_id, id)",
        """CREATE TABLE orders (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id TEXT NOT NULL UNIQUE,
            reference TEXT NOT NULL,
            establishment_id BIGINT NOT NULL,
            delivery_id BIGINT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'created')),
            revel_order_id BIGINT,
            revel_uri TEXT,
            snapshot TEXT,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL
        )""",
        """CREATE TABLE flags (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            enable_connector BOOLEAN,
            dry_run BOOLEAN,
            actor TEXT,
            reason TEXT,
            updated_at TIMESTAMPTZ
        )""",
        """CREATE TABLE emails (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            delivery_id BIGINT,
            correlation_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            text TEXT NOT NULL,
            recipients JSONB NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TIMESTAMPTZ,
            last_error TEXT,
            created_at TIMESTAMPTZ NOT NULL,
            sent_at TIMESTAMPTZ,
            lease_token BIGINT NOT NULL DEFAULT 0,
            lease_until TIMESTAMPTZ
        )""",
        "CREATE INDEX emails_by_state ON emails (state, id)",
        f"CREATE INDEX emails_claimable ON emails (id) WHERE state IN ({_EMAIL_PENDING}, {_EMAIL_RETRYING}, {_EMAIL_SENDING})",
        "CREATE INDEX emails_by_delivery ON emails (delivery_id, id)",
        """CREATE TABLE audit (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at TIMESTAMPTZ NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT NOT NULL,
            reason TEXT NOT NULL
        )""",
        "CREATE TABLE heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), at TIMESTAMPTZ NOT NULL)",
    ),
    (
        # Small named values that must survive restarts (e.g. a rotated OAuth refresh token).
        "CREATE TABLE kv (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TIMESTAMPTZ NOT NULL)",
        "CREATE INDEX deliveries_by_updated ON deliveries (updated_at)",
    ),
    (
        # Catch-up sync: how each delivery came, the event versions seen, and named leases (one poll at a time).
        "ALTER TABLE deliveries ADD COLUMN source TEXT NOT NULL DEFAULT 'webhook'",
        """CREATE TABLE event_versions (
            version TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            delivery_id BIGINT,
            seen_at TIMESTAMPTZ NOT NULL
        )""",
        "CREATE TABLE leases (name TEXT PRIMARY KEY, token BIGINT NOT NULL, holder TEXT NOT NULL, until TIMESTAMPTZ NOT NULL)",
    ),
)


# Driver errors that mean "the database cannot take this call now": unreachable, shut down, out of
# resources (disk full), locks not available, a read-only (standby) server.
_UNAVAILABLE = (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction)


def host_of(url: str) -> str:
    """host:port/dbname of a PostgreSQL URL, for messages: never the user's password."""
    info = conninfo_to_dict(url)
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"


def check_url(url: str) -> str:
    """The URL itself when it names a PostgreSQL database; ConfigError (without the URL: it may hold a password)."""
    if not url.startswith(URL_PREFIXES):
        raise ConfigError("database URL is not a PostgreSQL URL; write postgresql://user@host:port/dbname")
    try:
        conninfo_to_dict(url)
    except psycopg.Error:
        # libpq's message may quote the whole URL, password and all: say what to check instead.
        raise ConfigError("database URL is not a valid PostgreSQL URL (check its host, port and ?parameters)") from None
    return url


class PostgresStore:
    """Deliveries, the order ledger, flags, the email outbox and audit in one PostgreSQL schema.

    ``schema``: keep the tables in this schema (created by migrate()) instead of the first one on
    the connection's search_path; a URL may also choose one with ``?options=-csearch_path%3Dname``,
    in which case the schema must already exist. The pool opens on first use, not here.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str | None = None,
        min_size: int = 1,
        max_size: int = 10,
        timeout_s: float = 15.0,
        create: bool = True,
    ) -> None:
        if schema is not None and not _SCHEMA_NAME.match(schema):
            raise ConfigError(f"schema {schema!r} is not a plain lower-case PostgreSQL name")
        self._url = check_url(url)
        self._schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._timeout_s = timeout_s
        self._create = create  # False: refuse a database without tsrevel's tables (the operator CLI)
        self._pool: AsyncConnectionPool[AsyncConnection[DictRow]] | None = None
        self._opening = asyncio.Lock()
        self._closed = False
        self._outage = StoreOutage(f"PostgreSQL store {host_of(self._url)}")

    @classmethod
    def from_url(cls, url: str, *, schema: str | None = None, **pool: Any) -> PostgresStore:
        """A store for a ``postgresql://`` (or ``postgres://``) URL such as TSREVEL_DATABASE_URL."""
        return cls(url, schema=schema, **pool)

    @property
    def schema(self) -> str | None:
        return self._schema

    def __repr__(self) -> str:
        # Never the URL: it may carry a password.
        return f"PostgresStore(schema={self._schema!r})"

    # -- lifecycle --------------------------------------------------------------------------------

    async def migrate(self) -> None:
        async with self._connection() as conn:
            if not self._create:
                table = f"{self._schema}.schema_version" if self._schema else "schema_version"
                row = await _one(conn, "SELECT to_regclass(%s) IS NOT NULL AS found", (table,))
                if row is None or not row["found"]:
                    where = f"schema {self._schema} of " if self._schema else ""
                    raise DatabaseMissing(f"there are no tsrevel tables in {where}{host_of(self._url)}")
            while await _apply_next_migration(conn, self._schema):
                pass

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        async with self._opening:
            if self._pool is not None:
                await self._pool.close()
                self._pool = None

    async def check_writable(self) -> None:
        """Write the heartbeat row; raises StoreUnavailable when the database cannot take a write."""
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO heartbeat (id, at) VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET at = excluded.at"
            )

    async def probe(self, *, within_s: float) -> None:
        """Connect once, trying again until within_s has passed; StoreUnavailable with the last reason and the bound.

        For start-up and the CLI: a pool would only say "couldn't get a connection", not why.
        """
        deadline = time.monotonic() + within_s
        last = "no answer"
        while (left := deadline - time.monotonic()) > 0:
            kwargs = {**self._connect_kwargs(), "connect_timeout": max(1, int(min(5.0, left)))}
            try:
                async with asyncio.timeout(left):
                    conn = await psycopg.AsyncConnection.connect(self._url, **kwargs)
                await conn.close()
                return
            except TimeoutError:
                break  # the bound ran out mid-attempt: the last reason stands
            except psycopg.Error as exc:
                if exc.sqlstate is not None or "FATAL:" in str(exc):  # the server answered (no such database, wrong password)
                    raise StoreUnavailable(self._reason(exc)) from None
                last = self._reason(exc)
            await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        raise StoreUnavailable(f"{last}; gave up after {within_s:g} s")

    async def synchronous_mode(self) -> str:
        """SHOW synchronous_commit on the store's own connections: "on" unless the server or the URL lowered it."""
        async with self._connection() as conn:
            row = await _one(conn, "SHOW synchronous_commit")
        assert row is not None
        return str(row["synchronous_commit"])

    # -- deliveries -------------------------------------------------------------------------------

    async def add_delivery(self, new: NewDelivery) -> tuple[Delivery, bool]:
        check_new_state(new.state)
        if new.source != SOURCE_WEBHOOK or new.event_version is not None:
            return await self._add_sourced_delivery(new)
        received_at = utc(new.received_at)
        note = intake_note(new)
        async with self._connection() as conn:
            # One statement, so atomic without a transaction: intake answers only after this commits.
            # A concurrent insert of the same key waits for the first to commit, then inserts nothing.
            row = await _one(
                conn,
                """WITH inserted AS (
                       INSERT INTO deliveries (key, body, correlation_id, received_at, trigger_type, event_id, state,
                                               last_error, updated_at, header_names)
                       VALUES (%(key)s, %(body)s, %(cid)s, %(at)s, %(trigger)s, %(event)s, %(state)s, %(error)s, %(at)s,
                               %(headers)s::jsonb)
                       ON CONFLICT (key) DO NOTHING
                       RETURNING *
                   ), noted AS (
                       INSERT INTO timeline (delivery_id, at, state, note)
                       SELECT id, %(at)s, %(state)s, %(note)s FROM inserted
                   )
                   SELECT * FROM inserted""",
                {
                    "key": new.key,
                    "body": new.body,
                    "cid": new.correlation_id,
                    "at": received_at,
                    "trigger": new.trigger_type,
                    "event": new.event_id,
                    "state": new.state,
                    "error": new.error,
                    "headers": json.dumps(list(new.header_names)),
                    "note": note,
                },
            )
            if row is not None:
                return _delivery(row, (TimelineEntry(at=received_at, state=new.state, note=note),)), True
            existing = await _one(conn, "SELECT id FROM deliveries WHERE key = %s", (new.key,))
            assert existing is not None  # the conflicting row is committed, or we would have inserted
            return await _get_delivery(conn, existing["id"]), False

    async def get_delivery(self, delivery_id: int) -> Delivery:
        async with self._connection() as conn:
            return await _get_delivery(conn, delivery_id)

    async def list_deliveries(
        self, *, state: str | None = None, limit: int = 50, event_id: str | None = None, before_id: int | None = None
    ) -> list[Delivery]:
        where, args = ["TRUE"], []
        for clause, value in (("state = %s", state), ("event_id = %s", event_id), ("id < %s", before_id)):
            if value is not None:
                where.append(clause)
                args.append(value)
        async with self._connection() as conn:
            rows = await _all(
                conn, f"SELECT * FROM deliveries WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT %s", (*args, max(limit, 0))
            )
            return [_delivery(row, ()) for row in rows]

    async def count_by_state(self) -> dict[str, int]:
        async with self._connection() as conn:
            rows = await _all(conn, "SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state")
            return {row["state"]: row["n"] for row in rows}

    async def oldest_pending(self) -> datetime | None:
        async with self._connection() as conn:
            row = await _one(
                conn, "SELECT MIN(received_at) AS oldest FROM deliveries WHERE state = ANY(%s)", (sorted(PENDING_STATES),)
            )
            return _time_or_none(row["oldest"]) if row else None

    # -- the worker's lease -----------------------------------------------------------------------

    async def claim_delivery(
        self, *, now: datetime, lease_until: datetime, delivery_id: int | None = None
    ) -> Delivery | None:
        now, lease_until = utc(now), utc(lease_until)
        async with self._transaction() as conn:
            return await _claim_delivery(conn, now, lease_until, delivery_id)

    async def add_note(self, delivery_id: int, *, token: int, now: datetime, note: str) -> bool:
        now = utc(now)
        async with self._transaction() as conn:
            # The row lock orders this note against a takeover: it sees either the old lease or the new.
            row = await _one(
                conn,
                """SELECT 1 FROM deliveries
                   WHERE id = %s AND lease_token = %s AND state = %s AND lease_until >= %s
                   FOR UPDATE""",
                (delivery_id, token, PROCESSING, now),
            )
            if row is None:
                return False
            await _add_timeline(conn, delivery_id, now, PROCESSING, note)
            return True

    async def finish(
        self,
        delivery_id: int,
        *,
        token: int,
        state: str,
        now: datetime,
        note: str,
        error: str | None = None,
        attempts: int | None = None,
        next_attempt_at: datetime | None = None,
        result: str | None = None,
        order_reference: str | None = None,
        emails: Sequence[EmailMessage] = (),
        release_event_id: str | None = None,
    ) -> bool:
        check_finish_state(state)
        now, next_attempt_at = utc(now), utc_or_none(next_attempt_at)
        async with self._transaction() as conn:
            row = await _one(
                conn,
                """UPDATE deliveries
                   SET state = %(state)s,
                       last_error = COALESCE(%(error)s, last_error),
                       attempts = COALESCE(%(attempts)s::integer, attempts),
                       next_attempt_at = %(next_attempt_at)s,
                       result = COALESCE(%(result)s, result),
                       order_reference = COALESCE(%(order_reference)s, order_reference),
                       updated_at = %(now)s,
                       lease_until = NULL
                   WHERE id = %(id)s AND lease_token = %(token)s AND state = %(processing)s
                   RETURNING id""",
                {
                    "state": state,
                    "error": error,
                    "attempts": attempts,
                    "next_attempt_at": next_attempt_at,
                    "result": result,
                    "order_reference": order_reference,
                    "now": now,
                    "id": delivery_id,
                    "token": token,
                    "processing": PROCESSING,
                },
            )
            if row is None:
                return False
            await _add_timeline(conn, delivery_id, now, state, note)
            await _add_emails(conn, emails, now)
            if release_event_id is not None:
                await conn.execute(
                    "DELETE FROM orders WHERE event_id = %s AND state = %s AND delivery_id = %s",
                    (release_event_id, LEDGER_PENDING, delivery_id),
                )
            return True

    # -- the order ledger -------------------------------------------------------------------------

    async def reserve_order(
        self, *, event_id: str, reference: str, establishment_id: int, delivery_id: int, token: int, now: datetime
    ) -> Reservation:
        now = utc(now)
        async with self._transaction() as conn:
            if not await _lock_lease(conn, delivery_id, token):
                return Reservation(outcome=BUSY)
            inserted = await _one(
                conn,
                """INSERT INTO orders (event_id, reference, establishment_id, delivery_id, state, created_at, updated_at)
                   VALUES (%s, %s, %s, %s, %s, %s, %s)
                   ON CONFLICT (event_id) DO NOTHING
                   RETURNING id""",
                (event_id, reference, establishment_id, delivery_id, LEDGER_PENDING, now, now),
            )
            entry = await _locked_order(conn, event_id)
            assert entry is not None  # inserted just now, or there already (and the ledger is never pruned)
            if inserted is not None or (entry.state == LEDGER_PENDING and entry.delivery_id == delivery_id):
                return Reservation(outcome=RESERVED, entry=entry)
            if entry.state == LEDGER_CREATED:
                return Reservation(outcome=EXISTING, entry=entry)
            owner_leased = await _one(
                conn,
                "SELECT 1 FROM deliveries WHERE id = %s AND state = %s AND lease_until >= %s",
                (entry.delivery_id, PROCESSING, now),
            )
            if owner_leased is not None:
                return Reservation(outcome=BUSY, entry=entry)
            # The owner finished, died or is waiting to retry: its slot passes to this delivery.
            # reference and establishment stay, so the caller looks where a lost create may have gone.
            row = await _one(
                conn,
                "UPDATE orders SET delivery_id = %s, updated_at = %s WHERE event_id = %s RETURNING *",
                (delivery_id, now, event_id),
            )
            assert row is not None
            return Reservation(outcome=RESERVED, entry=_ledger_entry(row))

    async def complete_order(
        self,
        *,
        event_id: str,
        delivery_id: int,
        token: int,
        ref: OrderRef,
        snapshot: str,
        now: datetime,
        note: str,
        emails: Sequence[EmailMessage] = (),
    ) -> bool:
        now = utc(now)
        async with self._transaction() as conn:
            if not await _lock_lease(conn, delivery_id, token):
                return False
            entry = await _locked_order(conn, event_id)
            if entry is None or entry.delivery_id != delivery_id:
                return False
            await conn.execute(
                """UPDATE orders SET state = %s, revel_order_id = %s, revel_uri = %s, snapshot = %s, updated_at = %s
                   WHERE event_id = %s""",
                (LEDGER_CREATED, ref.order_id, ref.resource_uri, snapshot, now, event_id),
            )
            await conn.execute(
                """UPDATE deliveries SET state = %s, order_reference = %s, lease_until = NULL, updated_at = %s
                   WHERE id = %s""",
                (DONE, entry.reference, now, delivery_id),
            )
            await _add_timeline(conn, delivery_id, now, DONE, note)
            await _add_emails(conn, emails, now)
            return True

    async def get_order(self, event_id: str) -> LedgerEntry | None:
        async with self._connection() as conn:
            row = await _one(conn, "SELECT * FROM orders WHERE event_id = %s", (event_id,))
            return None if row is None else _ledger_entry(row)

    async def list_orders(self, *, limit: int = 100) -> list[LedgerEntry]:
        async with self._connection() as conn:
            rows = await _all(conn, "SELECT * FROM orders ORDER BY id DESC LIMIT %s", (max(limit, 0),))
            return [_ledger_entry(row) for row in rows]

    async def forget_order(self, event_id: str) -> bool:
        async with self._transaction() as conn:
            return await _one(conn, "DELETE FROM orders WHERE event_id = %s RETURNING id", (event_id,)) is not None

    # -- replay -----------------------------------------------------------------------------------

    async def replay_delivery(self, delivery_id: int, *, now: datetime, note: str) -> bool:
        now = utc(now)
        async with self._transaction() as conn:
            row = await _one(conn, "SELECT state FROM deliveries WHERE id = %s FOR UPDATE", (delivery_id,))
            if row is None:
                raise missing_delivery(delivery_id)
            if row["state"] not in REPLAYABLE_STATES:
                return False
            await _requeue(conn, [delivery_id], now, note)
            return True

    async def replay_state(self, state: str, *, now: datetime, note: str) -> int:
        check_replayable(state)
        now = utc(now)
        async with self._transaction() as conn:
            rows = await _all(conn, "SELECT id FROM deliveries WHERE state = %s ORDER BY id FOR UPDATE", (state,))
            ids = [row["id"] for row in rows]
            await _requeue(conn, ids, now, note)
            return len(ids)

    async def discard_delivery(self, delivery_id: int, *, now: datetime, note: str) -> bool:
        now = utc(now)
        async with self._transaction() as conn:
            row = await _one(conn, "SELECT state FROM deliveries WHERE id = %s FOR UPDATE", (delivery_id,))
            if row is None:
                raise missing_delivery(delivery_id)
            if row["state"] not in DISCARDABLE_STATES:
                return False
            await conn.execute(
                "UPDATE deliveries SET state = %s, next_attempt_at = NULL, lease_until = NULL, updated_at = %s WHERE id = %s",
                (IGNORED, now, delivery_id),
            )
            await _add_timeline(conn, delivery_id, now, IGNORED, note)
            return True

    # -- flags ------------------------------------------------------------------------------------

    async def get_flags(self) -> FlagOverrides:
        # Read from the database every time: that is how a flip on one replica reaches all of them.
        async with self._connection() as conn:
            return await _get_flags(conn)

    async def set_flags(
        self, *, enable_connector: bool | None, dry_run: bool | None, actor: str, reason: str, now: datetime
    ) -> FlagOverrides:
        now = utc(now)
        async with self._transaction() as conn:
            await conn.execute(
                """INSERT INTO flags (id, enable_connector, dry_run, actor, reason, updated_at)
                   VALUES (1, %s, %s, %s, %s, %s)
                   ON CONFLICT (id) DO UPDATE SET
                       enable_connector = COALESCE(excluded.enable_connector, flags.enable_connector),
                       dry_run = COALESCE(excluded.dry_run, flags.dry_run),
                       actor = excluded.actor, reason = excluded.reason, updated_at = excluded.updated_at""",
                (enable_connector, dry_run, actor, reason, now),
            )
            return await _get_flags(conn)

    async def clear_flags(self, *, actor: str, reason: str, now: datetime) -> None:
        now = utc(now)
        async with self._transaction() as conn:
            await conn.execute(
                """INSERT INTO flags (id, enable_connector, dry_run, actor, reason, updated_at)
                   VALUES (1, NULL, NULL, %s, %s, %s)
                   ON CONFLICT (id) DO UPDATE SET
                       enable_connector = NULL, dry_run = NULL,
                       actor = excluded.actor, reason = excluded.reason, updated_at = excluded.updated_at""",
                (actor, reason, now),
            )

    # -- the email outbox -------------------------------------------------------------------------

    async def claim_email(self, *, now: datetime, lease_until: datetime) -> OutboxEmail | None:
        now, lease_until = utc(now), utc(lease_until)
        async with self._transaction() as conn:
            row = await _one(
                conn,
                f"""UPDATE emails SET state = {_EMAIL_SENDING}, lease_token = lease_token + 1, lease_until = %(lease_until)s
                   WHERE id = (
                       SELECT id FROM emails
                       WHERE state IN ({_EMAIL_PENDING}, {_EMAIL_RETRYING}, {_EMAIL_SENDING})
                         AND (state = {_EMAIL_PENDING}
                              OR (state = {_EMAIL_RETRYING} AND (next_attempt_at IS NULL OR next_attempt_at <= %(now)s))
                              OR (state = {_EMAIL_SENDING} AND (lease_until IS NULL OR lease_until < %(now)s)))
                       ORDER BY id
                       LIMIT 1
                       FOR UPDATE SKIP LOCKED)
                   RETURNING *""",
                {"now": now, "lease_until": lease_until},
            )
            return None if row is None else _outbox_email(row)

    async def finish_email(
        self,
        email_id: int,
        *,
        token: int,
        state: str,
        now: datetime,
        error: str | None = None,
        attempts: int | None = None,
        next_attempt_at: datetime | None = None,
    ) -> bool:
        check_email_state(state)
        now, next_attempt_at = utc(now), utc_or_none(next_attempt_at)
        async with self._transaction() as conn:
            row = await _one(
                conn,
                """UPDATE emails
                   SET state = %(state)s,
                       last_error = COALESCE(%(error)s, last_error),
                       attempts = COALESCE(%(attempts)s::integer, attempts),
                       next_attempt_at = %(next_attempt_at)s,
                       sent_at = CASE WHEN %(state)s = %(sent)s THEN %(now)s ELSE sent_at END,
                       lease_until = NULL
                   WHERE id = %(id)s AND lease_token = %(token)s AND state = %(sending)s
                   RETURNING id""",
                {
                    "state": state,
                    "error": error,
                    "attempts": attempts,
                    "next_attempt_at": next_attempt_at,
                    "sent": EMAIL_SENT,
                    "now": now,
                    "id": email_id,
                    "token": token,
                    "sending": EMAIL_SENDING,
                },
            )
            return row is not None

    async def list_emails(self, *, delivery_id: int | None = None, limit: int = 100) -> list[OutboxEmail]:
        async with self._connection() as conn:
            if delivery_id is None:
                rows = await _all(conn, "SELECT * FROM emails ORDER BY id LIMIT %s", (max(limit, 0),))
            else:
                rows = await _all(
                    conn, "SELECT * FROM emails WHERE delivery_id = %s ORDER BY id LIMIT %s", (delivery_id, max(limit, 0))
                )
            return [_outbox_email(row) for row in rows]

    # -- audit ------------------------------------------------------------------------------------

    async def add_audit(self, *, actor: str, action: str, detail: str, reason: str, now: datetime) -> None:
        now = utc(now)
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO audit (at, actor, action, detail, reason) VALUES (%s, %s, %s, %s, %s)",
                (now, actor, action, detail, reason),
            )

    async def list_audit(self, *, limit: int = 100) -> list[AuditEntry]:
        async with self._connection() as conn:
            rows = await _all(conn, "SELECT * FROM audit ORDER BY id DESC LIMIT %s", (max(limit, 0),))
            return [
                AuditEntry(
                    id=row["id"],
                    at=_time(row["at"]),
                    actor=row["actor"],
                    action=row["action"],
                    detail=row["detail"],
                    reason=row["reason"],
                )
                for row in rows
            ]

    # -- named values and pruning -----------------------------------------------------------------

    async def get_value(self, name: str) -> str | None:
        async with self._connection() as conn:
            row = await _one(conn, "SELECT value FROM kv WHERE name = %s", (name,))
            return None if row is None else row["value"]

    async def put_value(self, name: str, value: str, *, now: datetime) -> None:
        now = utc(now)
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT INTO kv (name, value, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (name, value, now),
            )

    # -- event versions and named leases (catch-up sync) -------------------------------------------

    async def _add_sourced_delivery(self, new: NewDelivery) -> tuple[Delivery, bool]:
        """Store a delivery with its source, and its event version in the same transaction (first one wins).

        A concurrent insert of the same version waits on the version row's key until the first
        transaction commits, then sees its delivery: a webhook and a poll of one version make one delivery.
        """
        received_at = utc(new.received_at)
        note = intake_note(new)
        async with self._transaction() as conn:
            first = False
            if new.event_version is not None:
                first = await _one(
                    conn,
                    "INSERT INTO event_versions (version, source, seen_at) VALUES (%s, %s, %s) "
                    "ON CONFLICT (version) DO NOTHING RETURNING version",
                    (new.event_version, new.source, received_at),
                ) is not None
                if not first:
                    seen = await _one(
                        conn,
                        "SELECT v.source, d.id FROM event_versions v JOIN deliveries d ON d.id = v.delivery_id WHERE v.version = %s",
                        (new.event_version,),
                    )
                    if seen is not None and duplicate_by_version(new.source, seen["source"]):
                        return await _get_delivery(conn, seen["id"]), False
            # One statement: the delivery, its first timeline note, and (when this is the version's first
            # delivery) the version row's pointer to it; the stored row comes back, so no second read.
            row = await _one(
                conn,
                """WITH inserted AS (
                       INSERT INTO deliveries (key, body, correlation_id, received_at, trigger_type, event_id, state,
                                               last_error, updated_at, header_names, source)
                       VALUES (%(key)s, %(body)s, %(cid)s, %(at)s, %(trigger)s, %(event)s, %(state)s, %(error)s, %(at)s,
                               %(headers)s::jsonb, %(source)s)
                       ON CONFLICT (key) DO NOTHING
                       RETURNING *
                   ), noted AS (
                       INSERT INTO timeline (delivery_id, at, state, note)
                       SELECT id, %(at)s, %(state)s, %(note)s FROM inserted
                   ), pointed AS (
                       UPDATE event_versions SET delivery_id = (SELECT id FROM inserted)
                       WHERE %(first)s AND version = %(version)s AND EXISTS (SELECT 1 FROM inserted)
                   )
                   SELECT * FROM inserted""",
                {
                    "key": new.key, "body": new.body, "cid": new.correlation_id, "at": received_at,
                    "trigger": new.trigger_type, "event": new.event_id, "state": new.state, "error": new.error,
                    "headers": json.dumps(list(new.header_names)), "source": new.source, "note": note,
                    "first": first, "version": new.event_version,
                },
            )
            if row is not None:
                return _delivery(row, (TimelineEntry(at=received_at, state=new.state, note=note),)), True
            existing = await _one(conn, "SELECT id FROM deliveries WHERE key = %s", (new.key,))
            assert existing is not None  # the conflicting row is committed, or we would have inserted
            if first:
                await conn.execute("UPDATE event_versions SET delivery_id = %s WHERE version = %s", (existing["id"], new.event_version))
            return await _get_delivery(conn, existing["id"]), False

    async def _prune_versions(self, older_than: datetime) -> None:
        """Forget event versions first seen before older_than (prune_history calls it)."""
        async with self._transaction() as conn:
            await conn.execute("DELETE FROM event_versions WHERE seen_at < %s", (older_than,))

    async def version_seen(self, event_version: str) -> bool:
        async with self._connection() as conn:
            return await _one(conn, "SELECT 1 FROM event_versions WHERE version = %s", (event_version,)) is not None

    async def take_lease(self, name: str, *, holder: str, now: datetime, until: datetime) -> int | None:
        async with self._transaction() as conn:
            row = await _one(
                conn,
                """INSERT INTO leases (name, token, holder, until) VALUES (%s, 1, %s, %s)
                   ON CONFLICT (name) DO UPDATE SET token = leases.token + 1, holder = excluded.holder, until = excluded.until
                   WHERE leases.until <= %s
                   RETURNING token""",
                (name, holder, utc(until), utc(now)),
            )
            return None if row is None else int(row["token"])

    async def keep_lease(self, name: str, *, token: int, now: datetime, until: datetime) -> bool:
        async with self._transaction() as conn:
            cur = await conn.execute(
                "UPDATE leases SET until = %s WHERE name = %s AND token = %s AND until > %s", (utc(until), name, token, utc(now))
            )
            return cur.rowcount == 1

    async def end_lease(self, name: str, *, token: int, now: datetime, value_name: str, value: str) -> bool:
        now = utc(now)
        async with self._transaction() as conn:
            cur = await conn.execute("UPDATE leases SET until = %s WHERE name = %s AND token = %s", (now, name, token))
            if cur.rowcount != 1:
                return False
            await conn.execute(
                "INSERT INTO kv (name, value, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (value_name, value, now),
            )
            return True

    async def prune_history(self, *, older_than: datetime) -> int:
        """Delete terminal deliveries last touched before older_than, with their timelines and settled emails.

        Pending deliveries, the order ledger (it is what prevents a second order) and the audit log
        are never pruned; emails still waiting to be sent are kept. Works in batches, each its own
        transaction, so replicas keep working while a large backlog is pruned.
        """
        older_than = utc(older_than)
        await self._prune_versions(older_than)
        total = 0
        while True:
            async with self._transaction() as conn:
                # Locked rows are being replayed right now: leave them for the next prune.
                rows = await _all(
                    conn,
                    # As in every store: the delivery that owns a ledger row, or has an email still
                    # to send, is kept, so the ledger and the outbox always point at a real delivery.
                    """SELECT id FROM deliveries AS d WHERE state = ANY(%s) AND updated_at < %s
                         AND NOT EXISTS (SELECT 1 FROM orders AS o WHERE o.delivery_id = d.id)
                         AND NOT EXISTS (SELECT 1 FROM emails AS e WHERE e.delivery_id = d.id AND NOT (e.state = ANY(%s)))
                       ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""",
                    (sorted(TERMINAL_STATES), older_than, [EMAIL_SENT, EMAIL_UNSENT, EMAIL_FAILED], _PRUNE_BATCH),
                )
                ids = [row["id"] for row in rows]
                if ids:
                    await conn.execute("DELETE FROM timeline WHERE delivery_id = ANY(%s)", (ids,))
                    await conn.execute(
                        "DELETE FROM emails WHERE delivery_id = ANY(%s) AND state = ANY(%s)",
                        (ids, [EMAIL_SENT, EMAIL_UNSENT, EMAIL_FAILED]),
                    )
                    await conn.execute("DELETE FROM deliveries WHERE id = ANY(%s)", (ids,))
            total += len(ids)
            if len(ids) < _PRUNE_BATCH:
                return total

    # -- connections ------------------------------------------------------------------------------

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[DictRow]]:
        """A pooled connection in autocommit mode: each statement is its own snapshot.

        A server that cannot be reached, has shut down, is read-only or full makes StoreUnavailable;
        a statement's own error (a bug, a constraint) passes through as it is.
        """
        try:
            pool = await self._open_pool()
            async with pool.connection() as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise self._outage.failed(StoreUnavailable(self._reason(exc))) from exc
        self._outage.recovered()

    def _reason(self, exc: BaseException) -> str:
        """The driver's first line, without the password should the message ever quote the URL."""
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        password = conninfo_to_dict(self._url).get("password")
        return text.replace(password, "***") if password else text

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection[DictRow]]:
        """A pooled connection inside one transaction, committed on success and rolled back on error."""
        async with self._connection() as conn, conn.transaction():
            yield conn

    async def _open_pool(self) -> AsyncConnectionPool[AsyncConnection[DictRow]]:
        if self._closed:
            raise RuntimeError("the PostgreSQL store is closed")
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._closed:
                raise RuntimeError("the PostgreSQL store is closed")
            if self._pool is None:
                pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
                    self._url,
                    kwargs=self._connect_kwargs(),
                    min_size=self._min_size,
                    max_size=self._max_size,
                    open=False,
                    configure=self._configure,
                    # A round trip per checkout, so a connection broken by a database restart is
                    # replaced instead of failing the caller's transaction.
                    check=AsyncConnectionPool.check_connection,
                    timeout=self._timeout_s,
                    name="tsrevel",
                )
                try:
                    await pool.open(wait=True, timeout=self._timeout_s)
                except BaseException:
                    # Leave no half-open pool behind: the next call (a readiness probe, say) tries again.
                    await pool.close()
                    raise
                self._pool = pool
            return self._pool

    def _connect_kwargs(self) -> dict[str, Any]:
        given = conninfo_to_dict(self._url)
        kwargs: dict[str, Any] = {"autocommit": True, "row_factory": dict_row}
        # Defaults only: whatever the URL says wins. libpq would otherwise wait forever on a dead host.
        if "connect_timeout" not in given:
            kwargs["connect_timeout"] = 5
        if "application_name" not in given:
            kwargs["application_name"] = "tsrevel"
        return kwargs

    async def _configure(self, conn: AsyncConnection[Any]) -> None:
        await conn.execute("SET TIME ZONE 'UTC'")
        if self._schema is not None:
            await conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self._schema)))


# -- migrations ----------------------------------------------------------------------------------


async def _apply_next_migration(conn: AsyncConnection[DictRow], schema: str | None) -> bool:
    """Apply the first migration not yet recorded, under the migration lock; False when current.

    The advisory lock is held until this transaction ends, so replicas starting together queue
    here and each finds the version the one before it recorded: every migration runs once.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s::integer, %s::integer)", _MIGRATION_LOCK)
        # Look before creating: CREATE ... IF NOT EXISTS still needs the CREATE privilege, which a
        # role given a ready-made schema may not have once it is set up.
        if schema is not None and await _one(conn, "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)) is None:
            await conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        found = await _one(conn, "SELECT to_regclass('schema_version') IS NOT NULL AS found")
        if not (found and found["found"]):
            await conn.execute(
                """CREATE TABLE schema_version (
                       version INTEGER PRIMARY KEY,
                       applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
            )
        row = await _one(conn, "SELECT COALESCE(MAX(version), 0) AS current FROM schema_version")
        current = row["current"] if row else 0
        if current > len(MIGRATIONS):
            raise RuntimeError(
                f"database schema version {current} is newer than this tsrevel knows ({len(MIGRATIONS)}); "
                "upgrade tsrevel"
            )
        if current == len(MIGRATIONS):
            return False
        for statement in MIGRATIONS[current]:
            await conn.execute(statement)
        await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (current + 1,))
        return True


# -- claiming ------------------------------------------------------------------------------------

# A missing next_attempt_at or lease_until counts as "due": a row must never be stuck for good.
# States are literals, not parameters, so that even a generic (prepared) plan can use the partial
# index of pending rows and walk it in id order instead of sorting the whole backlog.
_CLAIMABLE = f"""
    d.state IN ({_QUEUED}, {_RETRYING}, {_PROCESSING})
    AND (d.state = {_QUEUED}
         OR (d.state = {_RETRYING} AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= %(now)s))
         OR (d.state = {_PROCESSING} AND (d.lease_until IS NULL OR d.lease_until < %(now)s)))
    AND NOT EXISTS (
         SELECT 1 FROM deliveries AS other
         WHERE other.event_id = d.event_id AND other.id <> d.id
           AND other.state = {_PROCESSING} AND other.lease_until >= %(now)s)
"""
# The oldest unlocked candidate past `after`, row-locked (so racing claimers each get a different
# one), and for an event a try at its advisory lock, in one round trip. A subquery with LIMIT is
# never flattened, so the lock is tried for the one row returned only.
_NEXT_CANDIDATE = f"""
    SELECT c.id, c.event_id,
           CASE WHEN c.event_id IS NULL THEN true
                ELSE pg_try_advisory_xact_lock(%(lock_class)s::integer, hashtext(c.event_id)) END AS locked
    FROM (SELECT d.id, d.event_id FROM deliveries AS d
          WHERE {_CLAIMABLE}
            AND d.id > %(after)s
            AND (d.event_id IS NULL OR d.event_id <> ALL(%(busy)s::text[]))
            AND (%(only)s::bigint IS NULL OR d.id = %(only)s::bigint)
          ORDER BY d.id
          LIMIT 1
          FOR UPDATE OF d SKIP LOCKED) AS c
"""
# Re-checked in a snapshot taken after the event lock, then leased and noted, in one statement.
_TAKE = f"""
    WITH chosen AS (
        SELECT d.id, d.state FROM deliveries AS d WHERE d.id = %(id)s AND {_CLAIMABLE} FOR UPDATE
    ), taken AS (
        UPDATE deliveries AS leased
        SET state = {_PROCESSING}, lease_token = leased.lease_token + 1, lease_until = %(lease_until)s,
            updated_at = %(now)s
        FROM chosen WHERE leased.id = chosen.id
        RETURNING leased.id, chosen.state AS was
    )
    INSERT INTO timeline (delivery_id, at, state, note)
    SELECT id, %(now)s, {_PROCESSING}, CASE WHEN was = {_PROCESSING} THEN %(taken_over)s ELSE %(claimed)s END
    FROM taken
    RETURNING delivery_id
"""


async def _claim_delivery(
    conn: AsyncConnection[DictRow], now: datetime, lease_until: datetime, only: int | None
) -> Delivery | None:
    """Lease the oldest claimable delivery whose event no other worker holds.

    SKIP LOCKED alone cannot keep two replicas off one event: each would lock a different delivery
    of it while neither sees the other's uncommitted lease. So a claimer first takes the event's
    transaction-level advisory lock (try, never wait), and only then re-reads, in a new snapshot,
    whether the event is leased. The lock is released at commit, after the lease is visible, so the
    next claimer of that event always sees it.
    """
    params: dict[str, Any] = {
        "now": now,
        "lease_until": lease_until,
        "lock_class": _EVENT_LOCK_CLASS,
        "only": only,
        "claimed": NOTE_CLAIMED,
        "taken_over": NOTE_TAKEN_OVER,
    }
    busy_events: list[str] = []
    after = 0
    while True:
        candidate = await _one(conn, _NEXT_CANDIDATE, {**params, "after": after, "busy": busy_events})
        if candidate is None:
            return None
        after = candidate["id"]
        if not candidate["locked"]:
            busy_events.append(candidate["event_id"])  # another worker is claiming this event right now
            continue
        taken = await _one(conn, _TAKE, {**params, "id": candidate["id"]})
        if taken is None:
            continue  # another delivery of its event was leased and committed before we got the lock
        return await _get_delivery(conn, candidate["id"])


async def _lock_lease(conn: AsyncConnection[DictRow], delivery_id: int, token: int) -> bool:
    """The fence for commits: the token is current and nobody moved the delivery on (row locked until commit)."""
    row = await _one(
        conn,
        "SELECT 1 FROM deliveries WHERE id = %s AND lease_token = %s AND state = %s FOR UPDATE",
        (delivery_id, token, PROCESSING),
    )
    return row is not None


async def _locked_order(conn: AsyncConnection[DictRow], event_id: str) -> LedgerEntry | None:
    row = await _one(conn, "SELECT * FROM orders WHERE event_id = %s FOR UPDATE", (event_id,))
    return None if row is None else _ledger_entry(row)


# -- shared writes -------------------------------------------------------------------------------


async def _add_timeline(conn: AsyncConnection[DictRow], delivery_id: int, at: datetime, state: str, note: str) -> None:
    await conn.execute(
        "INSERT INTO timeline (delivery_id, at, state, note) VALUES (%s, %s, %s, %s)", (delivery_id, at, state, note)
    )


async def _add_emails(conn: AsyncConnection[DictRow], emails: Iterable[EmailMessage], now: datetime) -> None:
    rows = [
        (m.delivery_id, m.correlation_id, m.kind, m.subject, m.text, json.dumps(list(m.to)), EMAIL_PENDING, now)
        for m in emails
    ]
    if not rows:
        return
    async with conn.cursor() as cur:
        await cur.executemany(
            """INSERT INTO emails (delivery_id, correlation_id, kind, subject, text, recipients, state, created_at)
               VALUES (%s, %s, %s, %s, %s, %s::jsonb, %s, %s)""",
            rows,
        )


async def _requeue(conn: AsyncConnection[DictRow], ids: list[int], now: datetime, note: str) -> None:
    if not ids:
        return
    await conn.execute(
        """UPDATE deliveries
           SET state = %s, attempts = 0, next_attempt_at = NULL, lease_until = NULL, updated_at = %s
           WHERE id = ANY(%s)""",
        (QUEUED, now, ids),
    )
    # WITH ORDINALITY keeps the timeline ids in the order the deliveries arrived.
    await conn.execute(
        """INSERT INTO timeline (delivery_id, at, state, note)
           SELECT u.id, %s, %s, %s FROM unnest(%s::bigint[]) WITH ORDINALITY AS u (id, n) ORDER BY u.n""",
        (now, QUEUED, note, ids),
    )


# -- reads and rows to records -------------------------------------------------------------------


async def _one(conn: AsyncConnection[DictRow], query: Any, params: Any = None) -> DictRow | None:
    cur = await conn.execute(query, params)
    return await cur.fetchone()


async def _all(conn: AsyncConnection[DictRow], query: Any, params: Any = None) -> list[DictRow]:
    cur = await conn.execute(query, params)
    return await cur.fetchall()


async def _get_delivery(conn: AsyncConnection[DictRow], delivery_id: int) -> Delivery:
    # One statement, so the delivery and its timeline come from one snapshot even outside a transaction.
    row = await _one(
        conn,
        """SELECT d.*,
                  ARRAY(SELECT t.at FROM timeline AS t WHERE t.delivery_id = d.id ORDER BY t.id) AS timeline_at,
                  ARRAY(SELECT t.state FROM timeline AS t WHERE t.delivery_id = d.id ORDER BY t.id) AS timeline_state,
                  ARRAY(SELECT t.note FROM timeline AS t WHERE t.delivery_id = d.id ORDER BY t.id) AS timeline_note
           FROM deliveries AS d WHERE d.id = %s""",
        (delivery_id,),
    )
    if row is None:
        raise missing_delivery(delivery_id)
    timeline = tuple(
        TimelineEntry(at=_time(at), state=state, note=note)
        for at, state, note in zip(row["timeline_at"], row["timeline_state"], row["timeline_note"], strict=True)
    )
    return _delivery(row, timeline)


async def _get_flags(conn: AsyncConnection[DictRow]) -> FlagOverrides:
    row = await _one(conn, "SELECT * FROM flags WHERE id = 1")
    if row is None:
        return FlagOverrides()
    return FlagOverrides(
        enable_connector=row["enable_connector"],
        dry_run=row["dry_run"],
        actor=row["actor"],
        reason=row["reason"],
        updated_at=_time_or_none(row["updated_at"]),
    )


def _time(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _time_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _delivery(row: DictRow, timeline: tuple[TimelineEntry, ...]) -> Delivery:
    return Delivery(
        id=row["id"],
        key=row["key"],
        body=bytes(row["body"]),
        correlation_id=row["correlation_id"],
        received_at=_time(row["received_at"]),
        trigger_type=row["trigger_type"],
        event_id=row["event_id"],
        state=row["state"],
        attempts=row["attempts"],
        next_attempt_at=_time_or_none(row["next_attempt_at"]),
        last_error=row["last_error"],
        order_reference=row["order_reference"],
        result=row["result"],
        lease_token=row["lease_token"],
        lease_until=_time_or_none(row["lease_until"]),
        updated_at=_time_or_none(row["updated_at"]),
        timeline=timeline,
        source=row["source"],
    )


def _ledger_entry(row: DictRow) -> LedgerEntry:
    return LedgerEntry(
        event_id=row["event_id"],
        reference=row["reference"],
        establishment_id=row["establishment_id"],
        delivery_id=row["delivery_id"],
        state=row["state"],
        revel_order_id=row["revel_order_id"],
        revel_uri=row["revel_uri"],
        snapshot=row["snapshot"],
        created_at=_time_or_none(row["created_at"]),
        updated_at=_time_or_none(row["updated_at"]),
    )


def _outbox_email(row: DictRow) -> OutboxEmail:
    message = EmailMessage(
        kind=row["kind"],
        subject=row["subject"],
        text=row["text"],
        delivery_id=row["delivery_id"],
        correlation_id=row["correlation_id"],
        to=tuple(row["recipients"]),
    )
    return OutboxEmail(
        id=row["id"],
        message=message,
        state=row["state"],
        attempts=row["attempts"],
        next_attempt_at=_time_or_none(row["next_attempt_at"]),
        last_error=row["last_error"],
        created_at=_time_or_none(row["created_at"]),
        sent_at=_time_or_none(row["sent_at"]),
        lease_token=row["lease_token"],
    )
