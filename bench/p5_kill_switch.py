"""P5 kill switch: from `PUT /admin/flags {"enable_connector": false}` to the last side effect at the fake Revel, under load.

Per round: a fresh bench.fake_revel and `tsrevel serve` (DRY_RUN=false, REVEL_MIN_INTERVAL_S=0);
webhooks for new events stream in over 8 connections; once orders are flowing, the flag is
flipped; the load goes on for 2 more seconds, then stops. The fake stamps each create with
time.monotonic() (one clock for every process here), so the latency is the last create's stamp
minus the moment just before the PUT was sent. Calls of any kind (lookups too) are reported
beside it, and the run checks that deliveries were held, not dropped. Then the issue 17 row:
the same on PostgreSQL with three replicas (bench/p5_replicas.py).
"""

from __future__ import annotations

import asyncio

import httpx

from bench.common import Context, Row, admin, median, running, service_env, start_service
from bench.loadgen import post_webhooks
from bench import p5_replicas
from bench.p2_end_to_end import fake_revel
from bench.payloads import WebhookBodies

TARGET_S = 1.0
WARM_ORDERS = 200
AFTER_FLIP_S = 2.0


async def _round(service_url: str, revel_url: str, port: int, warm: int) -> dict:
    stop = asyncio.Event()
    load = asyncio.create_task(
        post_webhooks("127.0.0.1", port, WebhookBodies(), first=0, count=10**6, connections=8, stop=stop, deadline_s=60)
    )
    async with httpx.AsyncClient(timeout=10) as client:
        flipped_at, acked_at = await p5_replicas.flip_when_warm(client, service_url, [revel_url], warm=warm, within_s=30)
        await asyncio.sleep(AFTER_FLIP_S)
        stop.set()
        result = await load
        await asyncio.sleep(0.5)
        stats = (await client.get(f"{revel_url}/__stats", params={"since": repr(flipped_at)})).json()
    return {"flipped_at": flipped_at, "acked_at": acked_at, "stats": stats, "sent": result.sent}


def run(ctx: Context) -> list[Row]:
    warm = WARM_ORDERS // 4 if ctx.quick else WARM_ORDERS
    ctx.note("P5", f"SQLite, one service: flip after {warm} orders, load continues {AFTER_FLIP_S:g}s after the flip; {ctx.runs} rounds")
    latencies, call_latencies, acks, held_ok = [], [], [], True
    for round_no in range(ctx.runs):
        scratch = ctx.scratch("p5")
        with running(fake_revel(scratch), ready_path="/__stats") as revel:
            env = service_env(scratch, dry_run=False, revel_url=revel.url, REVEL_MIN_INTERVAL_S="0")
            with running(start_service(scratch, env), ready_path="/ready") as service:
                port = int(service.url.rsplit(":", 1)[1])
                r = asyncio.run(_round(service.url, revel.url, port, warm))
                counts = admin(service.url, "GET", "/admin/status").json()["counts"]
        stats, flipped = r["stats"], r["flipped_at"]
        last_create = stats["last_create_at"] or flipped
        latency = max(0.0, last_create - flipped)
        last_call = max(0.0, (stats["last_call_at"] or flipped) - flipped)
        latencies.append(latency)
        call_latencies.append(last_call)
        acks.append(r["acked_at"] - flipped)
        held = counts.get("held", 0)
        held_ok = held_ok and held > 0
        ctx.note(
            "P5",
            f"round {round_no + 1}: last create {latency * 1000:.0f} ms after the flip ({stats['creates_since']} creates after it), "
            f"last Revel call {last_call * 1000:.0f} ms after; PUT answered in {(r['acked_at'] - flipped) * 1000:.0f} ms; "
            f"{stats['orders']} orders, {held} deliveries held, {r['sent']} webhooks sent",
        )
    return [
        Row("P5", "SQLite, one service: flag flip -> last order created at Revel (s)", f"{median(latencies):.3f}", f"<= {TARGET_S:g}",
            median(latencies) <= TARGET_S and max(latencies) <= TARGET_S, latencies),
        Row("P5", "flag flip -> last Revel call of any kind (s)", f"{median(call_latencies):.3f}", runs=call_latencies),
        Row("P5", "PUT /admin/flags answered (s)", f"{median(acks):.3f}", runs=acks),
        Row("P5", "deliveries after the flip held, not dropped", "yes" if held_ok else "NO", "yes", held_ok),
        *p5_replicas.run(ctx),
    ]
