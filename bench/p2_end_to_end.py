"""P2 end to end: signed webhooks in, orders out at a loopback fake Revel, in one tsrevel process (DRY_RUN=false).

Per round: a fresh bench.fake_revel and a fresh `tsrevel serve` (REVEL_MIN_INTERVAL_S=0, see
below); N webhooks for N different events go in over 8 connections while the worker runs; the
clock stops when the fake has the N-th order (or at a 30 s deadline).
orders/s = orders made / (last create - first POST).
The fake counts Revel requests per order (target exactly 2: the lookup and the create) and the
TCP connections tsrevel opened to it (target: no more than the client's pool, 10).

Store transactions per new order are counted in one more round, not timed: the same app served
by bench/service_app.py with its store wrapped (bench/store_counting.py), every store call made one
at a time so each one's SQLite transactions are its own (BEGIN IMMEDIATE = write, BEGIN = read),
from intake to the order's email leaving the outbox; claims that found nothing (idle polls) are
counted apart.

REVEL_MIN_INTERVAL_S (default 0.2 s) spaces Revel requests client-side: with it, one process
makes at most 5 requests/s, 2.5 orders/s. The benchmark sets it to 0 to measure tsrevel itself,
and runs a short extra round with the default to show what it implies.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import httpx

from bench.common import (
    REVEL_KEY,
    REVEL_SECRET,
    Context,
    Row,
    db_value,
    load_average,
    median,
    poll,
    running,
    service_env,
    start_module,
    start_service,
)
from bench.loadgen import post_webhooks
from bench.payloads import WebhookBodies
from bench.store_counting import Operation, per_order, totals

POOL_SIZE = 10  # httpx.Limits(max_connections=10) in tsrevel.entrypoints.container
CONNECTIONS = 8
TARGET_ORDERS_PER_S = 300.0  # issue 17 (round 2)
TARGET_TRANSACTIONS = 5
DEFAULT_INTERVAL_ORDERS = 10


def fake_revel(ctx_dir):  # noqa: ANN001, ANN201 - a Path in, a Child out
    return start_module(ctx_dir, "bench.fake_revel", name="fake-revel", args=["--auth", f"{REVEL_KEY}:{REVEL_SECRET}"])


def revel_stats(url: str, since: float | None = None) -> dict:
    params = {"since": repr(since)} if since is not None else None
    return httpx.get(f"{url}/__stats", params=params, timeout=5).json()


def one_round(ctx: Context, *, orders: int, first: int, min_interval_s: str, timeout_s: float) -> dict:
    """Send `orders` webhooks for new events; returns timings and the fake's counters."""
    bodies = WebhookBodies()
    scratch = ctx.scratch("p2")
    with running(fake_revel(scratch), ready_path="/__stats") as revel:
        env = service_env(scratch, dry_run=False, revel_url=revel.url, REVEL_MIN_INTERVAL_S=min_interval_s)
        with running(start_service(scratch, env), ready_path="/ready") as service:
            port = int(service.url.rsplit(":", 1)[1])
            cpu0, revel_cpu0 = service.cpu_s(), revel.cpu_s()
            load = asyncio.run(
                post_webhooks("127.0.0.1", port, bodies, first=first, count=orders, connections=CONNECTIONS)
            )
            deadline = time.monotonic() + timeout_s
            stats = revel_stats(revel.url)
            while stats["orders"] < orders and time.monotonic() < deadline:
                time.sleep(0.05)
                stats = revel_stats(revel.url)
            rss = service.rss_mb()
            cpu, revel_cpu = service.cpu_s() - cpu0, revel.cpu_s() - revel_cpu0
    made = stats["orders"]
    elapsed = (stats["last_create_at"] or load.started_at) - load.started_at
    return {
        "orders": made,
        "wanted": orders,
        "elapsed_s": elapsed,
        "orders_per_s": made / elapsed if elapsed > 0 else 0.0,
        "intake_per_s": load.rate,
        "requests_per_order": (stats["lookups"] + stats["creates"]) / made if made else float("nan"),
        "connections": stats["connections"],
        "connections_per_1000": stats["connections"] / made * 1000 if made else float("nan"),
        "duplicates": stats["duplicate_creates"],
        "not_accepted": load.other,
        "rss_mb": rss,
        "cpu_ms_per_order": cpu / made * 1000 if made else float("nan"),
        "revel_cpu_ms_per_order": revel_cpu / made * 1000 if made else float("nan"),
    }


def _dump(service, out: Path) -> dict:  # noqa: ANN001 - a Child
    out.unlink(missing_ok=True)
    service.proc.send_signal(signal.SIGUSR1)
    if not poll(out.exists, timeout_s=10, interval_s=0.02):
        raise RuntimeError(f"the counting service wrote no {out.name}\n{service.log_tail()}")
    return json.loads(out.read_text())


def count_round(ctx: Context, *, orders: int, first: int) -> list[Operation]:
    """Store operations and transactions per new order, intake to the order's email out of the outbox (not timed)."""
    scratch = ctx.scratch("p2-count")
    out = scratch / "store-counts.json"
    with running(fake_revel(scratch), ready_path="/__stats") as revel:
        env = service_env(scratch, dry_run=False, revel_url=revel.url, REVEL_MIN_INTERVAL_S="0")
        counting = start_service(scratch, env, name="tsrevel-counted", module="bench.service_app", args=["--count-store", str(out)])
        with running(counting, ready_path="/ready") as service:
            time.sleep(0.3)  # let the start-up calls (migrations, the first idle polls) settle
            before = _dump(service, out)
            port = int(service.url.rsplit(":", 1)[1])
            load = asyncio.run(post_webhooks("127.0.0.1", port, WebhookBodies(), first=first, count=orders, connections=CONNECTIONS))
            emailed = "SELECT COUNT(*) FROM emails WHERE state IN ('sent', 'unsent', 'failed')"
            settled = poll(lambda: revel_stats(revel.url)["orders"] >= orders and db_value(scratch, emailed) >= orders,
                           timeout_s=60, interval_s=0.1)
            after = _dump(service, out)
    if not settled or load.accepted != orders:
        raise RuntimeError(f"counting round did not settle: {load.accepted}/{orders} accepted, orders and emails not all done")
    return per_order(before, after, orders)


def transaction_rows(ctx: Context, ops: list[Operation]) -> list[Row]:
    work, idle = totals(ops), totals(ops, idle=True)
    for op in ops:
        kinds = ", ".join(f"{kind} {n:.2f}" for kind, n in sorted(op.transactions.items())) or "no transaction"
        ctx.note("P2", f"store per new order: `{op.label}` {op.calls:.2f} call(s); transactions: {kinds}")
    count = sum(work.values())
    writes, reads = work.get("write", 0.0), work.get("read", 0.0)
    empty = work.get("write lock, nothing written", 0.0)
    return [
        Row("P2", "store transactions per new order (intake + processing + email outbox)", f"{count:.2f}",
            f"<= {TARGET_TRANSACTIONS}", count <= TARGET_TRANSACTIONS + 1e-9,
            note=f"{writes:.2f} writes, {reads:.2f} reads, {empty:.2f} write locks that wrote nothing; "
                 f"idle polls meanwhile {sum(idle.values()):.2f} per order, not counted; operations in the notes"),
    ]


def run(ctx: Context) -> list[Row]:
    orders = 500 if ctx.quick else 1000
    ctx.note("P2", f"{orders} new events per round over {CONNECTIONS} connections, REVEL_MIN_INTERVAL_S=0; {ctx.runs} rounds")
    rounds = []
    for round_no in range(ctx.runs):
        r = one_round(ctx, orders=orders, first=round_no * orders, min_interval_s="0", timeout_s=30)
        rounds.append(r)
        ctx.note(
            "P2",
            f"round {round_no + 1}: {r['orders']}/{r['wanted']} orders in {r['elapsed_s']:.2f}s = {r['orders_per_s']:.0f} orders/s "
            f"(intake alone {r['intake_per_s']:.0f}/s); {r['requests_per_order']:.3f} Revel requests/order; "
            f"{r['connections']} connections; {r['duplicates']} duplicate creates; RSS {r['rss_mb']:.0f} MB; "
            f"CPU per order: tsrevel {r['cpu_ms_per_order']:.2f} ms, fake Revel {r['revel_cpu_ms_per_order']:.2f} ms; load average {load_average()}",
        )
    slow = one_round(ctx, orders=DEFAULT_INTERVAL_ORDERS, first=10**6, min_interval_s="0.2", timeout_s=30)
    ctx.note("P2", f"default REVEL_MIN_INTERVAL_S=0.2: {slow['orders']} orders in {slow['elapsed_s']:.2f}s = {slow['orders_per_s']:.2f} orders/s")

    count_orders = 100 if ctx.quick else 300
    ops = count_round(ctx, orders=count_orders, first=2 * 10**6)
    ctx.note("P2", f"store transactions counted over {count_orders} new orders (one more round, calls one at a time, not timed)")

    rates = [r["orders_per_s"] for r in rounds]
    per_order = [r["requests_per_order"] for r in rounds]
    conns = [r["connections_per_1000"] for r in rounds]
    cpu = [r["cpu_ms_per_order"] for r in rounds]
    unique = all(r["duplicates"] == 0 and r["not_accepted"] == 0 for r in rounds)
    short = [f"{r['orders']}/{r['wanted']}" for r in rounds if r["orders"] < r["wanted"]]
    return [
        Row("P2", "orders/s, one process (REVEL_MIN_INTERVAL_S=0)", f"{median(rates):.0f}", f">= {TARGET_ORDERS_PER_S:g}",
            median(rates) >= TARGET_ORDERS_PER_S, rates),
        Row("P2", "tsrevel CPU per order, intake + processing (ms; all threads)", f"{median(cpu):.2f}", runs=cpu,
            note=f"{1000 / median(cpu):.0f} orders per CPU-second"),
        Row("P2", "Revel requests per new order", f"{median(per_order):.3f}", "= 2", all(abs(x - 2) < 1e-9 for x in per_order), per_order),
        Row("P2", "TCP connections opened per 1,000 orders", f"{median(conns):.1f}", f"<= {POOL_SIZE} (pool size)",
            median(conns) <= POOL_SIZE, conns),
        Row("P2", "one order per event: no duplicate create, every webhook accepted", "yes" if unique else "NO", "yes", unique,
            note=f"rounds cut short by the 30 s deadline: {', '.join(short)}" if short else ""),
        *transaction_rows(ctx, ops),
        Row("P2", "orders/s with the default REVEL_MIN_INTERVAL_S=0.2", f"{slow['orders_per_s']:.2f}",
            note="the client-side pace: 5 requests/s = 2.5 orders/s per process, 9,000 orders/hour"),
    ]
