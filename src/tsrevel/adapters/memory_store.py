"""The in-memory Store: the SQL store itself over a private in-memory SQLite database, for tests and the library's harness.

Every operation is SqlStore's, so this store cannot drift from the SQLite and PostgreSQL ones.
State lives in this process only and is lost when it ends. Calls run in the caller's thread under
a lock, so each is atomic even when the store is shared between threads (an app under a test
client and a worker, say); an in-memory database needs neither a writer thread nor group commit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from tsrevel.adapters.sqlite_engine import SqliteEngine, connection, migrate_connection

if TYPE_CHECKING:
    import sqlite3

T = TypeVar("T")
_copying = threading.Lock()


@cache
def _migrated() -> sqlite3.Connection:
    """One migrated, empty database per process: copying it is ten times faster than migrating each store."""
    template = connection(":memory:")
    migrate_connection(template)
    return template


class MemoryStore(SqliteEngine):
    """Deliveries, the order ledger, flags, the outbox and audit in one in-memory SQLite database, migrated at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._conn = connection(":memory:")
        with _copying:  # usable at once, without migrate(); the template is never written
            _migrated().backup(self._conn)

    async def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        # No await inside: the whole transaction runs in one go, under the lock.
        with self._lock:
            if self._closed:
                raise RuntimeError("the memory store is closed")
            return fn(self._conn, *args)
