"""The SQLite Store: every piece of state in one WAL-mode file that several processes may share.

Each write runs in a `BEGIN IMMEDIATE` transaction (writes that queue meanwhile share the next one:
group commit), so two processes never interleave a read-then-write; the blocking sqlite3 calls run
on one dedicated thread that owns the connection, off the event loop.
Nothing is cached in memory: another process may have changed any row since the last call.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import attrs

from tsrevel.adapters.sql_store import Op
from tsrevel.adapters.sqlite_engine import SqliteEngine, connection, in_write_transaction, run_op
from tsrevel.adapters.store_common import StoreOutage
from tsrevel.domain.errors import ConfigError, DatabaseMissing, StoreUnavailable

T = TypeVar("T")

URL_PREFIX = "sqlite:///"
# PRAGMA synchronous: FULL syncs the WAL at every commit, so an acknowledged webhook survives power
# or OS loss; NORMAL (the opt-out, TSREVEL_SQLITE_SYNCHRONOUS=normal) may lose the last commits then.
SYNCHRONOUS_MODES = ("full", "normal")
# The result codes (low byte of sqlite_errorcode) that mean "the database cannot take this call now",
# as opposed to a bug in a statement: busy/locked, read-only, I/O error, corrupt, full, cannot open.
_UNAVAILABLE_CODES = {5: "busy", 6: "locked", 8: "read-only", 10: "disk I/O error", 11: "corrupt", 13: "full",
                      14: "cannot open", 15: "locking protocol", 26: "not a database"}


def path_from_url(url: str) -> Path:
    """The file named by ``sqlite:///relative/path`` or ``sqlite:////absolute/path``."""
    if not url.startswith(URL_PREFIX) or len(url) == len(URL_PREFIX):
        raise ConfigError(
            f"database URL {url!r} is not a SQLite file URL; write sqlite:///relative/path or sqlite:////absolute/path"
        )
    return Path(url[len(URL_PREFIX):])


class SqliteStore(SqliteEngine):
    """Deliveries, the order ledger, flags, the email outbox and audit in one SQLite file.

    SqliteEngine's operations run on the one connection's thread; this class adds what a shared
    file needs: WAL and the synchronous pragma, the writer thread, and the group commit of writes.
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

    async def _write(self, op: Op[T], *args: Any) -> T:
        """Run the operation in the next group commit; answered only once that transaction has committed."""
        loop = asyncio.get_running_loop()
        if self._writer_loop is not None and self._writer_loop is not loop:
            # Another event loop (a second thread) is writing through this store: its own transaction.
            return await self._call(in_write_transaction, run_op, op, *args)
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
                    outcomes = await self._call(in_write_transaction, _run_ops, [(q.op, q.args) for q in batch])
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

    # -- running on the connection's thread -------------------------------------------------------

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


def _run_ops(conn: sqlite3.Connection, ops: list[tuple[Op[Any], tuple[Any, ...]]]) -> list[Any]:
    """Several operations in the caller's transaction; one that fails is rolled back alone and returned as its error."""
    if len(ops) == 1:
        op, args = ops[0]
        return [run_op(conn, op, *args)]  # alone: its error fails the transaction, as it would anyway
    outcomes: list[Any] = []
    for op, args in ops:
        conn.execute("SAVEPOINT op")
        try:
            outcomes.append(run_op(conn, op, *args))
        except Exception as exc:
            conn.execute("ROLLBACK TO op")
            outcomes.append(exc)
        conn.execute("RELEASE op")
    return outcomes


# -- the file's connection ----------------------------------------------------------------------


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
    conn = connection(path, busy_timeout_ms / 1000)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        _enable_wal(conn, busy_timeout_ms)
        # FULL: a commit (an acknowledged webhook) is on disk before we answer. NORMAL loses none when
        # the process dies, but may lose the last commits on power or OS loss (docs/configuration.md).
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    except BaseException:
        conn.close()
        raise
    return conn


