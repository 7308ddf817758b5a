"""SqlStore on one sqlite3 connection: what the SQLite file store and the in-memory store share.

Each write is one ``BEGIN IMMEDIATE`` transaction and each read a deferred one; an operation runs
whole as one synchronous call (``drive``), since SQLite's Db never waits. Where that call runs is
the subclass's: SqliteStore on its connection's thread, MemoryStore in the caller's, under a lock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tsrevel.adapters.sql_operations import CLAIMABLE
from tsrevel.adapters.sql_rows import add_timeline, get_delivery
from tsrevel.adapters.sql_schema import migrations, next_migration
from tsrevel.adapters.sql_store import Db, Op, SqlStore
from tsrevel.adapters.store_common import time_text
from tsrevel.domain.deliveries import PROCESSING, Delivery
from tsrevel.domain.store_rules import claim_note

if TYPE_CHECKING:
    import sqlite3

T = TypeVar("T")
MIGRATIONS = migrations("sqlite")  # the one schema definition: adapters/sql_schema.py


class SqliteEngine(SqlStore):
    """Every Store operation on one sqlite3 connection; ``_call`` runs a function of it where the subclass says."""

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        raise NotImplementedError

    @staticmethod
    async def _claim(db: Db, now: datetime, lease_until: datetime, only: int | None) -> Delivery | None:
        return await _claim_delivery(db, now, lease_until, only)

    async def migrate(self) -> None:
        await self._call(migrate_connection)

    async def _write(self, op: Op[T], *args: Any) -> T:
        return await self._call(in_write_transaction, run_op, op, *args)

    async def _read(self, op: Op[T], *args: Any) -> T:
        return await self._call(_in_read_transaction, run_op, op, *args)


class SqliteDb:
    """The Db protocol over sqlite3: never suspends, so drive() runs an operation in one go on the thread."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def one(self, query: str, params: Any = ()) -> sqlite3.Row | None:
        rows = self._conn.execute(sqlite_sql(query), _params(params)).fetchall()
        return rows[0] if rows else None

    async def all(self, query: str, params: Any = ()) -> list[sqlite3.Row]:
        return self._conn.execute(sqlite_sql(query), _params(params)).fetchall()

    async def run(self, query: str, params: Any = ()) -> int:
        return self._conn.execute(sqlite_sql(query), _params(params)).rowcount

    async def many(self, query: str, rows: Sequence[Any]) -> None:
        self._conn.executemany(sqlite_sql(query), [_params(row) for row in rows])


def _value(value: Any) -> Any:
    # Times are stored as fixed-width UTC text, so that comparing the text compares the instants.
    return time_text(value) if isinstance(value, datetime) else value


def _params(params: Any) -> Any:
    if isinstance(params, Mapping):
        return {name: _value(value) for name, value in params.items()}
    return tuple(_value(value) for value in params)


def run_op(conn: sqlite3.Connection, op: Op[T], *args: Any) -> T:
    return drive(op(SqliteDb(conn), *args))  # type: ignore[arg-type]


async def _claim_delivery(db: Db, now: datetime, lease_until: datetime, only: int | None) -> Delivery | None:
    """The oldest claimable delivery whose event nobody holds; BEGIN IMMEDIATE keeps every other writer out meanwhile."""
    row = await db.one(
        f"SELECT d.id, d.state FROM deliveries AS d WHERE {CLAIMABLE} AND (%(only)s IS NULL OR d.id = %(only)s)"
        " ORDER BY d.id LIMIT 1",
        {"now": now, "only": only},
    )
    if row is None:
        return None
    await db.run("UPDATE deliveries SET state = %s, lease_token = lease_token + 1, lease_until = %s, updated_at = %s"
                 " WHERE id = %s", (PROCESSING, lease_until, now, row["id"]))
    await add_timeline(db, row["id"], now, PROCESSING, claim_note(row["state"]))
    return await get_delivery(db, row["id"])


def drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run an operation over a Db that never suspends (SQLite's) to its end, synchronously."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a store operation suspended on SQLite's thread; its Db must never wait")


_NAMED = re.compile(r"%\((\w+)\)s")
_DROPPED = re.compile(r"::\w+(\[\])?|\s+FOR UPDATE(\s+OF\s+\w+)?(\s+SKIP LOCKED)?")


@lru_cache(maxsize=256)
def sqlite_sql(query: str) -> str:
    """The query in SQLite's words: ``:name``/``?`` placeholders, no casts, no row locks (its write lock covers them)."""
    return _NAMED.sub(r":\1", _DROPPED.sub("", query)).replace("%s", "?")


def connection(target: str | Path, timeout_s: float = 5.0) -> sqlite3.Connection:
    """A connection usable from any thread (its owner serializes the calls), rows by name, foreign keys enforced."""
    import sqlite3  # here, not at the top: importing tsrevel.testing (MemoryStore) pulls in no database module

    # isolation_level=None: the module opens no transactions of its own; we issue BEGIN ourselves.
    conn = sqlite3.connect(target, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def in_write_transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    # IMMEDIATE takes the write lock up front, so a read-then-write cannot race another process.
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _in_read_transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    # A deferred transaction gives multi-query reads (a delivery and its timeline) one snapshot.
    conn.execute("BEGIN")
    try:
        return fn(conn, *args)
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


def migrate_connection(conn: sqlite3.Connection) -> None:
    while in_write_transaction(conn, _apply_next_migration):
        pass


def _apply_next_migration(conn: sqlite3.Connection) -> bool:
    """Apply the first migration not yet recorded; False when the schema is current."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
    statements = next_migration(MIGRATIONS, current)
    if statements is None:
        return False
    for statement in statements:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO schema_version (version, applied_at) VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        (current + 1,),
    )
    return True


