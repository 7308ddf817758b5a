"""P5 on PostgreSQL, 3 replicas: from `PUT /admin/flags {"enable_connector": false}` on one replica to the last side effect of each.

Per round: a fresh schema on the server named by TSREVEL_BENCH_POSTGRES_URL (default
postgresql://postgres@127.0.0.1:5432/test; the schema is dropped afterwards), three `tsrevel
serve` replicas on it (DRY_RUN=false, REVEL_MIN_INTERVAL_S=0), each with its own bench.fake_revel
so that every side effect is known by the replica that made it. New-event webhooks stream into
all three (25 a second each, over 4 connections); once every replica has made orders, the flag is flipped through
the first one, the load goes on for 2 more seconds, then stops. Per replica: its last create's
stamp (time.monotonic(), one clock for every process here) minus the moment just before the PUT
was sent, minus the PUT's answer, and minus the moment a connection of the bench's own first reads
the flag off in the database (polled every 5 ms: the commit, within a few ms); the row is the
slowest replica. Then every delivery must be
done or held, none dropped: the deliveries stored equal the webhooks accepted, and the orders at
the fakes equal the deliveries done, with none created twice.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from urllib.parse import quote, urlsplit

import httpx
import psycopg
from psycopg import sql

from bench.common import ADMIN_TOKEN, Context, Row, admin, load_average, median, poll, running, service_env, start_service
from bench.loadgen import post_webhooks
from bench.p2_end_to_end import fake_revel, revel_stats
from bench.payloads import WebhookBodies

URL_ENV = "TSREVEL_BENCH_POSTGRES_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_S = 0.1  # issue 17 (round 2)
REPLICAS = 3
CONNECTIONS = 4  # per replica
# Webhooks per second into each replica: paced below what a replica processes on a loaded two-core
# machine, so that orders flow steadily when the flag flips (an unpaced flood only grows the queue).
RATE_PER_REPLICA = 25.0
AFTER_FLIP_S = 2.0
PENDING = ("queued", "processing", "retrying")


def postgres_url() -> str:
    return os.environ.get(URL_ENV, "").strip() or DEFAULT_URL


def unreachable(url: str) -> str | None:
    """Why no connection to the server can be opened (its first line), or None."""
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


@contextmanager
def scratch_schema(url: str) -> Iterator[str]:
    """TSREVEL_DATABASE_URL for a fresh, empty schema (libpq's search_path option), dropped with everything in it afterwards."""
    name = f"tsrevel_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield f"{url}{'&' if '?' in url else '?'}options={quote(f'-csearch_path={name}', safe='')}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


async def flip_when_warm(client: httpx.AsyncClient, service: str, revels: list[str], *, warm: int, within_s: float) -> tuple[float, float]:
    """Once every fake Revel has `warm` orders (or within_s passed), switch the connector off through `service`.

    Returns time.monotonic() just before the PUT was sent and when its answer came.
    """
    async def orders(url: str) -> int:
        return (await client.get(f"{url}/__stats")).json()["orders"]

    deadline = time.monotonic() + within_s
    while min([await orders(url) for url in revels]) < warm and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    flipped_at = time.monotonic()
    answer = await client.put(f"{service}/admin/flags", json={"enable_connector": False, "reason": "P5 benchmark"},
                              headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    acked_at = time.monotonic()
    answer.raise_for_status()
    return flipped_at, acked_at


async def seen_off(database: str, *, within_s: float) -> float | None:
    """time.monotonic() when a connection of our own first reads enable_connector = false in the flags row (5 ms polls)."""
    deadline = time.monotonic() + within_s
    async with await psycopg.AsyncConnection.connect(database, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = await (await conn.execute("SELECT enable_connector FROM flags WHERE id = 1")).fetchone()
            if row is not None and row[0] is False:
                return time.monotonic()
            await asyncio.sleep(0.005)
    return None


async def _round(services: list[str], revels: list[str], database: str, warm: int, first: int) -> dict:
    stop = asyncio.Event()
    bodies = WebhookBodies()
    loads = [
        asyncio.create_task(post_webhooks("127.0.0.1", int(url.rsplit(":", 1)[1]), bodies, first=first + n * 10**5,
                                          count=10**5, connections=CONNECTIONS, stop=stop, deadline_s=90,
                                          rate=RATE_PER_REPLICA))
        for n, url in enumerate(services)
    ]
    async with httpx.AsyncClient(timeout=10) as client:
        watch = asyncio.create_task(seen_off(database, within_s=90))  # flags row absent or on until the flip
        flipped_at, acked_at = await flip_when_warm(client, services[0], revels, warm=warm, within_s=60)
        committed_at = await watch
        await asyncio.sleep(AFTER_FLIP_S)
        stop.set()
        results = await asyncio.gather(*loads)
    return {"flipped_at": flipped_at, "acked_at": acked_at, "committed_at": committed_at, "accepted": sum(r.accepted for r in results),
            "sent": sum(r.sent for r in results), "not_accepted": sum(r.other for r in results)}


def one_round(ctx: Context, url: str, warm: int, first: int) -> dict:
    with ExitStack() as stack:
        database = stack.enter_context(scratch_schema(url))  # entered first, left last: the replicas stop before the drop
        scratches = [ctx.scratch(f"p5pg-{n}") for n in range(REPLICAS)]
        revels = [stack.enter_context(running(fake_revel(s), ready_path="/__stats")) for s in scratches]
        children = [
            start_service(s, service_env(s, dry_run=False, revel_url=r.url, REVEL_MIN_INTERVAL_S="0", TSREVEL_DATABASE_URL=database),
                          name=f"replica-{n}")
            for n, (s, r) in enumerate(zip(scratches, revels, strict=True))
        ]
        replicas = [stack.enter_context(running(c, ready_path="/ready", timeout_s=60)) for c in children]
        r = asyncio.run(_round([s.url for s in replicas], [rv.url for rv in revels], database, warm, first))
        settled = poll(lambda: not set(admin(replicas[0].url, "GET", "/admin/status").json()["counts"]) & set(PENDING),
                       timeout_s=60, interval_s=0.1)
        counts = admin(replicas[0].url, "GET", "/admin/status").json()["counts"]
        stats = [revel_stats(rv.url, since=r["flipped_at"]) for rv in revels]
    return {**r, "counts": counts, "stats": stats, "settled": bool(settled)}


def _replica_text(stats: dict, flipped: float) -> str:
    """What one replica's fake saw around the flip: its last create after it, or (none after) how long before it."""
    last = stats["last_create_at"]
    if last is None:
        return "no order at all"
    if stats["creates_since"]:
        return f"{(last - flipped) * 1000:.0f} ms after ({stats['creates_since']} creates after the flip)"
    return f"none after (the last {(flipped - last) * 1000:.0f} ms before; {stats['orders']} orders)"


def run(ctx: Context) -> list[Row]:
    url = postgres_url()
    problem = unreachable(url)
    if problem is not None:
        where = urlsplit(url)  # host and port only: a URL may carry a password
        ctx.note("P5", f"PostgreSQL replicas not measured: no server at {where.hostname}:{where.port or 5432} "
                       f"(set {URL_ENV}; default {DEFAULT_URL}): {problem}")
        return [Row("P5", f"PostgreSQL, {REPLICAS} replicas: flag flip -> last order created at any replica (s)",
                    "not measured", f"<= {TARGET_S:g}", None, note=f"no PostgreSQL server: {problem}"[:120])]
    warm = 20 if ctx.quick else 50
    ctx.note("P5", f"PostgreSQL, {REPLICAS} replicas on one fresh schema, each its own fake Revel; flip on replica 1 after "
                   f"{warm} orders at every replica, load on all three for {AFTER_FLIP_S:g}s more; {ctx.runs} rounds")
    worst, worst_from_ack, worst_from_commit, acks, calls, held_ok = [], [], [], [], [], True
    for round_no in range(ctx.runs):
        r = one_round(ctx, url, warm, first=5 * 10**6 + round_no * 10**6)
        flipped, acked = r["flipped_at"], r["acked_at"]
        lasts = [(s["last_create_at"] or flipped) for s in r["stats"]]
        per_replica = [max(0.0, t - flipped) for t in lasts]
        worst.append(max(per_replica))
        worst_from_ack.append(max(0.0, max(lasts) - acked))
        committed = r["committed_at"] if r["committed_at"] is not None else acked
        worst_from_commit.append(max(0.0, max(lasts) - committed))
        calls.append(max(max(0.0, (s["last_call_at"] or flipped) - flipped) for s in r["stats"]))
        acks.append(acked - flipped)
        counts, stats = r["counts"], r["stats"]
        orders = sum(s["orders"] for s in stats)
        duplicates = sum(s["duplicate_creates"] for s in stats)
        ok = (r["settled"] and set(counts) <= {"done", "held"} and counts.get("held", 0) > 0
              and sum(counts.values()) == r["accepted"] and orders == counts.get("done", 0) and duplicates == 0
              and r["not_accepted"] == 0)
        held_ok = held_ok and ok
        ctx.note(
            "P5",
            f"PostgreSQL round {round_no + 1}: last create per replica: "
            + ", ".join(_replica_text(s, flipped) for s in stats)
            + f"; PUT answered in {(acked - flipped) * 1000:.0f} ms, the flag seen off in the database "
            f"{(committed - flipped) * 1000:.0f} ms after the send; {r['accepted']} webhooks accepted, deliveries {counts}, "
            f"{orders} orders, {duplicates} duplicate creates; load average {load_average()}",
        )
    return [
        Row("P5", f"PostgreSQL, {REPLICAS} replicas: flag flip (PUT sent) -> last order created at any replica (s)",
            f"{median(worst):.3f}", f"<= {TARGET_S:g}", median(worst) <= TARGET_S, worst),
        Row("P5", f"PostgreSQL, {REPLICAS} replicas: PUT answered -> last order created at any replica (s)",
            f"{median(worst_from_ack):.3f}", runs=worst_from_ack),
        Row("P5", f"PostgreSQL, {REPLICAS} replicas: flag committed (seen by a reader) -> last order created at any replica (s)",
            f"{median(worst_from_commit):.3f}", runs=worst_from_commit,
            note="what follows the commit: the replicas' own reaction, without the PUT's queueing on a busy replica"),
        Row("P5", f"PostgreSQL, {REPLICAS} replicas: flag flip -> last Revel call of any kind (s)", f"{median(calls):.3f}", runs=calls),
        Row("P5", f"PostgreSQL, {REPLICAS} replicas: PUT /admin/flags answered (s)", f"{median(acks):.3f}", runs=acks),
        Row("P5", f"PostgreSQL, {REPLICAS} replicas: deliveries after the flip held, not dropped", "yes" if held_ok else "NO",
            "yes", held_ok),
    ]
