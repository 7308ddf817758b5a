"""SQLite's group commit (issue 17, P2 and P7): writes that queue while one commits share the next transaction.

Every write a caller awaits is answered only after its transaction committed; a write that fails
in a shared transaction is rolled back alone and only its caller sees the error; writes from
another event loop still work (their own transaction).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tsrevel.adapters.sqlite_store import SqliteStore
from tsrevel.domain import deliveries as st
from tsrevel.domain.deliveries import NewDelivery

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def new(n: int) -> NewDelivery:
    body = f'{{"n": {n}}}'.encode()
    return NewDelivery(key=f"key-{n}", body=body, correlation_id=f"c{n}", received_at=T0, trigger_type="CREATE_EVENT",
                       event_id=str(1000 + n), state=st.QUEUED)


def count_begins(path: Path) -> tuple[SqliteStore, list[str]]:
    """A store whose connection records each statement it starts a transaction with."""
    store = SqliteStore(path)
    seen: list[str] = []
    original = store._on_connection

    def traced(fn, args):  # type: ignore[no-untyped-def]
        if store._conn is None:
            original(lambda conn: None, ())
            store._conn.set_trace_callback(lambda sql: seen.append(sql) if sql.startswith("BEGIN") else None)
        return original(fn, args)

    store._on_connection = traced  # type: ignore[method-assign]
    return store, seen


async def test_concurrent_writes_of_every_kind_share_transactions_and_each_is_answered_after_its_commit(tmp_path):
    store, begins = count_begins(tmp_path / "t.db")
    await store.migrate()
    begins.clear()
    results = await asyncio.gather(*(store.add_delivery(new(n)) for n in range(40)))
    assert [created for _, created in results] == [True] * 40
    writes = [b for b in begins if b == "BEGIN IMMEDIATE"]
    assert 1 <= len(writes) < 40  # many inserts per commit, not one each

    begins.clear()
    lease = T0 + timedelta(seconds=60)
    claims = await asyncio.gather(*(store.claim_delivery(now=T0, lease_until=lease) for _ in range(10)),
                                  *(store.put_value(f"v{n}", str(n), now=T0) for n in range(10)))
    claimed = [c for c in claims[:10] if c is not None]
    assert len({c.id for c in claimed}) == 10  # ten claims, ten different deliveries: never one twice
    assert len([b for b in begins if b == "BEGIN IMMEDIATE"]) < 20

    # Durable when answered: a second connection (another process) sees every write.
    other = sqlite3.connect(tmp_path / "t.db")
    assert other.execute("SELECT count(*) FROM deliveries WHERE state = ?", (st.PROCESSING,)).fetchone()[0] == 10
    assert other.execute("SELECT count(*) FROM kv WHERE name LIKE 'v%'").fetchone()[0] == 10
    other.close()
    await store.close()


async def test_a_write_that_fails_in_a_shared_transaction_fails_alone(tmp_path):
    store = SqliteStore(tmp_path / "t.db")
    await store.migrate()

    async def broken(db, n):  # type: ignore[no-untyped-def]
        await db.run("INSERT INTO kv (name, value, updated_at) VALUES (%s, %s, %s)", (f"half-{n}", "x", T0))
        raise ValueError(f"refused {n}")

    outcomes = await asyncio.gather(
        *(store.put_value(f"ok{n}", "1", now=T0) for n in range(5)),
        store._write(broken, 1),
        *(store.add_delivery(new(n)) for n in range(5)),
        return_exceptions=True,
    )
    errors = [o for o in outcomes if isinstance(o, Exception)]
    assert [str(e) for e in errors] == ["refused 1"]
    assert await store.get_value("half-1") is None  # its own write was rolled back with it
    assert [await store.get_value(f"ok{n}") for n in range(5)] == ["1"] * 5
    assert len(await store.list_deliveries(limit=50)) == 5
    await store.close()


async def test_writes_from_another_event_loop_take_their_own_transaction(tmp_path):
    store = SqliteStore(tmp_path / "t.db")
    await store.migrate()
    errors: list[BaseException] = []

    def other_loop() -> None:
        try:
            asyncio.run(store.put_value("from-thread", "yes", now=T0))
        except BaseException as exc:  # pragma: no cover - reported by the assertion below
            errors.append(exc)

    async def many_here() -> None:
        await asyncio.gather(*(store.add_delivery(new(n)) for n in range(20)))

    thread = threading.Thread(target=other_loop)
    task = asyncio.ensure_future(many_here())
    thread.start()
    await task
    await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
    assert errors == []
    assert await store.get_value("from-thread") == "yes"
    assert len(await store.list_deliveries(limit=50)) == 20
    await store.close()


async def test_an_outage_fails_every_write_of_the_batch_as_store_unavailable(tmp_path):
    from tsrevel.domain.errors import StoreUnavailable

    path = tmp_path / "t.db"
    store = SqliteStore(path, busy_timeout_ms=50)
    await store.migrate()
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    outcomes = await asyncio.gather(*(store.put_value(f"v{n}", "1", now=T0) for n in range(3)),
                                    store.add_delivery(new(1)), return_exceptions=True)
    assert all(isinstance(o, StoreUnavailable) for o in outcomes), outcomes
    locker.execute("ROLLBACK")
    locker.close()
    assert await store.get_value("v0") is None
    await store.put_value("v0", "2", now=T0)  # recovered: the next write commits
    assert await store.get_value("v0") == "2"
    await store.close()

