"""Count a service's store transactions per operation (P2): the Store port's calls, and SQLite's own BEGINs under them.

Two counts, taken in the bench's service process (bench/service_app.py --count-store):

- every call through the Store port (tsrevel.domain.ports.Store), named by the operation and the
  domain function that made it (``get_flags <- still_go``), claims that found nothing apart;
- every SQLite transaction the store opened for it, read from the statements SQLite runs
  (``sqlite3.Connection.set_trace_callback``): ``BEGIN IMMEDIATE`` is a write transaction, a bare
  ``BEGIN`` a read one, and a write transaction that ran no INSERT/UPDATE/DELETE is counted apart
  (it took the write lock but changed nothing, so its commit syncs nothing).

The store code is not changed: the port is wrapped in a proxy and sqlite3.connect is patched in
that one process. Calls are made one at a time through the proxy (an asyncio lock), so each
call's transactions are exactly those counted while it ran; that serialises intake's group
commit too (one transaction per webhook here; under load in production several share one).
This pass is for counting only, never timed.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import sqlite3
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tsrevel.domain.ports import Store

# The Store port's operations: the proxy counts these and passes anything else through.
OPERATIONS = frozenset(
    name for name, value in vars(Store).items() if not name.startswith("_") and inspect.iscoroutinefunction(value)
)
# Claims that found nothing are the worker's idle polls, not work of any order.
CLAIMS = ("claim_delivery", "claim_email")
# The callers whose reads come before a worker loop's every claim (the mapping reload check, the
# email loop's flags): when the claim finds nothing they were part of an idle poll.
BEFORE_CLAIM = ("<- follow_mapping_reload", "<- flags <- send_next_email")
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
# Frames that only pass a call on: the caller named is the first frame outside them.
_PASS_THROUGH = ("bench/store_counting.py", "tsrevel/adapters/")


class SqlTransactions:
    """SQLite statements seen on every connection of this process, folded into transactions (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self._open: dict[int, dict[str, bool]] = {}  # per connection: is it a write transaction, has it written

    def trace(self, conn_id: int, statement: str) -> None:
        word = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
        with self._lock:
            if word == "BEGIN":
                self._open[conn_id] = {"write": "IMMEDIATE" in statement.upper() or "EXCLUSIVE" in statement.upper(), "wrote": False}
            elif word in ("COMMIT", "END", "ROLLBACK") and "TO" not in statement.upper().split():
                tx = self._open.pop(conn_id, None)
                if tx is not None:
                    self.counts[_kind(tx)] += 1
            elif word in ("SAVEPOINT", "RELEASE", "PRAGMA") or word == "":
                pass
            elif conn_id in self._open:
                if word in _WRITES:
                    self._open[conn_id]["wrote"] = True
            else:  # a statement outside any transaction is a transaction of its own (autocommit)
                self.counts["write" if word in _WRITES else "read"] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counts)

    def install(self) -> None:
        """Trace every sqlite3 connection opened from now on in this process."""
        original = sqlite3.connect

        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn = original(*args, **kwargs)
            conn.set_trace_callback(lambda statement, key=id(conn): self.trace(key, statement))
            return conn

        sqlite3.connect = connect  # type: ignore[assignment]


def _kind(tx: dict[str, bool]) -> str:
    if not tx["write"]:
        return "write" if tx["wrote"] else "read"
    return "write" if tx["wrote"] else "write lock, nothing written"


_inside: contextvars.ContextVar[bool] = contextvars.ContextVar("bench_store_call", default=False)


class CountingStore:
    """The Store port of `inner`, each operation counted by name and caller, and by the SQL transactions it ran."""

    def __init__(self, inner: Any, sql: SqlTransactions | None = None) -> None:
        self._inner = inner
        self._sql = sql
        self._lock = asyncio.Lock()
        self.calls: Counter[str] = Counter()  # "operation <- caller"
        self.transactions: Counter[str] = Counter()  # "operation <- caller: write|read|..."
        self._before_claim: dict[int, list[tuple[str, dict[str, int]]]] = {}  # task -> its calls since its last claim

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in OPERATIONS:
            return value

        async def counted(*args: Any, **kwargs: Any) -> Any:
            if _inside.get():
                return await value(*args, **kwargs)
            label = f"{name} <- {_caller()}"
            token = _inside.set(True)
            try:
                async with self._lock:
                    before = self._sql.snapshot() if self._sql is not None else {}
                    result = await value(*args, **kwargs)
                    after = self._sql.snapshot() if self._sql is not None else {}
            finally:
                _inside.reset(token)
            self._count(label, name, result, before, after)
            return result

        return counted

    def _count(self, label: str, name: str, result: Any, before: dict[str, int], after: dict[str, int]) -> None:
        task = id(asyncio.current_task())
        kinds = {kind: n for kind in after if (n := after[kind] - before.get(kind, 0)) > 0}
        if name in CLAIMS:
            pending = self._before_claim.pop(task, [])
            if result is None:
                label += " (nothing due)"
                for earlier, earlier_kinds in pending:  # the reads a loop makes before each claim: idle too
                    self._add(earlier, earlier_kinds, -1)
                    self._add(earlier + " (then nothing due)", earlier_kinds, 1)
        elif any(label.endswith(caller) for caller in BEFORE_CLAIM):
            self._before_claim.setdefault(task, []).append((label, kinds))
        self._add(label, kinds, 1)

    def _add(self, label: str, kinds: dict[str, int], sign: int) -> None:
        self.calls[label] += sign
        for kind, n in kinds.items():
            self.transactions[f"{label}: {kind}"] += sign * n

    def dump(self, path: Path) -> None:
        data = {"calls": dict(self.calls), "transactions": dict(self.transactions),
                "sql": self._sql.snapshot() if self._sql is not None else {}}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)


def _caller() -> str:
    """The first function up the stack outside the store and this proxy, with the one above it for Processor.flags."""
    frame = sys._getframe(2)
    names: list[str] = []
    while frame is not None and len(names) < 2:
        file = frame.f_code.co_filename
        if not any(part in file for part in _PASS_THROUGH):
            names.append(frame.f_code.co_name)
            if names[0] not in ("flags", "_store"):
                break
        frame = frame.f_back
    return " <- ".join(names) if names else "?"


@dataclass(frozen=True)
class Operation:
    """One store operation (and its caller) per new order: how many calls, and their transactions by kind."""

    label: str
    calls: float
    transactions: dict[str, float]

    @property
    def idle(self) -> bool:
        return "nothing due" in self.label


def per_order(before: dict[str, Any], after: dict[str, Any], orders: int) -> list[Operation]:
    """The operations whose counts grew between two dumps, divided by the orders made meanwhile; most frequent first."""
    out = []
    for label, total in after["calls"].items():
        calls = total - before["calls"].get(label, 0)
        if calls <= 0:
            continue
        prefix = label + ": "
        kinds = {
            key[len(prefix):]: (n - before["transactions"].get(key, 0)) / orders
            for key, n in after["transactions"].items() if key.startswith(prefix) and ":" not in key[len(prefix):]
        }
        out.append(Operation(label, calls / orders, {k: v for k, v in kinds.items() if v > 0}))
    return sorted(out, key=lambda op: (op.idle, -op.calls, op.label))


def totals(operations: list[Operation], *, idle: bool = False) -> dict[str, float]:
    """Transactions per order by kind, over the operations that did work (or, with idle=True, the idle polls)."""
    out: Counter[str] = Counter()
    for op in operations:
        if op.idle == idle:
            for kind, n in op.transactions.items():
                out[kind] += n
    return dict(out)
