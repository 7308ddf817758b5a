"""Catch-up sync against the loopback fake TripleSeat: the poll, sync by event id, and replicas sharing a store.

Each "node" is the service's own container (real store, real TripleSeat adapter over HTTP) with a
fake Revel shared by every node, so "one order" means one order across replicas.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from dependency_injector import providers

from tests.helpers import definite
from tests.integration.conftest import SIGNING_SECRET, make_settings
from tests.postgres_db import postgres_url, scratch_schema, url_with_search_path
from tsrevel.adapters.fakes import FakeMailer, FakeRevel
from tsrevel.adapters.tripleseat_api import HttpxTripleSeatSource
from tsrevel.domain import catchup
from tsrevel.domain import deliveries as st
from tsrevel.domain.errors import GatewayError, InvalidRequest, NotFound
from tsrevel.domain.processing import Processor
from tsrevel.domain.signature import sign_body
from tsrevel.entrypoints.container import build_container
from tsrevel.entrypoints.settings import Settings
from tsrevel.testing.servers import FakeTripleSeatServer, ServerFault

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

CLIENT_ID, CLIENT_SECRET = "ts-client", "ts-secret"
UTC = timezone.utc


def stamp(minutes_ago: float = 0) -> str:
    """An updated_at as TripleSeat writes it, recent enough for the look-back window."""
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).strftime("%m/%d/%Y %I:%M %p")


def event(**changes: Any) -> dict[str, Any]:
    """A full event object (with documents), as the API serves it, updated a moment ago."""
    return definite(updated_at=stamp(5), **changes)["event"]


def webhook_for(obj: dict[str, Any], trigger: str = "UPDATE_EVENT") -> bytes:
    return json.dumps({"webhook_trigger_type": trigger, "event": obj}).encode()


@pytest.fixture
def tripleseat():
    server = FakeTripleSeatServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, search_page_size=2)
    server.start()
    yield server
    server.stop()


@attrs.define
class Node:
    processor: Processor
    revel: FakeRevel

    async def drain(self) -> None:
        while await self.processor.process_next() is not None:
            pass

    async def poll(self, holder: str = "node") -> catchup.PollReport | None:
        now = self.processor.clock.now()
        return await catchup.catch_up(self.processor, since=now - timedelta(hours=48), holder=holder)

    async def webhook(self, body: bytes) -> Any:
        return await self.processor.accept(body, signature=sign_body(body, secret=SIGNING_SECRET), correlation_id="hook")

    async def deliveries(self, event_id: object) -> list[st.Delivery]:
        return await self.processor.store.list_deliveries(event_id=str(event_id), limit=100)


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


@asynccontextmanager
async def node(settings: Settings, revel: FakeRevel) -> AsyncIterator[Node]:
    container = build_container(settings)
    container.revel.override(providers.Object(revel))
    container.mailer.override(providers.Object(FakeMailer()))
    await _resolve(container.init_resources())
    try:
        yield Node(await _resolve(container.processor()), revel)
    finally:
        await _resolve(container.shutdown_resources())


@pytest.fixture
def settings(tmp_path: Path, tripleseat: FakeTripleSeatServer) -> Settings:
    return make_settings(
        tmp_path, tripleseat_api_url=tripleseat.url, tripleseat_client_id=CLIENT_ID, tripleseat_client_secret=CLIENT_SECRET
    )


@pytest.fixture
async def one(settings: Settings) -> AsyncIterator[Node]:
    async with node(settings, FakeRevel()) as n:
        yield n


class TestThePoll:
    async def test_an_event_changed_while_no_webhook_came_is_found_and_ordered_once(self, one, tripleseat):
        missed = event()
        tripleseat.events[str(missed["id"])] = missed
        report = await one.poll()
        assert report is not None and report.deliveries_created == 1 and report.errors == ()
        await one.drain()
        [delivery] = await one.deliveries(missed["id"])
        assert (delivery.source, delivery.state) == (st.SOURCE_CATCHUP, st.DONE)
        revel = one.revel
        assert [o.local_id for o in revel.created] == [f"tripleseat-{missed['id']}"]
        assert [line.product_id for line in revel.created[0].items] == [580, 590, 601]  # the fetched financials
        again = await one.poll()
        assert again is not None and again.deliveries_created == 0 and again.already_seen >= 1
        await one.drain()
        assert len(revel.created) == 1

    async def test_the_search_is_read_to_its_last_page_and_partial_events_are_fetched_with_financials(self, one, tripleseat):
        events = [event() for _ in range(5)]  # 3 pages of 2
        tripleseat.events.update({str(e["id"]): e for e in events})
        report = await one.poll()
        assert report is not None and report.events_seen == 5 and report.deliveries_created == 5
        searches = [r for r in tripleseat.requests if r.path == "/v1/events/search.json"]
        assert [r.param("page") for r in searches] == ["1", "2", "3"]
        day = (datetime.now(UTC) - timedelta(hours=48)).astimezone(__import__("zoneinfo").ZoneInfo("America/Los_Angeles"))
        assert {r.param("event_updated_start_date") for r in searches} == {day.strftime("%m/%d/%Y")}
        fetched = [r for r in tripleseat.requests if r.path.startswith("/v1/events/") and r.path != "/v1/events/search.json"]
        assert sorted(r.path for r in fetched) == sorted(f"/v1/events/{e['id']}.json" for e in events)
        assert {r.param("show_financial") for r in fetched} == {"true"}

    async def test_a_429_on_a_search_page_is_waited_out(self, one, tripleseat):
        missed = event()
        tripleseat.events[str(missed["id"])] = missed
        tripleseat.script(ServerFault.rate_limited(1, path="/v1/events/search.json"))
        report = await one.poll()
        assert report is not None and report.errors == () and report.deliveries_created == 1
        assert len([r for r in tripleseat.requests if r.path == "/v1/events/search.json"]) == 2

    async def test_a_search_that_keeps_failing_is_reported_not_raised(self, one, tripleseat):
        tripleseat.script(ServerFault.status(503, path="/v1/events/search.json"))
        report = await one.poll()
        assert report is not None and report.deliveries_created == 0
        assert len(report.errors) == 1 and "event search" in report.errors[0]
        assert (await catchup.last_poll(one.processor)) == report

    async def test_the_poll_holds_under_the_kill_switch(self, one, tripleseat):
        await one.processor.set_flags(enable_connector=False, dry_run=None, actor="ana", reason="incident")
        missed = event()
        tripleseat.events[str(missed["id"])] = missed
        assert (await one.poll()).deliveries_created == 1
        await one.drain()
        [held] = await one.deliveries(missed["id"])
        assert held.state == st.HELD and one.revel.calls == []
        await one.processor.set_flags(enable_connector=True, dry_run=None, actor="ana", reason="over")
        assert await one.processor.replay_state(st.HELD, actor="ana", reason="over") == 1
        await one.drain()
        assert len(one.revel.created) == 1


class TestOneDeliveryPerVersion:
    async def test_a_webhook_then_the_poll_of_the_same_version_make_one_delivery_and_one_order(self, one, tripleseat):
        obj = event()
        tripleseat.events[str(obj["id"])] = obj
        assert (await one.webhook(webhook_for(obj))).status == "accepted"
        report = await one.poll()
        assert report.deliveries_created == 0 and report.already_seen == 1
        assert not [r for r in tripleseat.requests if r.path == f"/v1/events/{obj['id']}.json"]  # seen: not even fetched
        await one.drain()
        assert [d.source for d in await one.deliveries(obj["id"])] == [st.SOURCE_WEBHOOK]
        assert len(one.revel.created) == 1

    async def test_the_poll_then_a_webhook_of_the_same_version_make_one_delivery_and_one_order(self, one, tripleseat):
        obj = event()
        tripleseat.events[str(obj["id"])] = obj
        assert (await one.poll()).deliveries_created == 1
        late = await one.webhook(webhook_for(obj, "STATUS_CHANGE_EVENT"))
        [polled] = await one.deliveries(obj["id"])
        assert late.status == "duplicate" and late.delivery_id == polled.id
        await one.drain()
        assert len(one.revel.created) == 1

    async def test_a_newer_version_is_a_second_delivery_that_change_detection_reports(self, one, tripleseat):
        obj = event()
        tripleseat.events[str(obj["id"])] = obj
        await one.webhook(webhook_for(obj))
        await one.drain()
        newer = copy.deepcopy(obj)
        newer["updated_at"] = stamp(0)  # five minutes after the first version
        newer["documents"][0]["line_items"][0]["quantity"] = "60"
        tripleseat.events[str(obj["id"])] = newer
        assert (await one.poll()).deliveries_created == 1
        await one.drain()
        first, second = sorted(await one.deliveries(obj["id"]), key=lambda d: d.id)
        assert (first.state, second.state, second.source) == (st.DONE, st.NEEDS_ATTENTION, st.SOURCE_CATCHUP)
        timeline = (await one.processor.store.get_delivery(second.id)).timeline
        assert "event changed after order" in timeline[-1].note and "48 x 3.25 -> 60 x 3.25" in timeline[-1].note
        assert len(one.revel.created) == 1


class TestSyncOneEvent:
    async def test_a_missed_event_is_ordered_once_and_the_sync_is_audited(self, one, tripleseat):
        missed = event()
        tripleseat.events[str(missed["id"])] = missed
        result = await catchup.sync_event(one.processor, str(missed["id"]), actor="ana", reason="missing in Revel")
        await one.drain()
        delivery = await one.processor.store.get_delivery(result.delivery_id)
        assert (delivery.source, delivery.state) == (st.SOURCE_SYNC, st.DONE)
        assert delivery.timeline[0].note == "stored by sync: ana: missing in Revel"
        [audit] = await one.processor.store.list_audit()
        assert (audit.actor, audit.action, audit.reason) == ("ana", "sync", "missing in Revel")
        again = await catchup.sync_event(one.processor, str(missed["id"]), actor="ana", reason="once more")
        await one.drain()
        assert (await one.processor.store.get_delivery(again.delivery_id)).state == st.DONE  # "already exists"
        assert len(one.revel.created) == 1
        assert (await one.poll()).deliveries_created == 0  # the version is seen

    async def test_an_unknown_event_id_is_refused_clearly_and_stores_nothing(self, one):
        with pytest.raises(NotFound, match="^TripleSeat has no event 424242$"):
            await catchup.sync_event(one.processor, "424242", actor="ana", reason="typo?")
        assert await one.processor.store.count_by_state() == {}

    async def test_without_the_tripleseat_api_sync_and_poll_say_what_to_set(self, tmp_path):
        async with node(make_settings(tmp_path), FakeRevel()) as bare:
            with pytest.raises(InvalidRequest, match="TRIPLESEAT_CLIENT_ID"):
                await catchup.sync_event(bare.processor, "1", actor="ana", reason="r")
            with pytest.raises(InvalidRequest, match="TRIPLESEAT_CLIENT_ID"):
                await bare.poll()


@asynccontextmanager
async def replicas(kind: str, settings: Settings) -> AsyncIterator[tuple[Node, Node, FakeRevel]]:
    """Two nodes on one database (SQLite file or a PostgreSQL schema), one Revel."""
    revel = FakeRevel()
    if kind == "sqlite":
        async with node(settings, revel) as a, node(settings, revel) as b:
            yield a, b, revel
        return
    url = postgres_url()
    with scratch_schema(url) as schema:
        shared = attrs.evolve(settings, database_url=url_with_search_path(url, schema))
        async with node(shared, revel) as a, node(shared, revel) as b:
            yield a, b, revel


REPLICA_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


class TestReplicas:
    @pytest.mark.parametrize("kind", REPLICA_KINDS)
    async def test_two_replicas_polling_give_one_delivery_per_version_and_one_order(self, kind, settings, tripleseat):
        events = [event() for _ in range(4)]
        tripleseat.events.update({str(e["id"]): e for e in events})
        async with replicas(kind, settings) as (a, b, revel):
            reports = await asyncio.gather(a.poll("a"), b.poll("b"))
            ran = [r for r in reports if r is not None]
            assert len(ran) == 1  # the lease: one poll at a time
            later = await b.poll("b")  # the lease is free again; every version is seen
            assert later is not None and later.deliveries_created == 0 and later.already_seen == 4
            await asyncio.gather(a.drain(), b.drain())
            for e in events:
                assert len(await a.deliveries(e["id"])) == 1
            assert sorted(o.local_id for o in revel.created) == sorted(f"tripleseat-{e['id']}" for e in events)

    @pytest.mark.parametrize("kind", REPLICA_KINDS)
    async def test_a_webhook_racing_the_other_replicas_poll_makes_one_delivery(self, kind, settings, tripleseat):
        obj = event()
        tripleseat.events[str(obj["id"])] = obj
        async with replicas(kind, settings) as (a, b, revel):
            hook, report = await asyncio.gather(a.webhook(webhook_for(obj)), b.poll("b"))
            assert len(await a.deliveries(obj["id"])) == 1
            await asyncio.gather(a.drain(), b.drain())
            assert len(revel.created) == 1


def service_with_missed_event(app_factory: Any, tripleseat: FakeTripleSeatServer, *, interval_s: float) -> tuple[Any, dict[str, Any]]:
    """The running app over the loopback TripleSeat, which has an event no webhook brought."""
    missed = event()
    tripleseat.events[str(missed["id"])] = missed
    app = app_factory(
        tripleseat_api_url=tripleseat.url, tripleseat_client_id=CLIENT_ID, tripleseat_client_secret=CLIENT_SECRET,
        catchup_interval_s=interval_s,
    )
    return app, missed


class TestTheWorker:
    def test_the_service_polls_at_start_and_orders_what_it_finds(self, app_factory, tripleseat):
        from tests.integration.conftest import wait_for

        app, missed = service_with_missed_event(app_factory, tripleseat, interval_s=3600.0)
        wait_for(lambda: app.revel.created, what="the polled event's order")
        status = app.client.get("/admin/status", headers=app.admin()).json()
        assert status["last_poll"]["deliveries_created"] == 1 and status["last_poll"]["errors"] == []
        metrics = app.client.get("/metrics").text
        assert 'tsrevel_catchup_last_poll_events{what="deliveries_created"} 1.0' in metrics
        assert [o.local_id for o in app.revel.created] == [f"tripleseat-{missed['id']}"]

    def test_admin_sync_answers_the_delivery_and_refuses_an_unknown_event(self, app_factory, tripleseat):
        app, missed = service_with_missed_event(app_factory, tripleseat, interval_s=0.0)
        answer = app.client.post("/admin/sync", json={"event_id": missed["id"], "reason": "missing"}, headers=app.admin())
        assert answer.status_code == 200, answer.text
        delivery = app.wait_state(answer.json()["delivery_id"], "done")
        assert delivery["source"] == "sync"
        unknown = app.client.post("/admin/sync", json={"event_id": 999, "reason": "typo"}, headers=app.admin())
        assert (unknown.status_code, unknown.json()["error"]) == (404, "TripleSeat has no event 999")
        no_reason = app.client.post("/admin/sync", json={"event_id": 999}, headers=app.admin())
        assert no_reason.status_code == 422
        assert app.client.post("/admin/sync", json={"event_id": 1, "reason": "r"}).status_code in (401, 403)
        assert len(app.revel.created) == 1

    def test_admin_sync_without_the_api_says_what_to_configure(self, app_factory):
        app = app_factory()
        answer = app.client.post("/admin/sync", json={"event_id": 1, "reason": "r"}, headers=app.admin())
        assert answer.status_code == 409 and "TRIPLESEAT_CLIENT_ID" in answer.json()["error"]


@pytest.fixture
async def source(tripleseat: FakeTripleSeatServer) -> AsyncIterator[HttpxTripleSeatSource]:
    import httpx

    async with httpx.AsyncClient(base_url=tripleseat.url) as client:
        yield HttpxTripleSeatSource(client, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


class TestTheAdapter:
    async def test_search_reads_every_page_and_fetch_data_is_the_raw_event(self, source, tripleseat):
        events = [event() for _ in range(3)]
        tripleseat.events.update({str(e["id"]): e for e in events})
        found = await source.search_events(updated_since=datetime.now(UTC).date() - timedelta(days=2), correlation_id="c")
        assert sorted(e["id"] for e in found) == sorted(e["id"] for e in events)
        assert all("documents" not in e for e in found)
        data = await source.fetch_event_data(str(events[0]["id"]), correlation_id="c")
        assert data["documents"] == events[0]["documents"]

    async def test_a_429_that_does_not_end_is_a_transient_error(self, source, tripleseat):
        tripleseat.script(ServerFault.rate_limited(0, path="/v1/events/search.json", times=10))
        with pytest.raises(GatewayError) as caught:
            await source.search_events(updated_since=datetime.now(UTC).date(), correlation_id="c")
        assert caught.value.is_transient and "rate limit" in str(caught.value)
        assert len([r for r in tripleseat.requests if r.path == "/v1/events/search.json"]) == 4  # 1 + 3 waits

    async def test_requests_start_at_most_ten_a_second(self, tripleseat):
        import httpx

        events = [event() for _ in range(3)]
        tripleseat.events.update({str(e["id"]): e for e in events})
        async with httpx.AsyncClient(base_url=tripleseat.url) as client:
            slow = HttpxTripleSeatSource(client, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, max_requests_per_s=4)
            await asyncio.gather(*(slow.fetch_event_data(str(e["id"]), correlation_id="c") for e in events))
        starts = [r.at for r in tripleseat.requests if r.path.startswith("/v1/events/")]
        gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:])]
        assert len(gaps) == 2 and min(gaps) >= 0.2  # a lower bound (1/4 s less slack): load only widens the gaps
