"""P1 intake: signed ~2 KB webhooks acknowledged after the durable commit, at 32 connections, against a bare Litestar app.

Each round starts three fresh processes in turn, all served by `uvicorn.run` with tsrevel's own
arguments: the bare echo app (the reference), tsrevel as `python -m tsrevel serve` (DRY_RUN=true,
worker on: production-like), and tsrevel with its worker off (intake alone). Each gets a 1 s
wrk warm-up, then a measured wrk run; every request carries a different body (a real insert),
which the run checks afterwards by counting the stored deliveries. The server's CPU time per
request is read from /proc beside wrk's numbers: on a shared machine it is the steadier figure.

wrk keeps 32 requests in flight, so by Little's law the mean latency is 32 / throughput: a p99
of 20 ms needs well over 1,600 answers a second. After the rounds, as many fresh tsrevel
processes (worker on) each take 500 webhooks paced at 100 a second (bench.loadgen): the
latency of a server that is not saturated.
"""

from __future__ import annotations

import asyncio

from bench.common import (
    Context,
    Row,
    db_counts,
    fmt_runs,
    load_average,
    median,
    percentile,
    running,
    service_env,
    start_module,
    start_service,
)
from bench.loadgen import post_webhooks
from bench.payloads import WebhookBodies
from bench.wrk_load import WrkResult, run_wrk, write_script

CONNECTIONS = 32
MEASURED_BODIES = 60_000  # more than any tsrevel run can send in the measured window
WARMUP_START = MEASURED_BODIES  # warm-up bodies come after the measured ones, so they never collide
WARMUP_BODIES = 15_000
PACED_RATE = 100.0  # webhooks per second: far above any venue's rate, well below saturation
PACED_REQUESTS = 500
TARGET_RATIO = 0.6
TARGET_P99_MS = 20.0


def run(ctx: Context) -> list[Row]:
    bodies = WebhookBodies()
    duration = 2.0 if ctx.quick else 5.0
    script = write_script(ctx.workdir / "p1.lua", bodies, MEASURED_BODIES + WARMUP_BODIES)
    ctx.note("P1", f"body {bodies.size()} bytes, wrk -t1 -c{CONNECTIONS} -d{duration:g}s after a 1 s warm-up; {ctx.runs} rounds")
    results: dict[str, list[WrkResult]] = {"bare": [], "worker on": [], "worker off": []}
    cpu_us: dict[str, list[float]] = {variant: [] for variant in results}  # server CPU per request, all threads
    for round_no in range(1, ctx.runs + 1):
        for variant in results:
            scratch = ctx.scratch(f"p1-{variant.replace(' ', '-')}")
            if variant == "bare":
                child = start_module(scratch, "bench.echo_app", name="echo")
            else:
                env = service_env(scratch, dry_run=True)
                module = "bench.service_app" if variant == "worker off" else None
                child = start_service(scratch, env, name="tsrevel", module=module)
            with running(child, ready_path="/ready"):
                run_wrk(child.url, script, connections=CONNECTIONS, duration_s=1, start=WARMUP_START)
                cpu0 = child.cpu_s()
                result = run_wrk(child.url, script, connections=CONNECTIONS, duration_s=duration, start=0)
                cpu_us[variant].append((child.cpu_s() - cpu0) / max(result.requests, 1) * 1e6)
            results[variant].append(result)
            stored = ""
            if variant != "bare":
                counts = db_counts(scratch)
                total = sum(counts.values())
                stored = f", stored {total} deliveries ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"
                if total < result.requests:  # every answered request must be a stored delivery (warm-up's too)
                    ctx.note("P1", f"round {round_no} {variant}: only {total} stored for {result.requests} answered requests")
            ctx.note(
                "P1",
                f"round {round_no} {variant}: {result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms, "
                f"{result.errors} errors, server CPU {cpu_us[variant][-1]:.0f} us/request{stored}; load average {load_average()}",
            )
            if result.errors:
                ctx.note("P1", f"round {round_no} {variant}: wrk counted {result.errors} errors (non-2xx, timeouts)")
    paced = paced_latency(ctx, bodies)
    bare = results["bare"]
    rows: list[Row] = []
    rows.append(Row("P1", "bare Litestar echo req/s", f"{median([r.rps for r in bare]):.0f}", runs=[r.rps for r in bare]))
    for variant in ("worker on", "worker off"):
        mine = results[variant]
        ratios = [m.rps / b.rps for m, b in zip(mine, bare, strict=True)]
        p99s = [m.p99_ms for m in mine]
        label = "tsrevel (worker on, DRY_RUN)" if variant == "worker on" else "tsrevel (worker off)"
        rows.append(Row("P1", f"{label} req/s", f"{median([m.rps for m in mine]):.0f}", runs=[m.rps for m in mine]))
        rows.append(Row("P1", f"{label} / bare", f"{median(ratios):.2f}", f">= {TARGET_RATIO}", median(ratios) >= TARGET_RATIO, ratios))
        rows.append(Row("P1", f"{label} p50 ms", f"{median([m.p50_ms for m in mine]):.2f}", runs=[m.p50_ms for m in mine]))
        cpu_ratio = [b / m for b, m in zip(cpu_us["bare"], cpu_us[variant], strict=True)]
        rows.append(Row("P1", f"{label} server CPU per request (us)", f"{median(cpu_us[variant]):.0f}", runs=cpu_us[variant],
                        note=f"bare / this = {median(cpu_ratio):.2f}: the ratio if both were CPU-bound"))
        rows.append(Row("P1", f"{label} p99 ms", f"{median(p99s):.2f}", f"<= {TARGET_P99_MS:g}", median(p99s) <= TARGET_P99_MS, p99s))
    rows.append(Row("P1", f"tsrevel (worker on) p50 / p99 ms at a paced {PACED_RATE:g} req/s",
                    f"{median([p[0] for p in paced]):.2f} / {median([p[1] for p in paced]):.2f}",
                    runs=[p[1] for p in paced], note="not saturated: what one webhook waits in life; runs are the p99s"))
    rows.append(Row("P1", "bare server CPU per request (us)", f"{median(cpu_us['bare']):.0f}", runs=cpu_us["bare"]))
    rows.append(Row("P1", "bare p50 / p99 ms", f"{median([r.p50_ms for r in bare]):.2f} / {median([r.p99_ms for r in bare]):.2f}",
                    note=f"p99 runs {fmt_runs([r.p99_ms for r in bare], 2)}"))
    return rows


def paced_latency(ctx: Context, bodies: WebhookBodies) -> list[tuple[float, float]]:
    """(p50 ms, p99 ms) per round of tsrevel (worker on) taking PACED_RATE webhooks/s over 32 connections."""
    out = []
    for round_no in range(1, ctx.runs + 1):
        scratch = ctx.scratch("p1-paced")
        with running(start_service(scratch, service_env(scratch, dry_run=True)), ready_path="/ready") as service:
            port = int(service.url.rsplit(":", 1)[1])
            result = asyncio.run(post_webhooks(
                "127.0.0.1", port, bodies, first=200_000, count=PACED_REQUESTS, connections=CONNECTIONS,
                rate=PACED_RATE, record_latency=True,
            ))
        ms = [x * 1000 for x in result.latencies_s]
        out.append((percentile(ms, 50), percentile(ms, 99)))
        ctx.note("P1", f"round {round_no} paced {PACED_RATE:g} req/s: p50 {out[-1][0]:.2f} ms, p99 {out[-1][1]:.2f} ms, "
                       f"{result.accepted}/{result.sent} accepted; load average {load_average()}")
    return out
