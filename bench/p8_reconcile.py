"""P8 reconcile: Revel requests for `tsrevel reconcile` over 2 years holding 100 orders, at the loopback fake Revel.

`tsrevel reconcile --from 2024-01-01 --to 2025-12-31` runs as a subprocess against a fresh
(migrated, empty) SQLite store and a loopback fake Revel holding 100 tripleseat-* orders spread over the two years
in the mapping's two establishments; the fake counts the requests it answers. The same run with
`--chunk-days 1` (the previous behaviour: one window a day) is shown beside it. A count, not a
timing: the wall time of each run is noted for information.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from bench.common import MAPPING_FILE, REVEL_KEY, REVEL_SECRET, Context, Row, base_env, median
from tsrevel.adapters.sqlite_store import SqliteStore
from tsrevel.testing.servers import FakeRevelServer

FIRST_DAY, LAST_DAY = date(2024, 1, 1), date(2025, 12, 31)
ORDERS = 100
TARGET = 10


def _fill(revel: FakeRevelServer) -> None:
    span = (LAST_DAY - FIRST_DAY).days
    for n in range(ORDERS):
        day = FIRST_DAY + timedelta(days=n * span // (ORDERS - 1))
        revel.add_order(f"tripleseat-{80_000_000 + n}", establishment_id=4 if n % 2 else 5,
                        created_date=f"{day.isoformat()}T{n % 24:02d}:30:00")


async def _new_database(path: Path) -> None:
    """An empty, migrated database, as a service leaves it: operator commands never create one (issue 11)."""
    store = SqliteStore(path)
    try:
        await store.migrate()
    finally:
        await store.close()


def _reconcile(ctx: Context, revel: FakeRevelServer, *extra: str) -> tuple[int, float]:
    scratch = ctx.scratch("p8")
    asyncio.run(_new_database(scratch / "tsrevel.db"))
    env = {**base_env(), "TSREVEL_DATABASE_URL": f"sqlite:///{scratch / 'tsrevel.db'}", "TSREVEL_MAPPING_FILE": str(MAPPING_FILE),
           "REVEL_BASE_URL": revel.url, "REVEL_API_KEY": REVEL_KEY, "REVEL_API_SECRET": REVEL_SECRET, "REVEL_MIN_INTERVAL_S": "0"}
    before = len(revel.requests)
    t0 = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "tsrevel", "reconcile", "--from", FIRST_DAY.isoformat(), "--to", LAST_DAY.isoformat(), *extra],
        env=env, capture_output=True, text=True, timeout=600, cwd=os.getcwd(),
    )
    elapsed = time.monotonic() - t0
    if done.returncode not in (0, 1) or f"{ORDERS} Revel order(s)" not in done.stdout:
        raise RuntimeError(f"reconcile exited {done.returncode}: {done.stdout[-400:]} {done.stderr[-400:]}")
    return len(revel.requests) - before, elapsed


def run(ctx: Context) -> list[Row]:
    revel = FakeRevelServer(api_key=REVEL_KEY, api_secret=REVEL_SECRET, establishments=[(4, "Tropicana"), (5, "Harbor Room")])
    with revel:
        _fill(revel)
        paged = [_reconcile(ctx, revel) for _ in range(ctx.runs)]
        daily = _reconcile(ctx, revel, "--chunk-days", "1")
    requests = [float(n) for n, _ in paged]
    ctx.note("P8", f"{ORDERS} orders over {FIRST_DAY}..{LAST_DAY} in establishments 4 and 5; paged runs took "
             + ", ".join(f"{s:.2f}" for _, s in paged) + f" s; --chunk-days 1 took {daily[1]:.1f} s for {daily[0]} requests")
    return [
        Row("P8", f"Revel requests, reconcile over 2 years holding {ORDERS} orders", f"{median(requests):.0f}", f"<= {TARGET}",
            median(requests) <= TARGET, requests),
        Row("P8", "  the same with --chunk-days 1 (one window a day, as before)", f"{daily[0]}", runs=[float(daily[0])]),
    ]
