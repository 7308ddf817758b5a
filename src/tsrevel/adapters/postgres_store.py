"""The PostgreSQL Store: the SQLite store's semantics on a database that several replicas share.

Every write is one transaction on a pooled psycopg connection. Claims use ``FOR UPDATE SKIP LOCKED``
plus a transaction-level advisory lock per TripleSeat event, so two replicas never both lease
deliveries of one event; migrations run under an advisory lock, so replicas starting together
apply each one exactly once. Nothing is cached in memory: another replica may change any row.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from tsrevel.adapters.sql_rows import get_delivery, literals
from tsrevel.adapters.sql_schema import migrations, next_migration
from tsrevel.adapters.sql_operations import CLAIMABLE, insert_delivery
from tsrevel.adapters.sql_store import Db, Op, SqlStore
from tsrevel.adapters.store_common import StoreOutage
from tsrevel.domain.deliveries import PROCESSING, Delivery, NewDelivery
from tsrevel.domain.errors import ConfigError, DatabaseMissing, StoreUnavailable
from tsrevel.domain.store_rules import NOTE_CLAIMED, NOTE_TAKEN_OVER

T = TypeVar("T")
URL_PREFIXES = ("postgresql://", "postgres://")
(_PROCESSING,) = literals((PROCESSING,))

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Advisory lock keys (the two-int4 form, so they never meet a one-bigint lock another app may take).
_MIGRATION_LOCK = (0x74730001, 0)
_EVENT_LOCK_CLASS = 0x74730002  # second key: hashtext(event_id)

MIGRATIONS = migrations("postgresql")  # the one schema definition: adapters/sql_schema.py


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


class PostgresStore(SqlStore):
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
                row = await _PgDb(conn).one("SELECT to_regclass(%s) IS NOT NULL AS found", (table,))
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
            row = await _PgDb(conn).one("SHOW synchronous_commit")
        assert row is not None
        return str(row["synchronous_commit"])

    # -- deliveries -------------------------------------------------------------------------------

    async def _insert(self, new: NewDelivery) -> tuple[Delivery, bool]:
        if new.event_version is not None:  # a catch-up or sync: the version is its own statements
            return await super()._insert(new)
        # One statement in autocommit, so atomic without a transaction: intake answers only after it
        # commits. A concurrent insert of the same key waits for the first to commit, then inserts nothing.
        async with self._connection() as conn:
            return await insert_delivery(_PgDb(conn), new, in_one_statement=True)

    @staticmethod
    async def _claim(db: Db, now: datetime, lease_until: datetime, only: int | None) -> Delivery | None:
        return await _claim_delivery(db, now, lease_until, only)

    async def _write(self, op: Op[T], *args: Any) -> T:
        async with self._transaction() as conn:
            return await op(_PgDb(conn), *args)

    async def _read(self, op: Op[T], *args: Any) -> T:
        # Autocommit: each statement is its own snapshot (a delivery and its timeline are read in one).
        async with self._connection() as conn:
            return await op(_PgDb(conn), *args)

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
    db = _PgDb(conn)
    async with conn.transaction():
        await db.run("SELECT pg_advisory_xact_lock(%s::integer, %s::integer)", _MIGRATION_LOCK)
        # Look before creating: CREATE ... IF NOT EXISTS still needs the CREATE privilege, which a
        # role given a ready-made schema may not have once it is set up.
        if schema is not None and await db.one("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)) is None:
            await db.run(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        found = await db.one("SELECT to_regclass('schema_version') IS NOT NULL AS found")
        if not (found and found["found"]):
            await db.run("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        row = await db.one("SELECT COALESCE(MAX(version), 0) AS current FROM schema_version")
        current = row["current"] if row else 0
        statements = next_migration(MIGRATIONS, current)
        if statements is None:
            return False
        for statement in statements:
            await db.run(statement)
        await db.run("INSERT INTO schema_version (version) VALUES (%s)", (current + 1,))
        return True


# -- claiming ------------------------------------------------------------------------------------

# The oldest unlocked candidate past `after`, row-locked (so racing claimers each get a different
# one), and for an event a try at its advisory lock, in one round trip. A subquery with LIMIT is
# never flattened, so the lock is tried for the one row returned only.
_NEXT_CANDIDATE = f"""
    SELECT c.id, c.event_id,
           CASE WHEN c.event_id IS NULL THEN true
                ELSE pg_try_advisory_xact_lock(%(lock_class)s::integer, hashtext(c.event_id)) END AS locked
    FROM (SELECT d.id, d.event_id FROM deliveries AS d
          WHERE {CLAIMABLE}
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
        SELECT d.id, d.state FROM deliveries AS d WHERE d.id = %(id)s AND {CLAIMABLE} FOR UPDATE
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


async def _claim_delivery(db: Db, now: datetime, lease_until: datetime, only: int | None) -> Delivery | None:
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
        candidate = await db.one(_NEXT_CANDIDATE, {**params, "after": after, "busy": busy_events})
        if candidate is None:
            return None
        after = candidate["id"]
        if not candidate["locked"]:
            busy_events.append(candidate["event_id"])  # another worker is claiming this event right now
            continue
        taken = await db.one(_TAKE, {**params, "id": candidate["id"]})
        if taken is None:
            continue  # another delivery of its event was leased and committed before we got the lock
        return await get_delivery(db, candidate["id"])


class _PgDb:
    """The Db protocol over one psycopg connection."""

    __slots__ = ("_conn",)

    def __init__(self, conn: AsyncConnection[DictRow]) -> None:
        self._conn = conn

    async def one(self, query: Any, params: Any = ()) -> DictRow | None:
        cur = await self._conn.execute(query, params or None)
        return await cur.fetchone()

    async def all(self, query: Any, params: Any = ()) -> list[DictRow]:
        cur = await self._conn.execute(query, params or None)
        return await cur.fetchall()

    async def run(self, query: Any, params: Any = ()) -> int:
        cur = await self._conn.execute(query, params or None)
        return cur.rowcount

    async def many(self, query: Any, rows: Sequence[Any]) -> None:
        async with self._conn.cursor() as cur:
            await cur.executemany(query, rows)

