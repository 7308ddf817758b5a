"""The SQLite Store: every piece of state in one WAL-mode file that several processes may share.

Each write is one `BEGIN IMMEDIATE` transaction, so two processes never interleave a read-then-write;
the blocking sqlite3 calls run on one dedicated thread that owns the connection, off the event loop.
Nothing is cached in memory: another process may have changed any row since the last call.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from tsrevel.adapters.store_common import (
    NOTE_CLAIMED,
    StoreOutage,
    NOTE_TAKEN_OVER,
    check_email_state,
    check_finish_state,
    check_new_state,
    check_replayable,
    intake_note,
    missing_delivery,
    parse_time,
    time_text,
    time_text_or_none,
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
    EMAIL_PENDING,
    EMAIL_RETRYING,
    EMAIL_SENDING,
    EMAIL_SENT,
    EXISTING,
    RESERVED,
    AuditEntry,
    EmailMessage,
    FlagOverrides,
    OutboxEmail,
    Reservation,
)

T = TypeVar("T")

URL_PREFIX = "sqlite:///"
# PRAGMA synchronous: FULL syncs the WAL at every commit, so an acknowledged webhook survives power
# or OS loss; NORMAL (the opt-out, TSREVEL_SQLITE_SYNCHRONOUS=normal) may lose the last commits then.
SYNCHRONOUS_MODES = ("full", "normal")
# The result codes (low byte of sqlite_errorcode) that mean "the database cannot take this call now",
# as opposed to a bug in a statement: busy/locked, read-only, I/O error, corrupt, full, cannot open.
_UNAVAILABLE_CODES = {5: "busy", 6: "locked", 8: "read-only", 10: "disk I/O error", 11: "corrupt", 13: "full",
                      14: "cannot open", 15: "locking protocol", 26: "not a database"}

# Each migration is applied in its own transaction; statements are listed one by one because
# sqlite3's executescript() would commit the open transaction first.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            key TEXT NOT NULL UNIQUE,
            body BLOB NOT NULL,
            correlation_id TEXT NOT NULL,
            received_at TEXT NOT NULL,
            trigger_type TEXT,
            event_id TEXT,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            last_error TEXT,
            order_reference TEXT,
            result TEXT,
            lease_token INTEGER NOT NULL DEFAULT 0,
            lease_until TEXT,
            updated_at TEXT NOT NULL,
            header_names TEXT NOT NULL DEFAULT '[]'
        )""",
        "CREATE INDEX deliveries_by_state ON deliveries (state, id)",
        "CREATE INDEX deliveries_by_event ON deliveries (event_id, state)",
        """CREATE TABLE timeline (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
            at TEXT NOT NULL,
            state TEXT NOT NULL,
            note TEXT NOT NULL
        )""",
        "CREATE INDEX timeline_by_delivery ON timeline (delivery_id, id)",
        """CREATE TABLE orders (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            event_id TEXT NOT NULL UNIQUE,
            reference TEXT NOT NULL,
            establishment_id INTEGER NOT NULL,
            delivery_id INTEGER NOT NULL REFERENCES deliveries (id),
            state TEXT NOT NULL CHECK (state IN ('pending', 'created')),
            revel_order_id INTEGER,
            revel_uri TEXT,
            snapshot TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE flags (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            enable_connector INTEGER CHECK (enable_connector IN (0, 1)),
            dry_run INTEGER CHECK (dry_run IN (0, 1)),
            actor TEXT,
            reason TEXT,
            updated_at TEXT
        )""",
        """CREATE TABLE emails (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            delivery_id INTEGER REFERENCES deliveries (id),
            correlation_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            text TEXT NOT NULL,
            recipients TEXT NOT NULL,
            state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            lease_token INTEGER NOT NULL DEFAULT 0,
            lease_until TEXT
        )""",
        "CREATE INDEX emails_by_state ON emails (state, id)",
        "CREATE INDEX emails_by_delivery ON emails (delivery_id, id)",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT NOT NULL,
            reason TEXT NOT NULL
        )""",
        "CREATE TABLE heartbeat (id INTEGER PRIMARY KEY CHECK (id = 1), at TEXT NOT NULL)",
    ),
    (
        # Small named values that must survive restarts (e.g. a rotated OAuth refresh token).
        "CREATE TABLE kv (name TEXT PRIMARY KEY, value TEXT NOT NULL, updated_at TEXT NOT NULL)",
        "CREATE INDEX deliveries_by_updated ON deliveries (updated_at)",
    ),
    (
        # Catch-up sync: how each delivery came, the event versions seen, and named leases (one poll at a time).
        "ALTER TABLE deliveries ADD COLUMN source TEXT NOT NULL DEFAULT 'webhook'",
        """CREATE TABLE event_versions (
            version TEXT PRIMARY KEY,
            source TEXT NOT NULL,
            delivery_id INTEGER,
            seen_at TEXT NOT NULL
        )""",
        "CREATE TABLE leases (name TEXT PRIMARY KEY, token INTEGER NOT NULL, holder TEXT NOT NULL, until TEXT NOT NULL)",
    ),
)


def path_from_url(url: str) -> Path:
    """The file named by ``sqlite:///relative/path`` or ``sqlite:////absolute/path``."""
    if not url.startswith(URL_PREFIX) or len(url) == len(URL_PREFIX):
        raise ConfigError(
            f"database URL {url!r} is not a SQLite file URL; write sqlite:///relative/path or sqlite:////absolute/path"
        )
    return Path(url[len(URL_PREFIX):])


class SqliteStore:
    """Deliveries, the order ledger, flags, the email outbox and audit in one SQLite file."""

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
        # Group commit: webhooks that arrive while one insert is being written share the next transaction.
        self._intake: list[tuple[NewDelivery, asyncio.Future[tuple[Delivery, bool]]]] = []
        self._intake_writer: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteStore:
        """A store for a ``sqlite:///`` URL such as TSREVEL_DATABASE_URL."""
        return cls(path_from_url(url), **options)

    @property
    def path(self) -> Path:
        return self._path

    # -- lifecycle --------------------------------------------------------------------------------

    async def migrate(self) -> None:
        await self._call(_migrate)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Queued calls run first (one worker, FIFO), so nothing is cut off mid-transaction.
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_connection)
        self._executor.shutdown(wait=True)

    async def check_writable(self) -> None:
        """Write the heartbeat row; raises StoreUnavailable when the database cannot take a write."""
        await self._write(_beat)

    async def synchronous_mode(self) -> str:
        """The PRAGMA synchronous in force on the store's own connection: "full" or "normal"."""
        level = await self._call(lambda conn: conn.execute("PRAGMA synchronous").fetchone()[0])
        return {0: "off", 1: "normal", 2: "full", 3: "extra"}.get(level, str(level))

    # -- deliveries -------------------------------------------------------------------------------

    async def add_delivery(self, new: NewDelivery) -> tuple[Delivery, bool]:
        check_new_state(new.state)
        future: asyncio.Future[tuple[Delivery, bool]] = asyncio.get_running_loop().create_future()
        self._intake.append((new, future))
        if self._intake_writer is None:
            self._intake_writer = asyncio.create_task(self._write_intake(), name="tsrevel-sqlite-intake")
        return await future

    async def _write_intake(self) -> None:
        """Insert queued deliveries one transaction at a time, each taking all that queued meanwhile.

        A caller's future resolves only once its transaction has committed (durable first, answer
        second); under load many webhooks share one commit instead of paying one each.
        """
        batch: list[tuple[NewDelivery, asyncio.Future[tuple[Delivery, bool]]]] = []
        try:
            while self._intake:
                batch, self._intake = self._intake, []
                try:
                    outcomes = await self._write(_add_deliveries, [new for new, _ in batch])
                except Exception as exc:  # the transaction failed: nothing of this batch is stored
                    outcomes = [exc] * len(batch)
                for (_, future), outcome in zip(batch, outcomes):
                    if future.done():  # its caller was cancelled; the delivery is stored all the same
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        except BaseException:  # cancelled (shutdown): no caller may wait for ever
            for _, future in (*batch, *self._intake):
                future.cancel()
            self._intake = []
            raise
        finally:
            self._intake_writer = None

    async def get_delivery(self, delivery_id: int) -> Delivery:
        return await self._read(_get_delivery, delivery_id)

    async def list_deliveries(
        self, *, state: str | None = None, limit: int = 50, event_id: str | None = None, before_id: int | None = None
    ) -> list[Delivery]:
        return await self._read(_list_deliveries, state, limit, event_id, before_id)

    async def count_by_state(self) -> dict[str, int]:
        return await self._read(_count_by_state)

    async def oldest_pending(self) -> datetime | None:
        return await self._read(_oldest_pending)

    # -- the worker's lease -----------------------------------------------------------------------

    async def claim_delivery(
        self, *, now: datetime, lease_until: datetime, delivery_id: int | None = None
    ) -> Delivery | None:
        return await self._write(_claim_delivery, time_text(now), time_text(lease_until), delivery_id)

    async def add_note(self, delivery_id: int, *, token: int, now: datetime, note: str) -> bool:
        return await self._write(_add_note, delivery_id, token, time_text(now), note)

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
        changes = {
            "state": state,
            "error": error,
            "attempts": attempts,
            "next_attempt_at": time_text_or_none(next_attempt_at),
            "result": result,
            "order_reference": order_reference,
        }
        return await self._write(
            _finish, delivery_id, token, time_text(now), note, changes, tuple(emails), release_event_id
        )

    # -- the order ledger -------------------------------------------------------------------------

    async def reserve_order(
        self, *, event_id: str, reference: str, establishment_id: int, delivery_id: int, token: int, now: datetime
    ) -> Reservation:
        return await self._write(
            _reserve_order, event_id, reference, establishment_id, delivery_id, token, time_text(now)
        )

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
        return await self._write(
            _complete_order, event_id, delivery_id, token, ref, snapshot, time_text(now), note, tuple(emails)
        )

    async def get_order(self, event_id: str) -> LedgerEntry | None:
        return await self._read(_get_order, event_id)

    async def list_orders(self, *, limit: int = 100) -> list[LedgerEntry]:
        return await self._read(_list_orders, limit)

    async def forget_order(self, event_id: str) -> bool:
        return await self._write(_forget_order, event_id)

    # -- replay -----------------------------------------------------------------------------------

    async def replay_delivery(self, delivery_id: int, *, now: datetime, note: str) -> bool:
        return await self._write(_replay_delivery, delivery_id, time_text(now), note)

    async def replay_state(self, state: str, *, now: datetime, note: str) -> int:
        check_replayable(state)
        return await self._write(_replay_state, state, time_text(now), note)

    async def discard_delivery(self, delivery_id: int, *, now: datetime, note: str) -> bool:
        return await self._write(_discard_delivery, delivery_id, time_text(now), note)

    # -- flags ------------------------------------------------------------------------------------

    async def get_flags(self) -> FlagOverrides:
        return await self._read(_get_flags)

    async def set_flags(
        self, *, enable_connector: bool | None, dry_run: bool | None, actor: str, reason: str, now: datetime
    ) -> FlagOverrides:
        return await self._write(_set_flags, enable_connector, dry_run, actor, reason, time_text(now))

    async def clear_flags(self, *, actor: str, reason: str, now: datetime) -> None:
        await self._write(_clear_flags, actor, reason, time_text(now))

    # -- the email outbox -------------------------------------------------------------------------

    async def claim_email(self, *, now: datetime, lease_until: datetime) -> OutboxEmail | None:
        return await self._write(_claim_email, time_text(now), time_text(lease_until))

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
        return await self._write(
            _finish_email, email_id, token, state, time_text(now), error, attempts, time_text_or_none(next_attempt_at)
        )

    async def list_emails(self, *, delivery_id: int | None = None, limit: int = 100) -> list[OutboxEmail]:
        return await self._read(_list_emails, delivery_id, limit)

    # -- audit ------------------------------------------------------------------------------------

    async def add_audit(self, *, actor: str, action: str, detail: str, reason: str, now: datetime) -> None:
        await self._write(_add_audit, actor, action, detail, reason, time_text(now))

    async def list_audit(self, *, limit: int = 100) -> list[AuditEntry]:
        return await self._read(_list_audit, limit)

    async def get_value(self, name: str) -> str | None:
        return await self._read(_get_value, name)

    async def put_value(self, name: str, value: str, *, now: datetime) -> None:
        await self._write(_put_value, name, value, time_text(now))

    async def prune_history(self, *, older_than: datetime) -> int:
        await self._write(_prune_versions, time_text(older_than))  # event versions first seen before older_than
        return await self._write(_prune_history, time_text(older_than))

    # -- event versions and named leases (catch-up sync) -------------------------------------------

    async def version_seen(self, event_version: str) -> bool:
        return await self._read(_version_seen, event_version)

    async def take_lease(self, name: str, *, holder: str, now: datetime, until: datetime) -> int | None:
        return await self._write(_take_lease, name, holder, time_text(now), time_text(until))

    async def keep_lease(self, name: str, *, token: int, now: datetime, until: datetime) -> bool:
        return await self._write(_keep_lease, name, token, time_text(now), time_text(until))

    async def end_lease(self, name: str, *, token: int, now: datetime, value_name: str, value: str) -> bool:
        return await self._write(_end_lease, name, token, time_text(now), value_name, value)

    # -- running on the connection's thread -------------------------------------------------------

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._call(_in_write_transaction, fn, *args)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._call(_in_read_transaction, fn, *args)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError(f"the SQLite store for {self._path} is closed")
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._executor, self._on_connection, fn, args)
        except sqlite3.Error as exc:
            reason = unavailable_reason(exc)
            if reason is None:
                raise  # a statement's own error (a bug, a constraint): not an outage
            raise self._outage.failed(StoreUnavailable(reason)) from exc
        except StoreUnavailable as exc:
            raise self._outage.failed(exc) from None
        self._outage.recovered()
        return result

    def _on_connection(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self._conn is None:
            self._conn = _connect(self._path, self._busy_timeout_ms, self._synchronous, create=self._create)
        return fn(self._conn, *args)

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


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


def _beat(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO heartbeat (id, at) VALUES (1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"
        " ON CONFLICT (id) DO UPDATE SET at = excluded.at"
    )


# -- deliveries ----------------------------------------------------------------------------------


def _add_delivery(conn: sqlite3.Connection, new: NewDelivery) -> tuple[Delivery, bool]:
    if new.source != SOURCE_WEBHOOK or new.event_version is not None:
        return _add_sourced_delivery(conn, new)
    received_at = time_text(new.received_at)
    cursor = conn.execute(
        """INSERT INTO deliveries (key, body, correlation_id, received_at, trigger_type, event_id, state,
                                   last_error, updated_at, header_names)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (key) DO NOTHING""",
        (
            new.key,
            new.body,
            new.correlation_id,
            received_at,
            new.trigger_type,
            new.event_id,
            new.state,
            new.error,
            received_at,
            json.dumps(list(new.header_names)),
        ),
    )
    created = cursor.rowcount == 1
    if created:
        _add_timeline(conn, cursor.lastrowid, received_at, new.state, intake_note(new))
        return _get_delivery(conn, cursor.lastrowid), True
    row = conn.execute("SELECT id FROM deliveries WHERE key = ?", (new.key,)).fetchone()
    return _get_delivery(conn, row["id"]), False


def _add_deliveries(conn: sqlite3.Connection, news: list[NewDelivery]) -> list[tuple[Delivery, bool] | Exception]:
    """Several inserts in the caller's transaction; one that fails is rolled back alone and returned as its error."""
    outcomes: list[tuple[Delivery, bool] | Exception] = []
    for new in news:
        conn.execute("SAVEPOINT add_delivery")
        try:
            outcomes.append(_add_delivery(conn, new))
        except Exception as exc:
            conn.execute("ROLLBACK TO add_delivery")
            outcomes.append(exc)
        conn.execute("RELEASE add_delivery")
    return outcomes


def _get_delivery(conn: sqlite3.Connection, delivery_id: int) -> Delivery:
    row = conn.execute("SELECT * FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    if row is None:
        raise missing_delivery(delivery_id)
    entries = conn.execute(
        "SELECT at, state, note FROM timeline WHERE delivery_id = ? ORDER BY id", (delivery_id,)
    ).fetchall()
    timeline = tuple(TimelineEntry(at=parse_time(e["at"]), state=e["state"], note=e["note"]) for e in entries)
    return _delivery(row, timeline)


def _list_deliveries(
    conn: sqlite3.Connection, state: str | None, limit: int, event_id: str | None, before_id: int | None
) -> list[Delivery]:
    rows = conn.execute(
        "SELECT * FROM deliveries WHERE (:state IS NULL OR state = :state) AND (:event IS NULL OR event_id = :event)"
        " AND (:before IS NULL OR id < :before) ORDER BY id DESC LIMIT :limit",
        {"state": state, "event": event_id, "before": before_id, "limit": max(limit, 0)},
    ).fetchall()
    return [_delivery(row, ()) for row in rows]


def _count_by_state(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT state, COUNT(*) AS n FROM deliveries GROUP BY state").fetchall()
    return {row["state"]: row["n"] for row in rows}


def _oldest_pending(conn: sqlite3.Connection) -> datetime | None:
    marks = ", ".join("?" for _ in PENDING_STATES)
    row = conn.execute(
        f"SELECT MIN(received_at) FROM deliveries WHERE state IN ({marks})", tuple(sorted(PENDING_STATES))
    ).fetchone()
    return parse_time(row[0])


# -- the worker's lease --------------------------------------------------------------------------

# A missing next_attempt_at or lease_until counts as "due": a row must never be stuck for good.
_CLAIMABLE_DELIVERY = """
    SELECT id, state FROM deliveries AS d
    WHERE d.state IN (:queued, :retrying, :processing)
      AND (d.state = :queued
           OR (d.state = :retrying AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= :now))
           OR (d.state = :processing AND (d.lease_until IS NULL OR d.lease_until < :now)))
      AND NOT EXISTS (
           SELECT 1 FROM deliveries AS other
           WHERE other.event_id = d.event_id AND other.id <> d.id
             AND other.state = :processing AND other.lease_until >= :now)
      AND (:only IS NULL OR d.id = :only)
    ORDER BY d.id
    LIMIT 1
"""


def _claim_delivery(conn: sqlite3.Connection, now: str, lease_until: str, only: int | None) -> Delivery | None:
    row = conn.execute(
        _CLAIMABLE_DELIVERY,
        {"queued": QUEUED, "retrying": RETRYING, "processing": PROCESSING, "now": now, "only": only},
    ).fetchone()
    if row is None:
        return None
    conn.execute(
        "UPDATE deliveries SET state = ?, lease_token = lease_token + 1, lease_until = ?, updated_at = ? WHERE id = ?",
        (PROCESSING, lease_until, now, row["id"]),
    )
    note = NOTE_TAKEN_OVER if row["state"] == PROCESSING else NOTE_CLAIMED
    _add_timeline(conn, row["id"], now, PROCESSING, note)
    return _get_delivery(conn, row["id"])


def _holds_lease(conn: sqlite3.Connection, delivery_id: int, token: int) -> bool:
    """The fence for commits: the token is current and nobody moved the delivery on."""
    row = conn.execute(
        "SELECT 1 FROM deliveries WHERE id = ? AND lease_token = ? AND state = ?", (delivery_id, token, PROCESSING)
    ).fetchone()
    return row is not None


def _add_note(conn: sqlite3.Connection, delivery_id: int, token: int, now: str, note: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM deliveries WHERE id = ? AND lease_token = ? AND state = ? AND lease_until >= ?",
        (delivery_id, token, PROCESSING, now),
    ).fetchone()
    if row is None:
        return False
    _add_timeline(conn, delivery_id, now, PROCESSING, note)
    return True


def _finish(
    conn: sqlite3.Connection,
    delivery_id: int,
    token: int,
    now: str,
    note: str,
    changes: dict[str, Any],
    emails: tuple[EmailMessage, ...],
    release_event_id: str | None,
) -> bool:
    cursor = conn.execute(
        """UPDATE deliveries
           SET state = :state,
               last_error = COALESCE(:error, last_error),
               attempts = COALESCE(:attempts, attempts),
               next_attempt_at = :next_attempt_at,
               result = COALESCE(:result, result),
               order_reference = COALESCE(:order_reference, order_reference),
               updated_at = :now,
               lease_until = NULL
           WHERE id = :id AND lease_token = :token AND state = :processing""",
        {**changes, "now": now, "id": delivery_id, "token": token, "processing": PROCESSING},
    )
    if cursor.rowcount != 1:
        return False
    _add_timeline(conn, delivery_id, now, changes["state"], note)
    _add_emails(conn, emails, now)
    if release_event_id is not None:
        conn.execute(
            "DELETE FROM orders WHERE event_id = ? AND state = ? AND delivery_id = ?",
            (release_event_id, LEDGER_PENDING, delivery_id),
        )
    return True


# -- the order ledger ----------------------------------------------------------------------------


def _reserve_order(
    conn: sqlite3.Connection,
    event_id: str,
    reference: str,
    establishment_id: int,
    delivery_id: int,
    token: int,
    now: str,
) -> Reservation:
    if not _holds_lease(conn, delivery_id, token):
        return Reservation(outcome=BUSY)
    cursor = conn.execute(
        """INSERT INTO orders (event_id, reference, establishment_id, delivery_id, state, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (event_id) DO NOTHING""",
        (event_id, reference, establishment_id, delivery_id, LEDGER_PENDING, now, now),
    )
    entry = _get_order(conn, event_id)
    assert entry is not None  # inserted just now, or there already
    if cursor.rowcount == 1 or (entry.state == LEDGER_PENDING and entry.delivery_id == delivery_id):
        return Reservation(outcome=RESERVED, entry=entry)
    if entry.state == LEDGER_CREATED:
        return Reservation(outcome=EXISTING, entry=entry)
    owner_leased = conn.execute(
        "SELECT 1 FROM deliveries WHERE id = ? AND state = ? AND lease_until >= ?",
        (entry.delivery_id, PROCESSING, now),
    ).fetchone()
    if owner_leased is not None:
        return Reservation(outcome=BUSY, entry=entry)
    # The owner finished, died or is waiting to retry: its slot passes to this delivery.
    # reference and establishment stay, so the caller looks where a lost create may have gone.
    conn.execute("UPDATE orders SET delivery_id = ?, updated_at = ? WHERE event_id = ?", (delivery_id, now, event_id))
    return Reservation(outcome=RESERVED, entry=_get_order(conn, event_id))


def _complete_order(
    conn: sqlite3.Connection,
    event_id: str,
    delivery_id: int,
    token: int,
    ref: OrderRef,
    snapshot: str,
    now: str,
    note: str,
    emails: tuple[EmailMessage, ...],
) -> bool:
    if not _holds_lease(conn, delivery_id, token):
        return False
    entry = _get_order(conn, event_id)
    if entry is None or entry.delivery_id != delivery_id:
        return False
    conn.execute(
        """UPDATE orders SET state = ?, revel_order_id = ?, revel_uri = ?, snapshot = ?, updated_at = ?
           WHERE event_id = ?""",
        (LEDGER_CREATED, ref.order_id, ref.resource_uri, snapshot, now, event_id),
    )
    conn.execute(
        "UPDATE deliveries SET state = ?, order_reference = ?, lease_until = NULL, updated_at = ? WHERE id = ?",
        (DONE, entry.reference, now, delivery_id),
    )
    _add_timeline(conn, delivery_id, now, DONE, note)
    _add_emails(conn, emails, now)
    return True


def _get_order(conn: sqlite3.Connection, event_id: str) -> LedgerEntry | None:
    row = conn.execute("SELECT * FROM orders WHERE event_id = ?", (event_id,)).fetchone()
    return None if row is None else _ledger_entry(row)


def _list_orders(conn: sqlite3.Connection, limit: int) -> list[LedgerEntry]:
    rows = conn.execute("SELECT * FROM orders ORDER BY id DESC LIMIT ?", (max(limit, 0),)).fetchall()
    return [_ledger_entry(row) for row in rows]


def _forget_order(conn: sqlite3.Connection, event_id: str) -> bool:
    return conn.execute("DELETE FROM orders WHERE event_id = ?", (event_id,)).rowcount == 1


# -- replay --------------------------------------------------------------------------------------


def _replay_delivery(conn: sqlite3.Connection, delivery_id: int, now: str, note: str) -> bool:
    row = conn.execute("SELECT state FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    if row is None:
        raise missing_delivery(delivery_id)
    if row["state"] not in REPLAYABLE_STATES:
        return False
    _requeue(conn, [delivery_id], now, note)
    return True


def _replay_state(conn: sqlite3.Connection, state: str, now: str, note: str) -> int:
    ids = [row["id"] for row in conn.execute("SELECT id FROM deliveries WHERE state = ? ORDER BY id", (state,))]
    _requeue(conn, ids, now, note)
    return len(ids)


def _discard_delivery(conn: sqlite3.Connection, delivery_id: int, now: str, note: str) -> bool:
    row = conn.execute("SELECT state FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
    if row is None:
        raise missing_delivery(delivery_id)
    if row["state"] not in DISCARDABLE_STATES:
        return False
    conn.execute(
        "UPDATE deliveries SET state = ?, next_attempt_at = NULL, lease_until = NULL, updated_at = ? WHERE id = ?",
        (IGNORED, now, delivery_id),
    )
    _add_timeline(conn, delivery_id, now, IGNORED, note)
    return True


def _requeue(conn: sqlite3.Connection, ids: list[int], now: str, note: str) -> None:
    conn.executemany(
        """UPDATE deliveries SET state = ?, attempts = 0, next_attempt_at = NULL, lease_until = NULL, updated_at = ?
           WHERE id = ?""",
        [(QUEUED, now, delivery_id) for delivery_id in ids],
    )
    conn.executemany(
        "INSERT INTO timeline (delivery_id, at, state, note) VALUES (?, ?, ?, ?)",
        [(delivery_id, now, QUEUED, note) for delivery_id in ids],
    )


# -- flags ---------------------------------------------------------------------------------------


def _get_flags(conn: sqlite3.Connection) -> FlagOverrides:
    row = conn.execute("SELECT * FROM flags WHERE id = 1").fetchone()
    if row is None:
        return FlagOverrides()
    return FlagOverrides(
        enable_connector=_bool_or_none(row["enable_connector"]),
        dry_run=_bool_or_none(row["dry_run"]),
        actor=row["actor"],
        reason=row["reason"],
        updated_at=parse_time(row["updated_at"]),
    )


def _set_flags(
    conn: sqlite3.Connection, enable_connector: bool | None, dry_run: bool | None, actor: str, reason: str, now: str
) -> FlagOverrides:
    conn.execute(
        """INSERT INTO flags (id, enable_connector, dry_run, actor, reason, updated_at) VALUES (1, ?, ?, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET
               enable_connector = COALESCE(excluded.enable_connector, flags.enable_connector),
               dry_run = COALESCE(excluded.dry_run, flags.dry_run),
               actor = excluded.actor, reason = excluded.reason, updated_at = excluded.updated_at""",
        (_int_or_none(enable_connector), _int_or_none(dry_run), actor, reason, now),
    )
    return _get_flags(conn)


def _clear_flags(conn: sqlite3.Connection, actor: str, reason: str, now: str) -> None:
    conn.execute(
        """INSERT INTO flags (id, enable_connector, dry_run, actor, reason, updated_at) VALUES (1, NULL, NULL, ?, ?, ?)
           ON CONFLICT (id) DO UPDATE SET
               enable_connector = NULL, dry_run = NULL,
               actor = excluded.actor, reason = excluded.reason, updated_at = excluded.updated_at""",
        (actor, reason, now),
    )


# -- the email outbox ----------------------------------------------------------------------------

_CLAIMABLE_EMAIL = """
    SELECT id FROM emails
    WHERE state IN (:pending, :retrying, :sending)
      AND (state = :pending
           OR (state = :retrying AND (next_attempt_at IS NULL OR next_attempt_at <= :now))
           OR (state = :sending AND (lease_until IS NULL OR lease_until < :now)))
    ORDER BY id
    LIMIT 1
"""


def _claim_email(conn: sqlite3.Connection, now: str, lease_until: str) -> OutboxEmail | None:
    row = conn.execute(
        _CLAIMABLE_EMAIL, {"pending": EMAIL_PENDING, "retrying": EMAIL_RETRYING, "sending": EMAIL_SENDING, "now": now}
    ).fetchone()
    if row is None:
        return None
    conn.execute(
        "UPDATE emails SET state = ?, lease_token = lease_token + 1, lease_until = ? WHERE id = ?",
        (EMAIL_SENDING, lease_until, row["id"]),
    )
    return _outbox_email(conn.execute("SELECT * FROM emails WHERE id = ?", (row["id"],)).fetchone())


def _finish_email(
    conn: sqlite3.Connection,
    email_id: int,
    token: int,
    state: str,
    now: str,
    error: str | None,
    attempts: int | None,
    next_attempt_at: str | None,
) -> bool:
    cursor = conn.execute(
        """UPDATE emails
           SET state = :state,
               last_error = COALESCE(:error, last_error),
               attempts = COALESCE(:attempts, attempts),
               next_attempt_at = :next_attempt_at,
               sent_at = CASE WHEN :state = :sent THEN :now ELSE sent_at END,
               lease_until = NULL
           WHERE id = :id AND lease_token = :token AND state = :sending""",
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
    return cursor.rowcount == 1


def _list_emails(conn: sqlite3.Connection, delivery_id: int | None, limit: int) -> list[OutboxEmail]:
    rows = conn.execute(
        "SELECT * FROM emails WHERE (:delivery_id IS NULL OR delivery_id = :delivery_id) ORDER BY id LIMIT :limit",
        {"delivery_id": delivery_id, "limit": max(limit, 0)},
    ).fetchall()
    return [_outbox_email(row) for row in rows]


def _add_emails(conn: sqlite3.Connection, emails: Iterable[EmailMessage], now: str) -> None:
    conn.executemany(
        """INSERT INTO emails (delivery_id, correlation_id, kind, subject, text, recipients, state, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            (m.delivery_id, m.correlation_id, m.kind, m.subject, m.text, json.dumps(list(m.to)), EMAIL_PENDING, now)
            for m in emails
        ],
    )


# -- audit ---------------------------------------------------------------------------------------


def _add_audit(conn: sqlite3.Connection, actor: str, action: str, detail: str, reason: str, now: str) -> None:
    conn.execute(
        "INSERT INTO audit (at, actor, action, detail, reason) VALUES (?, ?, ?, ?, ?)",
        (now, actor, action, detail, reason),
    )


def _list_audit(conn: sqlite3.Connection, limit: int) -> list[AuditEntry]:
    rows = conn.execute("SELECT * FROM audit ORDER BY id DESC LIMIT ?", (max(limit, 0),)).fetchall()
    return [
        AuditEntry(
            id=row["id"],
            at=parse_time(row["at"]),
            actor=row["actor"],
            action=row["action"],
            detail=row["detail"],
            reason=row["reason"],
        )
        for row in rows
    ]


# -- rows to records -----------------------------------------------------------------------------


def _add_timeline(conn: sqlite3.Connection, delivery_id: int, at: str, state: str, note: str) -> None:
    conn.execute(
        "INSERT INTO timeline (delivery_id, at, state, note) VALUES (?, ?, ?, ?)", (delivery_id, at, state, note)
    )


def _delivery(row: sqlite3.Row, timeline: tuple[TimelineEntry, ...]) -> Delivery:
    return Delivery(
        id=row["id"],
        key=row["key"],
        body=bytes(row["body"]),
        correlation_id=row["correlation_id"],
        received_at=parse_time(row["received_at"]),
        trigger_type=row["trigger_type"],
        event_id=row["event_id"],
        state=row["state"],
        attempts=row["attempts"],
        next_attempt_at=parse_time(row["next_attempt_at"]),
        last_error=row["last_error"],
        order_reference=row["order_reference"],
        result=row["result"],
        lease_token=row["lease_token"],
        lease_until=parse_time(row["lease_until"]),
        updated_at=parse_time(row["updated_at"]),
        timeline=timeline,
        source=row["source"],
    )


def _ledger_entry(row: sqlite3.Row) -> LedgerEntry:
    return LedgerEntry(
        event_id=row["event_id"],
        reference=row["reference"],
        establishment_id=row["establishment_id"],
        delivery_id=row["delivery_id"],
        state=row["state"],
        revel_order_id=row["revel_order_id"],
        revel_uri=row["revel_uri"],
        snapshot=row["snapshot"],
        created_at=parse_time(row["created_at"]),
        updated_at=parse_time(row["updated_at"]),
    )


def _outbox_email(row: sqlite3.Row) -> OutboxEmail:
    message = EmailMessage(
        kind=row["kind"],
        subject=row["subject"],
        text=row["text"],
        delivery_id=row["delivery_id"],
        correlation_id=row["correlation_id"],
        to=tuple(json.loads(row["recipients"])),
    )
    return OutboxEmail(
        id=row["id"],
        message=message,
        state=row["state"],
        attempts=row["attempts"],
        next_attempt_at=parse_time(row["next_attempt_at"]),
        last_error=row["last_error"],
        created_at=parse_time(row["created_at"]),
        sent_at=parse_time(row["sent_at"]),
        lease_token=row["lease_token"],
    )


def _bool_or_none(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def _int_or_none(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _get_value(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT value FROM kv WHERE name = ?", (name,)).fetchone()
    return None if row is None else row["value"]


def _put_value(conn: sqlite3.Connection, name: str, value: str, now: str) -> None:
    conn.execute(
        "INSERT INTO kv (name, value, updated_at) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (name, value, now),
    )


# -- event versions and named leases (catch-up sync) ---------------------------------------------


def _add_sourced_delivery(conn: sqlite3.Connection, new: NewDelivery) -> tuple[Delivery, bool]:
    """Store a delivery with its source, and its event version in the same transaction (first one wins)."""
    received_at = time_text(new.received_at)
    first = False
    if new.event_version is not None:
        first = conn.execute(
            "INSERT INTO event_versions (version, source, seen_at) VALUES (?, ?, ?) ON CONFLICT (version) DO NOTHING",
            (new.event_version, new.source, received_at),
        ).rowcount == 1
        if not first:
            seen = conn.execute(
                "SELECT v.source, d.id FROM event_versions v JOIN deliveries d ON d.id = v.delivery_id WHERE v.version = ?",
                (new.event_version,),
            ).fetchone()
            if seen is not None and duplicate_by_version(new.source, seen["source"]):
                return _get_delivery(conn, seen["id"]), False
    cursor = conn.execute(
        """INSERT INTO deliveries (key, body, correlation_id, received_at, trigger_type, event_id, state,
                                   last_error, updated_at, header_names, source)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (key) DO NOTHING""",
        (new.key, new.body, new.correlation_id, received_at, new.trigger_type, new.event_id, new.state,
         new.error, received_at, json.dumps(list(new.header_names)), new.source),
    )
    created = cursor.rowcount == 1
    if created:
        delivery_id = cursor.lastrowid
        _add_timeline(conn, delivery_id, received_at, new.state, intake_note(new))
    else:
        delivery_id = conn.execute("SELECT id FROM deliveries WHERE key = ?", (new.key,)).fetchone()["id"]
    if first:
        conn.execute("UPDATE event_versions SET delivery_id = ? WHERE version = ?", (delivery_id, new.event_version))
    return _get_delivery(conn, delivery_id), created


def _prune_versions(conn: sqlite3.Connection, older_than: str) -> None:
    conn.execute("DELETE FROM event_versions WHERE seen_at < ?", (older_than,))


def _version_seen(conn: sqlite3.Connection, event_version: str) -> bool:
    return conn.execute("SELECT 1 FROM event_versions WHERE version = ?", (event_version,)).fetchone() is not None


def _take_lease(conn: sqlite3.Connection, name: str, holder: str, now: str, until: str) -> int | None:
    row = conn.execute(
        """INSERT INTO leases (name, token, holder, until) VALUES (?, 1, ?, ?)
           ON CONFLICT (name) DO UPDATE SET token = leases.token + 1, holder = excluded.holder, until = excluded.until
           WHERE leases.until <= ?
           RETURNING token""",
        (name, holder, until, now),
    ).fetchone()
    return None if row is None else int(row["token"])


def _keep_lease(conn: sqlite3.Connection, name: str, token: int, now: str, until: str) -> bool:
    return conn.execute(
        "UPDATE leases SET until = ? WHERE name = ? AND token = ? AND until > ?", (until, name, token, now)
    ).rowcount == 1


def _end_lease(conn: sqlite3.Connection, name: str, token: int, now: str, value_name: str, value: str) -> bool:
    if conn.execute("UPDATE leases SET until = ? WHERE name = ? AND token = ?", (now, name, token)).rowcount != 1:
        return False
    _put_value(conn, value_name, value, now)
    return True


_PRUNABLE = tuple(sorted(TERMINAL_STATES))


def _prune_history(conn: sqlite3.Connection, older_than: str) -> int:
    """Delete terminal deliveries last touched before older_than, with their timelines and settled emails.

    Pending deliveries, the order ledger (it is what prevents a second order) and the audit
    log are never pruned. Emails still waiting to be sent are kept.
    """
    marks = ",".join("?" for _ in _PRUNABLE)
    ids = [
        row["id"]
        for row in conn.execute(
            # orders.delivery_id and emails.delivery_id are foreign keys here: the delivery that owns a
            # ledger row, or has an email still to send, is kept (deleting it would fail the whole prune).
            f"""SELECT id FROM deliveries WHERE state IN ({marks}) AND updated_at < ?
                AND id NOT IN (SELECT delivery_id FROM orders)
                AND id NOT IN (SELECT delivery_id FROM emails WHERE delivery_id IS NOT NULL
                               AND state NOT IN ('sent', 'unsent', 'failed'))""",
            (*_PRUNABLE, older_than),
        ).fetchall()
    ]
    if not ids:
        return 0
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS prune_ids (id INTEGER PRIMARY KEY)")
    conn.execute("DELETE FROM prune_ids")
    conn.executemany("INSERT INTO prune_ids (id) VALUES (?)", [(i,) for i in ids])
    conn.execute("DELETE FROM timeline WHERE delivery_id IN (SELECT id FROM prune_ids)")
    conn.execute(
        "DELETE FROM emails WHERE delivery_id IN (SELECT id FROM prune_ids) AND state IN (?, ?, ?)",
        ("sent", "unsent", "failed"),
    )
    conn.execute("DELETE FROM deliveries WHERE id IN (SELECT id FROM prune_ids)")
    conn.execute("DELETE FROM prune_ids")
    return len(ids)
