"""P4 memory: the service's RSS across 100,000 signed deliveries (intake and DRY_RUN processing, worker on).

One `tsrevel serve` process (DRY_RUN=true, SQLite) takes the deliveries over 16 connections
while its worker processes them; RSS is read from /proc every 2,000 deliveries, then every
second for 20 s while the worker goes on with the backlog (it cannot drain 100,000 in the time
bound: the queue lives in SQLite, not in memory). "Flat" compares the RSS at the end with the RSS after
warm-up (the first 10 % of the deliveries): allocator pools, SQLite's page cache and Python's
caches fill during warm-up, a leak keeps growing after it. The run is bounded in time: if the
deliveries do not all go in before the deadline, the row says how many did.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import Context, Row, admin, load_average, running, service_env, start_service
from bench.loadgen import post_webhooks
from bench.payloads import WebhookBodies

TARGET_MB = 150.0
TARGET_GROWTH = 0.10
CONNECTIONS = 16
SAMPLE_EVERY = 2000
DRAIN_S = 20.0  # RSS keeps being sampled this long after the last delivery, while the worker goes on


def pending(url: str) -> int:
    counts = admin(url, "GET", "/admin/status").json()["counts"]
    return sum(counts.get(s, 0) for s in ("received", "queued", "processing", "retrying"))


def run(ctx: Context) -> list[Row]:
    total = 10_000 if ctx.quick else 100_000
    deadline_s = 40.0 if ctx.quick else 200.0  # keeps `make bench` under 10 minutes on a loaded machine
    bodies = WebhookBodies()
    scratch = ctx.scratch("p4")
    samples: list[tuple[int, float]] = []  # (deliveries sent, RSS MiB) while they go in
    drain: list[tuple[float, float]] = []  # (seconds after the last one, RSS MiB) while the worker goes on
    env = service_env(scratch, dry_run=True)
    with running(start_service(scratch, env), ready_path="/ready") as service:
        port = int(service.url.rsplit(":", 1)[1])
        samples.append((0, service.rss_mb()))
        cpu0 = service.cpu_s()
        load = asyncio.run(
            post_webhooks(
                "127.0.0.1", port, bodies, first=0, count=total, connections=CONNECTIONS,
                on_progress=lambda sent: samples.append((sent, service.rss_mb())), progress_every=SAMPLE_EVERY,
                deadline_s=deadline_s,
            )
        )
        sent = load.sent
        samples.append((sent, service.rss_mb()))
        drain_started = time.monotonic()
        left = pending(service.url)
        while left and time.monotonic() < drain_started + DRAIN_S:
            time.sleep(1)
            drain.append((time.monotonic() - drain_started, service.rss_mb()))
            left = pending(service.url)
        cpu = service.cpu_s() - cpu0
        final = service.rss_mb()
    warm = next(rss for n, rss in samples if n >= sent * 0.1)
    peak = max(rss for _, rss in samples + drain + [(0, final)])
    growth = (final - warm) / warm
    ctx.note(
        "P4",
        f"{sent} deliveries in {load.elapsed_s:.0f}s ({load.rate:.0f}/s, {load.other} not accepted), {left} still pending after the drain; "
        f"CPU {cpu / max(sent, 1) * 1000:.2f} ms per delivery; load average {load_average()}",
    )
    shown = samples[:: max(1, len(samples) // 10)] + samples[-1:]
    ctx.note("P4", "RSS MiB by deliveries sent: " + ", ".join(f"{n:,}: {rss:.0f}" for n, rss in shown)
             + "; then while the worker went on: " + ", ".join(f"+{t:.0f}s: {rss:.0f}" for t, rss in drain[::5] + drain[-1:])
             + f"; at the end: {final:.0f}")
    scaled = "" if sent >= total else f" (only {sent} of {total} went in before the {deadline_s:.0f}s deadline)"
    return [
        Row("P4", f"peak RSS over {sent:,} deliveries (MiB){scaled}", f"{peak:.0f}", f"<= {TARGET_MB:g}", peak <= TARGET_MB),
        Row("P4", "RSS growth after warm-up (end vs 10 %)", f"{growth * 100:+.1f} %", f"within {TARGET_GROWTH * 100:g} %",
            abs(growth) <= TARGET_GROWTH, note=f"{warm:.0f} MiB after warm-up, {final:.0f} MiB at the end"),
        Row("P4", "deliveries still pending after the bounded drain", f"{left:,}",
            note="informational: the worker's DRY_RUN rate, not memory; every webhook was accepted" if load.other == 0
            else f"{load.other} webhooks were not accepted"),
    ]
