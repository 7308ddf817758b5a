"""What only the PostgreSQL store must show: URLs, one-time migrations, per-event exclusion across replicas, pruning.

The shared Store contract runs on PostgreSQL in test_store_contract.py; this file covers what
replicas sharing one server rely on. Every store here has its own pool, so its own server
sessions: from PostgreSQL's point of view each one is a separate replica.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from tests.postgres_db import (
    drop_schema,
    new_schema_name,
    postgres_url,
    scratch_schema,
    url_with_search_path,
)
from tsrevel.adapters.postgres_store import _EVENT_LOCK_CLASS, MIGRATIONS, PostgresStore
from tsrevel.domain.deliveries import DONE, PROCESSING, QUEUED, NewDelivery
from tsrevel.domain.errors import ConfigError, DatabaseMissing, StoreUnavailable
from tsrevel.domain.orders import OrderRef
from tsrevel.domain.verdict import Verdict
from tsrevel.domain.ports import EMAIL_PENDING, EmailMessage

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.anyio]

T0 = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)
LEASE = timedelta(seconds=60)

Opener = Callable[..., Awaitable[PostgresStore]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def url() -> str:
    return postgres_url()


@pytest.fixture
async def schema(url: str) -> AsyncIterator[str]:
    name = new_schema_name()
    yield name
    await asyncio.to_thread(drop_schema, url, name)


@pytest.fixture
async def open_store(url: str, schema: str) -> AsyncIterator[Opener]:
    """Opens separate stores (separate pools, like separate replicas) on one fresh schema."""
    opened: list[PostgresStore] = []

    async def open_(*, migrate: bool = True) -> PostgresStore:
        store = PostgresStore.from_url(url, schema=schema, max_size=4)
        opened.append(store)
        if migrate:
            await store.migrate()
        return store

    yield open_
    for store in opened:
        await store.close()


def new_delivery(event_id: str | None, n: int) -> NewDelivery:
    return NewDelivery(
        key=f"key-{event_id}-{n}",
        body=b'{"event": {}}',
        correlation_id=f"corr-{n}",
        received_at=T0,
        trigger_type="UPDATE_EVENT",
        event_id=event_id,
        state=QUEUED,
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestUrls:
    def test_postgresql_and_postgres_urls_are_accepted_without_touching_the_network(self):
        # Nothing listens there: construction must not connect.
        port = closed_port()
        for scheme in ("postgresql", "postgres"):
            store = PostgresStore.from_url(f"{scheme}://tsrevel:s3cret-pw@127.0.0.1:{port}/tsrevel", schema="tsrevel")
            assert store.schema == "tsrevel"
            assert "s3cret-pw" not in repr(store)

    def test_the_composition_root_picks_it_for_a_postgresql_database_url(self):
        from tsrevel.entrypoints.container import make_store

        store = make_store(f"postgresql://tsrevel@127.0.0.1:{closed_port()}/tsrevel")
        assert isinstance(store, PostgresStore)

    def test_a_url_of_another_kind_is_refused_without_echoing_it(self):
        for bad in ("sqlite:///x.db", "mysql://u:s3cret-pw@h/db", "postgresql://u:s3cret-pw@h/db?nonsense=1",
                    "postgresql://u:s3cret-pw@[::1/db"):
            with pytest.raises(ConfigError) as caught:
                PostgresStore.from_url(bad)
            assert "s3cret-pw" not in str(caught.value)

    def test_a_schema_name_must_be_a_plain_identifier(self):
        with pytest.raises(ConfigError, match="schema"):
            PostgresStore.from_url("postgresql://u@h/db", schema='x"; DROP TABLE deliveries; --')

    async def test_an_unreachable_server_fails_the_call_and_the_store_can_try_again(self):
        store = PostgresStore.from_url(f"postgresql://postgres@127.0.0.1:{closed_port()}/test", timeout_s=1.0)
        try:
            with pytest.raises(StoreUnavailable) as first:
                await store.check_writable()
            with pytest.raises(StoreUnavailable):
                await store.check_writable()
            assert isinstance(first.value.__cause__, psycopg.OperationalError)
        finally:
            await store.close()
        with pytest.raises(RuntimeError, match="closed"):
            await store.check_writable()

    async def test_a_url_may_choose_an_existing_schema_through_libpq_options(self, url):
        with scratch_schema(url) as name:
            store = PostgresStore.from_url(url_with_search_path(url, name))
            try:
                await store.migrate()
                await store.add_delivery(new_delivery("evt-1", 1))
            finally:
                await store.close()
            with psycopg.connect(url) as conn:
                tables = {
                    row[0]
                    for row in conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (name,))
                }
                count = conn.execute(f'SELECT COUNT(*) FROM "{name}".deliveries').fetchone()[0]
        assert {"deliveries", "timeline", "orders", "flags", "emails", "audit", "kv", "schema_version"} <= tables
        assert count == 1


class TestDurability:
    async def test_nothing_turns_synchronous_commit_off_on_the_stores_connections(self, open_store):
        """Issue 11 item 5: a commit (an acknowledged webhook) waits for the WAL flush on every connection."""
        store = await open_store()
        modes = await asyncio.gather(*(store.synchronous_mode() for _ in range(4)))
        assert modes == ["on"] * 4

    async def test_the_probe_would_see_a_lowered_synchronous_commit(self, url, schema):
        # The check can fail: a URL that lowers it is reported as it is.
        lowered = url + ("&" if "?" in url else "?") + "options=-csynchronous_commit%3Doff"
        store = PostgresStore.from_url(lowered, schema=schema)
        try:
            assert await store.synchronous_mode() == "off"
        finally:
            await store.close()


class TestNoNewEmptyDatabase:
    async def test_without_create_a_schema_without_tsrevel_tables_is_refused_and_left_empty(self, url, schema, open_store):
        """Issue 11 item 12: the operator CLI must not make a new, empty tsrevel database."""
        refusing = PostgresStore.from_url(url, schema=schema, create=False)
        try:
            with pytest.raises(DatabaseMissing, match=f"no tsrevel tables in schema {schema} of "):
                await refusing.migrate()
        finally:
            await refusing.close()
        with psycopg.connect(url) as conn:
            count = conn.execute("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = %s", (schema,)).fetchone()[0]
        assert count == 0
        await open_store()  # the service makes it
        accepting = PostgresStore.from_url(url, schema=schema, create=False)
        try:
            await accepting.migrate()
            assert await accepting.count_by_state() == {}
        finally:
            await accepting.close()


class TestMigrations:
    async def test_replicas_migrating_at_once_apply_each_migration_exactly_once(self, open_store, url, schema):
        # Without the advisory lock, concurrent CREATE TABLEs fail on PostgreSQL's catalog constraints.
        stores = [await open_store(migrate=False) for _ in range(6)]
        await asyncio.gather(*(store.migrate() for store in stores))
        await asyncio.gather(*(store.migrate() for store in stores))
        with psycopg.connect(url) as conn:
            versions = [row[0] for row in conn.execute(f'SELECT version FROM "{schema}".schema_version ORDER BY version')]
        assert versions == list(range(1, len(MIGRATIONS) + 1))

    async def test_a_database_newer_than_this_code_is_refused(self, open_store, url, schema):
        store = await open_store()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'INSERT INTO "{schema}".schema_version (version) VALUES (%s)', (len(MIGRATIONS) + 1,))
        with pytest.raises(RuntimeError, match="newer than this tsrevel knows"):
            await store.migrate()


    async def test_the_ledger_and_the_outbox_refuse_deliveries_that_do_not_exist_without_checking_old_rows(
        self, open_store, url, schema
    ):
        order = (f'INSERT INTO "{schema}".orders (event_id, reference, establishment_id, delivery_id, state, created_at,'
                 " updated_at) VALUES (%s, 'ref', 1, 999, 'pending', now(), now())")
        mail = (f'INSERT INTO "{schema}".emails (delivery_id, correlation_id, kind, subject, text, recipients, state,'
                " created_at) VALUES (999, 'c', 'failure', 's', 't', '[]', 'pending', now())")
        await open_store()
        with psycopg.connect(url, autocommit=True) as conn:
            # A database of migration 3 with an orphan row: migration 4 must not scan for it (NOT VALID).
            conn.execute(f'ALTER TABLE "{schema}".orders DROP CONSTRAINT orders_delivery_fk')
            conn.execute(f'ALTER TABLE "{schema}".emails DROP CONSTRAINT emails_delivery_fk')
            conn.execute(f'DROP INDEX "{schema}".orders_by_delivery')
            conn.execute(f'DELETE FROM "{schema}".schema_version WHERE version = 4')
            conn.execute(order, ("evt-old",))
            await open_store()  # migrates to 4
            assert conn.execute(f'SELECT count(*) FROM "{schema}".orders').fetchone()[0] == 1
            for statement, params in ((order, ("evt-new",)), (mail, None)):
                with pytest.raises(psycopg.errors.ForeignKeyViolation):
                    conn.execute(statement, params)


class TestPerEventExclusion:
    async def test_a_claim_skips_an_event_another_session_is_claiming(self, open_store, url, schema):
        store = await open_store()
        first = (await store.add_delivery(new_delivery("evt-busy", 1)))[0]
        other = (await store.add_delivery(new_delivery("evt-free", 1)))[0]
        # Another replica mid-claim on evt-busy holds its advisory lock until that claim commits.
        with psycopg.connect(url) as rival:
            rival.execute("SELECT pg_advisory_xact_lock(%s::integer, hashtext(%s))", (_EVENT_LOCK_CLASS, "evt-busy"))
            claimed = await store.claim_delivery(now=T0, lease_until=T0 + LEASE)
            assert claimed is not None and claimed.id == other.id
            assert await store.claim_delivery(now=T0, lease_until=T0 + LEASE) is None
            rival.rollback()
        claimed = await store.claim_delivery(now=T0, lease_until=T0 + LEASE)
        assert claimed is not None and claimed.id == first.id

    async def test_replicas_racing_never_lease_two_deliveries_of_one_event(self, open_store, url, schema):
        # Eight events with five deliveries each; six replicas fire 24 claims at the same instant per
        # round. Each round must lease exactly one delivery of every event that has work left: never
        # two (exclusion), never none (no event starved by the race).
        events = [f"evt-{n}" for n in range(8)]
        stores = [await open_store() for _ in range(6)]
        for n in range(5):
            for event_id in events:
                await stores[0].add_delivery(new_delivery(event_id, n))
        remaining = Counter({event_id: 5 for event_id in events})
        for round_ in range(5):
            now = T0 + timedelta(seconds=round_)
            claims = await asyncio.gather(
                *(s.claim_delivery(now=now, lease_until=now + LEASE) for s in stores for _ in range(4))
            )
            claimed = [c for c in claims if c is not None]
            per_event = Counter(c.event_id for c in claimed)
            doubled = {e: n for e, n in per_event.items() if n > 1}
            assert not doubled, f"round {round_}: events leased twice at once: {doubled}"
            assert set(per_event) == {e for e, left in remaining.items() if left}, f"round {round_}: an event starved"
            with psycopg.connect(url) as conn:
                leased = conn.execute(
                    f'SELECT event_id, COUNT(*) FROM "{schema}".deliveries WHERE state = %s GROUP BY event_id',
                    (PROCESSING,),
                ).fetchall()
            assert all(count == 1 for _, count in leased)
            for delivery in claimed:
                assert await stores[1].finish(delivery.id, token=delivery.lease_token, now=now,
                                              outcome=Verdict(state=DONE, note="done"))
                remaining[delivery.event_id] -= 1
        assert await stores[2].count_by_state() == {DONE: 40}


class TestLedgerAndFlags:
    async def test_the_database_itself_refuses_a_second_ledger_row_for_an_event(self, open_store, url, schema):
        store = await open_store()
        for n in (1, 2):  # the ledger's rows must point at real deliveries (ids 1 and 2)
            await store.add_delivery(new_delivery(f"evt-{n}", n))
        with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.UniqueViolation):
            for delivery_id in (1, 2):
                conn.execute(
                    f"""INSERT INTO "{schema}".orders (event_id, reference, establishment_id, delivery_id, state,
                                                      created_at, updated_at)
                        VALUES ('evt-1', 'tripleseat-evt-1', 4, %s, 'pending', now(), now())""",
                    (delivery_id,),
                )

    async def test_flags_are_read_from_the_database_on_every_call(self, open_store, url, schema):
        store = await open_store()
        await store.set_flags(enable_connector=True, dry_run=None, actor="ana", reason="go", now=T0)
        assert (await store.get_flags()).enable_connector is True
        # Another replica's write, seen with no cache in between.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'UPDATE "{schema}".flags SET enable_connector = false')
        assert (await store.get_flags()).enable_connector is False


class TestPruning:
    async def test_pruning_keeps_a_delivery_that_owns_the_ledger_row_and_an_unsent_email(self, open_store):
        store = await open_store()
        delivery, _ = await store.add_delivery(new_delivery("evt-1", 1))
        claimed = await store.claim_delivery(now=T0, lease_until=T0 + LEASE)
        assert claimed is not None
        await store.reserve_order(event_id="evt-1", reference="tripleseat-evt-1", establishment_id=4,
                                  delivery_id=delivery.id, token=claimed.lease_token, now=T0)
        message = EmailMessage(kind="order_created", subject="s", text="t", delivery_id=delivery.id, correlation_id="c")
        assert await store.complete_order(event_id="evt-1", delivery_id=delivery.id, token=claimed.lease_token,
                                          ref=OrderRef(77), snapshot="{}", now=T0, note="created", emails=[message])
        assert await store.prune_history(older_than=T0 + timedelta(days=1)) == 0
        assert (await store.get_order("evt-1")).revel_order_id == 77
        assert [e.state for e in await store.list_emails()] == [EMAIL_PENDING]
        assert await store.count_by_state() == {DONE: 1}

    async def test_pruning_works_through_a_backlog_larger_than_one_batch(self, open_store, monkeypatch):
        monkeypatch.setattr(PostgresStore, "_prune_batch", 3)
        store = await open_store()
        for n in range(7):
            await store.add_delivery(new_delivery(f"evt-{n}", n))
            claimed = await store.claim_delivery(now=T0, lease_until=T0 + LEASE)
            assert claimed is not None
            await store.finish(claimed.id, token=claimed.lease_token, now=T0, outcome=Verdict(state=DONE, note="done"))
        await store.add_delivery(new_delivery("evt-pending", 99))
        assert await store.prune_history(older_than=T0 + timedelta(seconds=1)) == 7
        assert await store.count_by_state() == {QUEUED: 1}
