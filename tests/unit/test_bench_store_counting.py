"""bench/store_counting.py: the P2 count of store transactions names each call and classifies SQLite's transactions right."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta

from bench.store_counting import OPERATIONS, CountingStore, SqlTransactions, per_order, totals
from tsrevel.adapters.sqlite_store import SqliteStore

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


def test_statements_fold_into_read_write_and_lock_only_transactions():
    sql = SqlTransactions()
    for statement in ("BEGIN", "SELECT 1", "COMMIT",  # a read
                      "BEGIN IMMEDIATE", "SELECT 1", "COMMIT",  # took the write lock, wrote nothing
                      "BEGIN IMMEDIATE", "SAVEPOINT a", "INSERT INTO t VALUES (1)", "ROLLBACK TO a", "RELEASE a", "COMMIT",
                      "UPDATE t SET x = 2", "PRAGMA synchronous"):  # an autocommit write; a pragma is no transaction
        sql.trace(1, statement)
    assert sql.snapshot() == {"read": 1, "write lock, nothing written": 1, "write": 2}


def test_each_store_call_is_named_by_its_caller_with_its_own_sqlite_transactions(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite3, "connect", sqlite3.connect)  # undone after the test: install() patches it
    sql = SqlTransactions()
    sql.install()
    store = CountingStore(SqliteStore(tmp_path / "tsrevel.db"), sql)

    async def read_the_flags() -> None:
        await store.get_flags()

    async def switch_off() -> None:
        await store.set_flags(enable_connector=False, dry_run=None, actor="test", reason="test", now=NOW)

    async def claim() -> None:
        assert await store.claim_delivery(now=NOW, lease_until=NOW + timedelta(seconds=60)) is None

    async def scenario() -> tuple[dict, dict]:
        await store.migrate()
        before = {"calls": dict(store.calls), "transactions": dict(store.transactions)}
        await asyncio.gather(read_the_flags(), read_the_flags(), switch_off(), claim())
        after = {"calls": dict(store.calls), "transactions": dict(store.transactions)}
        await store.close()
        return before, after

    before, after = asyncio.run(scenario())

    ops = {op.label: op for op in per_order(before, after, orders=2)}
    assert set(ops) == {"get_flags <- read_the_flags", "set_flags <- switch_off", "claim_delivery <- claim (nothing due)"}
    assert ops["get_flags <- read_the_flags"].calls == 1.0  # two calls over two "orders"
    assert ops["get_flags <- read_the_flags"].transactions == {"read": 1.0}
    assert ops["set_flags <- switch_off"].transactions == {"write": 0.5}
    assert ops["claim_delivery <- claim (nothing due)"].idle
    assert totals(list(ops.values())) == {"read": 1.0, "write": 0.5}
    assert totals(list(ops.values()), idle=True) == {"write lock, nothing written": 0.5}
    assert {"get_flags", "claim_delivery", "add_delivery", "finish_email"} <= OPERATIONS
