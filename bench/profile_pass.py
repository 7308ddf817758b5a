"""An unmeasured extra pass of P1, P2 and P7 under py-spy, so that docs/performance.md shows where the time goes today.

P1 is sampled under wrk as in its measured rounds; for P2 the webhooks are stored first (kill
switch off, so they are held), then the switch goes on, they are replayed, and the worker is
sampled while it turns them into orders: the per-order processing cost, without intake mixed in.
P7 is sampled the same way, in DRY_RUN (bench/p7_drain.py's backlog, replayed).

Sampling perturbs what it samples, so it never runs during a measured round. The summaries keep
the frames that explain the cost (our code, the SQLite store, Litestar, httpx, logging).
"""

from __future__ import annotations

import asyncio

from bench.common import Context, admin, poll, running, service_env, start_service
from bench.loadgen import post_webhooks
from bench.p1_intake import CONNECTIONS
from bench.p2_end_to_end import fake_revel
from bench.payloads import WebhookBodies
from bench.profiling import Profile, finish_recording, py_spy, start_recording
from bench.wrk_load import run_wrk, write_script

# Only the thread holding the GIL is sampled: one process's Python runs on one core at a time, and
# that core is what P1 and P2 run out of. (SQLite's C code runs outside the GIL and is not shown.)
GIL = ("--gil",)
# Frames below the event loop (runpy, click, uvicorn.run, cli.serve) are on every stack and say nothing.
BORING = ("(tsrevel/__main__.py)", "(tsrevel/entrypoints/cli.py)", "(bench/service_app.py)")
INTERESTING = (
    "tsrevel/", "sqlite", "litestar/routes", "litestar/_kwargs", "litestar/response", "litestar/middleware",
    "httpx/_client", "httpcore/_async/connection_pool", "h11_impl", "logging/__init__", "json/", "concurrent/futures",
    "selector_events", "EpollSelector",
)


def intake_profile(ctx: Context, seconds: float) -> Profile | None:
    scratch = ctx.scratch("profile-p1")
    bodies = WebhookBodies()
    script = write_script(scratch / "profile.lua", bodies, 40_000)
    with running(start_service(scratch, service_env(scratch, dry_run=True)), ready_path="/ready") as service:
        run_wrk(service.url, script, connections=CONNECTIONS, duration_s=1, start=30_000)
        recorder = start_recording(service.pid, scratch / "p1.txt", duration_s=seconds, extra=GIL)
        run_wrk(service.url, script, connections=CONNECTIONS, duration_s=seconds + 1, start=0)
        return finish_recording(recorder, scratch / "p1.txt")


def processing_profile(ctx: Context, seconds: float) -> Profile | None:
    """The worker alone: webhooks stored with the kill switch off (held), then switched on and replayed, then sampled draining."""
    scratch = ctx.scratch("profile-p2")
    count = 1000 if ctx.quick else 2000
    with running(fake_revel(scratch), ready_path="/__stats") as revel:
        env = service_env(scratch, dry_run=False, revel_url=revel.url, REVEL_MIN_INTERVAL_S="0", ENABLE_CONNECTOR="false")
        with running(start_service(scratch, env), ready_path="/ready") as service:
            port = int(service.url.rsplit(":", 1)[1])
            asyncio.run(post_webhooks("127.0.0.1", port, WebhookBodies(), first=0, count=count, connections=8))
            poll(lambda: admin(service.url, "GET", "/admin/status").json()["counts"].get("held", 0) >= count, timeout_s=60)
            admin(service.url, "PUT", "/admin/flags", json={"enable_connector": True, "reason": "profile pass"})
            recorder = start_recording(service.pid, scratch / "p2.txt", duration_s=seconds, extra=GIL)
            admin(service.url, "POST", "/admin/replay", json={"state": "held"})
            return finish_recording(recorder, scratch / "p2.txt")


def drain_profile(ctx: Context, seconds: float) -> Profile | None:
    """P7: a DRY_RUN service sampled while it drains a replayed backlog of held deliveries (bench/p7_drain.py)."""
    from bench.p7_drain import drain, held_service

    scratch = ctx.scratch("profile-p7")
    count = 1000 if ctx.quick else 2000
    recorder: list = []
    with running(held_service(scratch), ready_path="/ready") as service:
        def start() -> None:
            recorder.append(start_recording(service.pid, scratch / "p7.txt", duration_s=seconds, extra=GIL))

        drain(service, scratch, count, 0, timeout_s=120, before_replay=start)
        return finish_recording(recorder[0] if recorder else None, scratch / "p7.txt")


def run(ctx: Context) -> dict[str, Profile | None]:
    if py_spy() is None:
        ctx.note("profile", "py-spy is not installed (pip install -e '.[bench]'): no profile this run")
        return {}
    seconds = 3.0 if ctx.quick else 6.0
    return {
        "P1 intake (worker on)": intake_profile(ctx, seconds),
        "P2 processing: the worker draining new orders to the fake Revel (intake done beforehand)": processing_profile(ctx, seconds),
        "P7 DRY_RUN backlog drain (held deliveries replayed, nothing else arriving)": drain_profile(ctx, seconds),
    }
