"""The SQLite Store: every piece of state in one WAL-mode file that several processes may share.

Each write is one `BEGIN IMMEDIATE` transaction, so two processes never interleave a read-then-write;
the blocking sqlite3 calls run on one dedicated thread that owns the connection, off the event loop.
Nothing is cached in memory: another process may have changed any row since the last call.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import attrs

from tsrevel.adapters.sql_rows import add_timeline, get_delivery
from tsrevel.adapters.sql_schema import migrations
from tsrevel.adapters.sql_operations import CLAIMABLE, insert_delivery
from tsrevel.adapters.sql_store import Db, Op, SqlStore, check_new, drive, sqlite_sql
from tsrevel.adapters.store_common import StoreOutage, time_text
from tsrevel.domain.deliveries import PROCESSING, Delivery, NewDelivery
from tsrevel.domain.errors import ConfigError, DatabaseMissing, StoreUnavailable
from tsrevel.domain.store_rules import claim_note

T = TypeVar("T")

URL_PREFIX = "sqlite:///"
# PRAGMA synchronous: FULL syncs the WAL at every commit, so an acknowledged webhook survives power
# or OS loss; NORMAL (the opt-out, TSREVEL_SQLITE_SYNCHRONOUS=normal) may lose the last commits then.
SYNCHRONOUS_MODES = ("full", "normal")
# The result codes (low byte of sqlite_errorcode) that mean "the database cannot take this call now",
# as opposed to a bug in a statement: busy/locked, read-only, I/O error, corrupt, full, cannot open.
_UNAVAILABLE_CODES = {5: "busy", 6: "locked", 8: "read-only", 10: "disk I/O error", 11: "corrupt", 13: "full",
                      14: "cannot open", 15: "locking protocol", 26: "not a database"}

MIGRATIONS = migrations("sqlite")  # the one schema definition: adapters/sql_schema.py


def path_from_url(url: str) -> Path:
    """The file named by ``sqlite:///relative/path`` or ``sqlite:////absolute/path``."""
    if not url.startswith(URL_PREFIX) or len(url) == len(URL_PREFIX):
        raise ConfigError(
            f"database URL {url!r} is not a SQLite file URL; write sqlite:///relative/path or sqlite:////absolute/path"
        )
    return Path(url[len(URL_PREFIX):])



class SqliteStore(SqlStore):
    """Deliveries, the order ledger, flags, the email outbox and audit in one SQLite file.

    The operations are SqlStore's; this class runs them on its one connection's thread, each in a
    ``BEGIN IMMEDIATE`` transaction, and adds what only SQLite needs: WAL and the synchronous
    pragma, the writer thread, intake's group commit, and a claim that its write lock makes safe.
    """

    def __init__(
        self, path: str | Path, *, busy_timeout_ms: int = 5000, synchronous: str = "full", create: bool = True
    ) -> None:
        if synchronous not in SYNCHRONOUS_MODES:
            raise ConfigError(f"SQLite synchronous mode {synchronous!r} is not one of {', '.join(SYNCHRONOUS_MODES)}")
        self._path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._synchronous = synchronous
        self._create = create  # False: refuse to make a new, empty database file (the operator CLI)
        self._outage = StoreOutage(f"SQLite store {self._path}")
        # One thread owns the connection, so calls from the event loop are serialized in order.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tsrevel-sqlite")
        self._conn: sqlite3.Connection | None = None  # opened lazily, used only on the executor thread
        self._closed = False
        # Group commit: writes that arrive while one transaction is being committed share the next one.
        self._queued: list[_Queued] = []
        self._writer: asyncio.Task[None] | None = None
        self._writer_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteStore:
        """A store for a ``sqlite:///`` URL such as TSREVEL_DATABASE_URL."""
        return cls(path_from_url(url), **options)

    @property
    def path(self) -> Path:
        return self._path

    async def migrate(self) -> None:
        await self._call(_migrate)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Queued calls run first (one worker, FIFO), so nothing is cut off mid-transaction.
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_connection)
        self._executor.shutdown(wait=True)

    async def synchronous_mode(self) -> str:
        """The PRAGMA synchronous in force on the store's own connection: "full" or "normal"."""
        level = await self._call(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
        return {0: "off", 1: "normal", 2: "full", 3: "extra"}.get(level, str(level))

    async def add_delivery(self, new: NewDelivery) -> tuple[Delivery, bool]:
        check_new(new)
        return await self._write(insert_delivery, new)

    async def claim_delivery(
        self, *, now: datetime, lease_until: datetime, delivery_id: int | None = None
    ) -> Delivery | None:
        return await self._write(_claim_delivery, now, lease_until, delivery_id)

    # -- running on the connection's thread -------------------------------------------------------

    async def _write(self, op: Op[T], *args: Any) -> T:
        """Run the operation in the next group commit; answered only once that transaction has committed."""
        loop = asyncio.get_running_loop()
        if self._writer_loop is not None and self._writer_loop is not loop:
            # Another event loop (a second thread) is writing through this store: its own transaction.
            return await self._call(_in_write_transaction, _run_op, op, *args)
        future: asyncio.Future[T] = loop.create_future()
        self._queued.append(_Queued(op, args, future))
        if self._writer is None:
            self._writer_loop = loop
            self._writer = loop.create_task(self._write_queued(), name="tsrevel-sqlite-writer")
        return await future

    async def _write_queued(self) -> None:
        """Commit queued writes one transaction at a time, each taking all that queued meanwhile.

        Every write a caller awaits (a webhook, a claim, a finish, an email's outcome) is answered
        only after its transaction committed (durable first, answer second); under load many share
        one commit, and one sync, instead of paying one each. Each write runs in its own SAVEPOINT,
        so one that fails is rolled back alone and only its caller gets the error.
        """
        batch: list[_Queued] = []
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                try:
                    outcomes = await self._call(_in_write_transaction, _run_ops, [(q.op, q.args) for q in batch])
                except Exception as exc:  # the transaction failed: nothing of this batch is stored
                    outcomes = [exc] * len(batch)
                for queued, outcome in zip(batch, outcomes):
                    if queued.future.done():  # its caller was cancelled; the write stands all the same
                        continue
                    if isinstance(outcome, Exception):
                        queued.future.set_exception(self._classified(outcome))
                    else:
                        queued.future.set_result(outcome)
        except BaseException:  # cancelled (shutdown): no caller may wait for ever
            for queued in (*batch, *self._queued):
                queued.future.cancel()
            self._queued = []
            raise
        finally:
            self._writer = None
            self._writer_loop = None

    async def _read(self, op: Op[T], *args: Any) -> T:
        return await self._call(_in_read_transaction, _run_op, op, *args)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError(f"the SQLite store for {self._path} is closed")
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, self._on_connection, fn, args)
        except (sqlite3.Error, StoreUnavailable) as exc:
            raise self._classified(exc) from None
        self._outage.recovered()
        return result

    def _classified(self, exc: Exception) -> Exception:
        """StoreUnavailable (logged once per outage) for a database that cannot take the call; any other error as it is."""
        if isinstance(exc, StoreUnavailable):
            return self._outage.failed(exc)  # logged at the start of an outage only
        if isinstance(exc, sqlite3.Error):
            reason = unavailable_reason(exc)
            if reason is not None:
                unavailable = self._outage.failed(StoreUnavailable(reason))
                unavailable.__cause__ = exc
                return unavailable
        return exc  # a statement's own error (a bug, a constraint): not an outage

    def _on_connection(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._conn is None:
            self._conn = _connect(self._path, self._busy_timeout_ms, self._synchronous, create=self._create)
        return fn(self._conn, *args)

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@attrs.frozen
class _Queued:
    """A write waiting for the next group commit, and the future its caller awaits."""

    op: Op[Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]


class _SqliteDb:
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


def _run_op(conn: sqlite3.Connection, op: Op[T], *args: Any) -> T:
    return drive(op(_SqliteDb(conn), *args))  # type: ignore[arg-type]


def _run_ops(conn: sqlite3.Connection, ops: list[tuple[Op[Any], tuple[Any, ...]]]) -> list[Any]:
    """Several operations in the caller's transaction; one that fails is rolled back alone and returned as its error."""
    if len(ops) == 1:
        op, args = ops[0]
        return [_run_op(conn, op, *args)]  # alone: its error fails the transaction, as it would anyway
    outcomes: list[Any] = []
    for op, args in ops:
        conn.execute("SAVEPOINT op")
        try:
            outcomes.append(_run_op(conn, op, *args))
        except Exception as exc:
            conn.execute("ROLLBACK TO op")
            outcomes.append(exc)
        conn.execute("RELEASE op")
    return outcomes


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


# -- connection and transactions -----------------------------------------------------------------


def _enable_wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Switch to WAL, retrying while another connection holds the lock (bounded by the busy timeout).

    SQLite does not always call the busy handler for a journal-mode change: when several
    processes open a brand-new file at once (replicas, the CLI beside the service), one of them
    can get "database is locked" at once. Seen in CI with three stores migrating together.
    """
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def unavailable_reason(exc: sqlite3.Error) -> str | None:
    """Why the database cannot take the call (SQLite's own words), or None for a statement's own error."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _UNAVAILABLE_CODES:
        return str(exc) or _UNAVAILABLE_CODES[code & 0xFF]
    text = str(exc)
    if any(word in text for word in ("locked", "busy", "disk I/O", "readonly", "unable to open", "is full", "malformed")):
        return text
    return None


def _connect(path: Path, busy_timeout_ms: int, synchronous: str = "full", *, create: bool = True) -> sqlite3.Connection:
    # No directory is created: a missing one means a mistyped path or the wrong working directory.
    if not path.parent.is_dir():
        what = "is not a directory" if path.parent.exists() else "does not exist"
        raise StoreUnavailable(f"directory {path.parent.absolute()} {what} (tsrevel does not create it)")
    if path.is_dir():
        raise StoreUnavailable(f"{path.absolute()} is a directory, not a database file")
    if not create and not path.exists():
        raise DatabaseMissing(f"there is no database file at {path.absolute()}")
    # isolation_level=None: the module opens no transactions of its own; we issue BEGIN ourselves.
    conn = sqlite3.connect(path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        _enable_wal(conn, busy_timeout_ms)
        # FULL: a commit (an acknowledged webhook) is on disk before we answer. NORMAL loses none when
        # the process dies, but may lose the last commits on power or OS loss (docs/configuration.md).
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _in_write_transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
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


def _migrate(conn: sqlite3.Connection) -> None:
    while _in_write_transaction(conn, _apply_next_migration):
        pass


def _apply_next_migration(conn: sqlite3.Connection) -> bool:
    """Apply the first migration not yet recorded; False when the schema is current."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
    if current > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema version {current} is newer than this tsrevel knows ({len(MIGRATIONS)}); upgrade tsrevel"
        )
    if current == len(MIGRATIONS):
        return False
    for statement in MIGRATIONS[current]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO schema_version (version, applied_at) VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
        (current + 1,),
    )
    return True


