"""P7 backlog drain: DRY_RUN deliveries processed per second by one `tsrevel serve` emptying a stored backlog.

Per round: a fresh `tsrevel serve` (DRY_RUN=true, SQLite with the default synchronous=FULL, its
worker on with the default TSREVEL_WORKERS) started with ENABLE_CONNECTOR=false takes N webhooks
for new events; its worker holds each one. Once all N are held, the switch goes on
(`PUT /admin/flags`) and `POST /admin/replay {"state": "held"}` queues them all again: a backlog
of N, drained while nothing else arrives. The clock runs from just before the replay to the last
delivery's dry_run commit (its updated_at in the SQLite file); the service's CPU over the drain
(all threads, and the event loop's thread alone) is reported per delivery. Each delivery's
outbox email (recorded, not sent: no SendGrid key) is drained by the same process meanwhile.
One more round with TSREVEL_SQLITE_SYNCHRONOUS=normal shows what syncing every commit costs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from bench.common import Child, Context, Row, admin, db_value, load_average, median, poll, running, service_env, start_service
from bench.loadgen import post_webhooks
from bench.payloads import WebhookBodies

TARGET_PER_S = 500.0
CONNECTIONS = 8


def thread_cpu_s(pid: int) -> tuple[float, float]:
    """(CPU seconds of the main thread, the event loop's; CPU seconds of every other thread) from /proc."""
    import os

    main = other = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        used = (int(fields[11]) + int(fields[12])) / tick
        if int(tid) == pid:
            main += used
        else:
            other += used
    return main, other


def held_service(scratch: Path, **extra: str) -> Child:
    """A DRY_RUN service started with its switch off, so that its worker holds whatever comes in."""
    return start_service(scratch, service_env(scratch, dry_run=True, ENABLE_CONNECTOR="false", **extra))


def drain(
    service: Child, scratch: Path, count: int, first: int, *, timeout_s: float, before_replay: Callable[[], object] | None = None
) -> dict:
    """Store `count` held deliveries, then replay them and time the drain; returns the figures."""
    port = int(service.url.rsplit(":", 1)[1])
    load = asyncio.run(post_webhooks("127.0.0.1", port, WebhookBodies(), first=first, count=count, connections=CONNECTIONS))
    if load.accepted != count:
        raise RuntimeError(f"only {load.accepted}/{count} webhooks accepted: {load.failures}")
    held = "SELECT COUNT(*) FROM deliveries WHERE state = 'held'"
    if not poll(lambda: db_value(scratch, held) >= count, timeout_s=timeout_s, interval_s=0.1):
        raise RuntimeError(f"only {db_value(scratch, held)}/{count} deliveries held")
    admin(service.url, "PUT", "/admin/flags", json={"enable_connector": True, "reason": "P7 benchmark"}).raise_for_status()
    time.sleep(0.2)  # the worker's loops go idle again
    if before_replay is not None:
        before_replay()
    cpu0, (main0, other0) = service.cpu_s(), thread_cpu_s(service.pid)
    started = time.time()
    replayed = admin(service.url, "POST", "/admin/replay", json={"state": "held", "reason": "P7 benchmark"})
    replay_s = time.time() - started
    replayed.raise_for_status()
    done = "SELECT COUNT(*) FROM deliveries WHERE state = 'dry_run'"
    finished = poll(lambda: db_value(scratch, done) >= count, timeout_s=timeout_s, interval_s=0.05)
    cpu, (main, other) = service.cpu_s() - cpu0, thread_cpu_s(service.pid)
    made = db_value(scratch, done)
    last = db_value(scratch, "SELECT MAX(updated_at) FROM deliveries WHERE state = 'dry_run'")
    elapsed = datetime.fromisoformat(last).timestamp() - started if last else float("nan")
    emails_left = db_value(scratch, "SELECT COUNT(*) FROM emails WHERE state IN ('pending', 'retrying', 'sending')")
    return {
        "drained": made, "wanted": count, "finished": bool(finished), "elapsed_s": elapsed,
        "per_s": made / elapsed if elapsed > 0 else 0.0, "replay_s": replay_s,
        "cpu_ms": cpu / made * 1000 if made else float("nan"),
        "loop_cpu_ms": (main - main0) / made * 1000 if made else float("nan"),
        "other_cpu_ms": (other - other0) / made * 1000 if made else float("nan"),
        "emails_left": emails_left,
    }


def run(ctx: Context) -> list[Row]:
    count = 500 if ctx.quick else 2000
    ctx.note("P7", f"backlog of {count} held deliveries replayed into a DRY_RUN service; {ctx.runs} rounds")
    rounds = []
    for round_no in range(ctx.runs):
        scratch = ctx.scratch("p7")
        with running(held_service(scratch), ready_path="/ready") as service:
            r = drain(service, scratch, count, round_no * count, timeout_s=120)
        rounds.append(r)
        ctx.note(
            "P7",
            f"round {round_no + 1}: {r['drained']}/{r['wanted']} drained in {r['elapsed_s']:.2f}s = {r['per_s']:.0f}/s "
            f"(replay answered in {r['replay_s'] * 1000:.0f} ms); CPU per delivery {r['cpu_ms']:.2f} ms "
            f"(event loop thread {r['loop_cpu_ms']:.2f}, other threads {r['other_cpu_ms']:.2f}); "
            f"{r['emails_left']} emails still in the outbox at the end; load average {load_average()}",
        )
    scratch = ctx.scratch("p7-normal")
    with running(held_service(scratch, TSREVEL_SQLITE_SYNCHRONOUS="normal"), ready_path="/ready") as service:
        normal = drain(service, scratch, count, ctx.runs * count, timeout_s=120)
    ctx.note("P7", f"TSREVEL_SQLITE_SYNCHRONOUS=normal: {normal['drained']} drained at {normal['per_s']:.0f}/s, "
                   f"CPU per delivery {normal['cpu_ms']:.2f} ms; load average {load_average()}")
    scratch = ctx.scratch("p7-loops")
    with running(held_service(scratch, TSREVEL_WORKERS="8"), ready_path="/ready") as service:
        loops = drain(service, scratch, count, (ctx.runs + 1) * count, timeout_s=120)
    ctx.note("P7", f"TSREVEL_WORKERS=8: {loops['drained']} drained at {loops['per_s']:.0f}/s, "
                   f"CPU per delivery {loops['cpu_ms']:.2f} ms; load average {load_average()}")
    rates = [r["per_s"] for r in rounds]
    cpu = [r["cpu_ms"] for r in rounds]
    complete = all(r["finished"] and r["drained"] == r["wanted"] for r in rounds)
    return [
        Row("P7", "DRY_RUN deliveries processed per second, backlog drain (one service)", f"{median(rates):.0f}",
            f">= {TARGET_PER_S:g}", median(rates) >= TARGET_PER_S and complete, rates),
        Row("P7", "CPU per DRY_RUN delivery while draining (ms; all threads)", f"{median(cpu):.2f}", runs=cpu,
            note=f"{1000 / median(cpu):.0f} deliveries per CPU-second"),
        Row("P7", "the same with TSREVEL_SQLITE_SYNCHRONOUS=normal (one round)", f"{normal['per_s']:.0f}",
            note="what a sync at every commit costs (the default is FULL)"),
        Row("P7", "the same with TSREVEL_WORKERS=8 (one round; the default is 2)", f"{loops['per_s']:.0f}",
            note=f"CPU per delivery {loops['cpu_ms']:.2f} ms: more loops share each group commit"),
        Row("P7", "every delivery of the backlog drained", "yes" if complete else "NO", "yes", complete),
    ]
