"""How much PostgreSQL a delivery costs: runs N realistic deliveries through the real use cases, then measures each table.

Standalone, not one of `make bench`'s measures (it needs a PostgreSQL server):

    python -m bench.postgres_size --url postgresql://postgres@127.0.0.1:5432/test --deliveries 20000

Each delivery is a signed-shape TripleSeat webhook (the definite example with its own event id,
contact and notes) taken through Processor.accept -> process_next -> send_next_email against a
fresh scratch schema, with the in-memory fake Revel and mailer at the edge: so every row is
written exactly as in production (delivery and body, its timeline, the ledger row, the outbox
email). With --updates-per-event K, each event also gets K later deliveries that change its
guest count (recorded as needs_attention, with an email, and no second ledger row).

Then pg_total_relation_size (heap, indexes and TOAST) of each table is printed with the linear
extrapolation to one million deliveries, twice: after a plain VACUUM ANALYZE (the space of updated
row versions stays allocated, as in service) and after VACUUM FULL (live rows only). The scratch
schema is dropped at the end. docs/deployment.md quotes the result.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from tsrevel.adapters.fakes import FakeMailer, FakeRevel
from tsrevel.adapters.mapping_toml import load_mapping_file
from tsrevel.adapters.postgres_store import PostgresStore
from tsrevel.adapters.system import SystemClock
from tsrevel.domain.processing import ProcessingSettings, Processor
from tsrevel.domain.safety import SafetyFlags

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("deliveries", "timeline", "orders", "emails", "audit", "flags", "kv", "heartbeat", "schema_version")
# The header names intake records for a TripleSeat POST (values are never stored).
HEADER_NAMES = ("accept", "accept-encoding", "connection", "content-length", "content-type", "host", "user-agent",
                "x-signature")


def payload(event_id: int, *, guest_count: int, trigger: str) -> bytes:
    event = json.loads((ROOT / "examples" / "webhook-definite.json").read_text())
    data = copy.deepcopy(event)
    data["webhook_trigger_type"] = trigger
    e = data["event"]
    e["id"] = event_id
    e["name"] = f"Catering order {event_id}"
    e["booking_id"] = 20_000_000 + event_id % 1_000_000
    e["guest_count"] = guest_count
    e["contact"]["email_addresses"] = [{"address": f"guest{event_id}@example.com"}]
    e["description"] = f"Deliver to dock {event_id % 7}; ask for the events desk. Ref {uuid.uuid4().hex[:12]}."
    return json.dumps(data).encode()


async def fill(url: str, schema: str, *, events: int, updates: int, concurrency: int) -> int:
    store = PostgresStore.from_url(url, schema=schema, max_size=concurrency + 2)
    await store.migrate()
    processor = Processor(
        store=store,
        revel=FakeRevel(),
        mapping=load_mapping_file(ROOT / "examples" / "mapping.toml"),
        boot_flags=SafetyFlags(enable_connector=True, dry_run=False),
        settings=ProcessingSettings(email_to=("ops@example.com", "kitchen@example.com")),
        clock=SystemClock(),
        mailer=FakeMailer(),
    )
    base_event = 90_000_000
    sent = 0
    try:
        for round_ in range(updates + 1):
            trigger = "STATUS_CHANGE_EVENT" if round_ == 0 else "CHANGE_EVENT_GUEST_COUNTS"
            bodies = [payload(base_event + n, guest_count=40 + round_, trigger=trigger) for n in range(events)]
            for start in range(0, len(bodies), concurrency):
                await asyncio.gather(*(
                    processor.accept(b, signature=None, correlation_id=uuid.uuid4().hex[:16], header_names=HEADER_NAMES)
                    for b in bodies[start:start + concurrency]
                ))
            sent += len(bodies)
            await drain(processor.process_next, concurrency)
            await drain(processor.send_next_email, concurrency)
            print(f"  round {round_}: {sent} deliveries stored and processed", flush=True)
    finally:
        await store.close()
    return sent


async def drain(step, concurrency: int) -> None:  # step: an async () -> object, falsy when nothing was done
    async def loop() -> None:
        while await step():
            pass

    await asyncio.gather(*(loop() for _ in range(concurrency)))


def measure(url: str, schema: str, *, full: bool) -> dict[str, tuple[int, int]]:
    """(rows, bytes) per table, after VACUUM ANALYZE (space of updated rows kept) or VACUUM FULL (live rows only)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        for table in TABLES:
            vacuum = "VACUUM (FULL, ANALYZE) {}" if full else "VACUUM (ANALYZE) {}"
            conn.execute(sql.SQL(vacuum).format(sql.Identifier(table)))
        sizes = {}
        for table in TABLES:
            rows = conn.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(table))).fetchone()[0]
            size = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (f"{schema}.{table}",)).fetchone()[0]
            sizes[table] = (rows, size)
        return sizes


def report(title: str, sizes: dict[str, tuple[int, int]], deliveries: int) -> None:
    total = sum(size for _, size in sizes.values())
    print(f"\n{title}")
    print(f"{'table':<16}{'rows':>10}{'bytes':>14}{'bytes/delivery':>16}{'GB per 1M deliveries':>22}")
    for table, (rows, size) in sizes.items():
        per = size / deliveries
        print(f"{table:<16}{rows:>10}{size:>14}{per:>16.0f}{per * 1e6 / 1e9:>22.2f}")
    per = total / deliveries
    print(f"{'total':<16}{'':>10}{total:>14}{per:>16.0f}{per * 1e6 / 1e9:>22.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="a PostgreSQL URL; a scratch schema is created and dropped in it")
    parser.add_argument("--deliveries", type=int, default=20_000)
    parser.add_argument("--updates-per-event", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    events = args.deliveries // (args.updates_per_event + 1)
    schema = f"tsrevel_size_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(args.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        started = time.monotonic()
        print(f"{events} events x {args.updates_per_event + 1} deliveries into schema {schema}", flush=True)
        sent = asyncio.run(fill(args.url, schema, events=events, updates=args.updates_per_event,
                                concurrency=args.concurrency))
        print(f"filled in {time.monotonic() - started:.0f}s", flush=True)
        report("as the workload leaves it (plain VACUUM: space of updated row versions stays allocated)",
               measure(args.url, schema, full=False), sent)
        report("live rows only (VACUUM FULL)", measure(args.url, schema, full=True), sent)
    finally:
        with psycopg.connect(args.url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


if __name__ == "__main__":
    main()
