"""End to end: two `tsrevel serve` processes on one SQLite file poll the loopback TripleSeat; each event is ordered once."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import wait_until
from tests.integration.test_catchup import CLIENT_ID, CLIENT_SECRET, event
from tsrevel.testing.servers import FakeTripleSeatServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def tripleseat():
    server = FakeTripleSeatServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, search_page_size=2)
    server.start()
    yield server
    server.stop()


def test_two_replicas_polling_and_a_late_webhook_make_one_delivery_per_version_and_one_order_per_event(
    start_service, service_env, fake_revel, tripleseat
):
    missed = [event() for _ in range(3)]
    tripleseat.events.update({str(e["id"]): e for e in missed})
    env = {**service_env, "TRIPLESEAT_API_URL": tripleseat.url, "TRIPLESEAT_CLIENT_ID": CLIENT_ID,
           "TRIPLESEAT_CLIENT_SECRET": CLIENT_SECRET, "TSREVEL_CATCHUP_INTERVAL_S": "1"}
    one, two = start_service(env), start_service(env)
    wait_until(lambda: len(fake_revel.orders) >= 3, timeout_s=30, what="the three missed events ordered")
    late = two.signed_post(json.dumps({"webhook_trigger_type": "UPDATE_EVENT", "event": missed[0]}).encode())
    assert late.json()["status"] == "duplicate"  # the poll brought this version first
    wait_until(lambda: len([r for r in tripleseat.requests if r.path == "/v1/events/search.json"]) >= 6, timeout_s=30,
               what="several more polls")
    deliveries = one.admin("GET", "/admin/deliveries", params={"limit": 100}).json()["deliveries"]
    assert sorted(d["event_id"] for d in deliveries) == sorted(str(e["id"]) for e in missed)
    assert {d["source"] for d in deliveries} == {"catchup"}
    assert sorted(o["local_id"] for o in fake_revel.orders) == sorted(f"tripleseat-{e['id']}" for e in missed)
    assert one.stop() == 0 and two.stop() == 0
