"""Three `tsrevel serve` replicas on one PostgreSQL database: one order per event, a shared kill switch, crash takeover.

Each test starts three service processes on their own ports, sharing a fresh schema (dropped
afterwards) and one fake Revel and SendGrid. Every wait is a bounded poll.
"""

from __future__ import annotations

import concurrent.futures
import copy
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Service, wait_until
from tests.helpers import body, definite, random_event_id
from tests.postgres_db import postgres_url, scratch_schema, url_with_search_path
from tsrevel.domain.deliveries import PENDING_STATES
from tsrevel.testing.servers import FakeRevelServer

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

REPLICAS = 3


@pytest.fixture
def shared_database() -> Iterator[str]:
    """TSREVEL_DATABASE_URL for a fresh schema, the way an operator would write it."""
    url = postgres_url()
    with scratch_schema(url) as schema:
        yield url_with_search_path(url, schema)


@pytest.fixture
def start_replicas(
    shared_database: str, start_service: Callable[..., Service], service_env: dict[str, str]
) -> Iterator[Callable[..., list[Service]]]:
    # shared_database is requested first so that it is torn down last: the replicas stop before
    # their schema is dropped.
    started: list[Service] = []

    def start(*extra_env: dict[str, str]) -> list[Service]:
        envs = [{**service_env, "TSREVEL_DATABASE_URL": shared_database, **(extra_env[i] if i < len(extra_env) else {})}
                for i in range(REPLICAS)]
        # Started together, so their migrations really race (the advisory lock lets one through at a time).
        replicas = [start_service(env, wait_ready=False) for env in envs]
        started.extend(replicas)
        for n, env in enumerate(envs):
            for _ in range(3):
                replica = replicas[n]
                wait_until(lambda r=replica: r.process.poll() is not None or _ready(r), timeout_s=30,
                           what=f"replica {replica.url} to answer /ready")
                if replica.process.poll() is None:
                    break
                # free_port() can race another process on a busy machine: take a new port.
                assert "address already in use" in replica.log_path.read_text(), replica.log_path.read_text()[-3000:]
                replicas[n] = start_service(env, wait_ready=False)
                started.append(replicas[n])
            assert replicas[n].process.poll() is None, replicas[n].log_path.read_text()[-3000:]
        return replicas

    yield start
    stop_together(started)


def stop_together(replicas: list[Service]) -> list[int]:
    """SIGTERM every replica at once (as an orchestrator rolling them would), then collect exit codes."""
    for replica in replicas:
        if replica.process.poll() is None:
            replica.process.send_signal(signal.SIGTERM)
    codes = []
    for replica in replicas:
        try:
            codes.append(replica.process.wait(timeout=20))
        except subprocess.TimeoutExpired:
            replica.process.kill()
            codes.append(replica.process.wait(timeout=5))
    return codes


def _ready(service: Service) -> bool:
    return httpx.get(service.url + "/ready", timeout=2).status_code == 200


def post_all(replicas: list[Service], bodies: list[bytes]) -> list[httpx.Response]:
    """Send every body concurrently, the k-th to replica k mod 3."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=24) as pool:
        return list(pool.map(lambda kb: replicas[kb[0] % len(replicas)].signed_post(kb[1]), enumerate(bodies)))


def counts(service: Service) -> dict[str, int]:
    return service.admin("GET", "/admin/status").json()["counts"]


def wait_settled(service: Service, total: int, *, timeout_s: float) -> dict[str, int]:
    """Wait until the database holds `total` deliveries and none of them is pending."""
    return wait_until(
        lambda: (c if sum((c := counts(service)).values()) == total and not set(c) & PENDING_STATES else None),
        timeout_s=timeout_s, what=f"{total} deliveries, none pending",
    )


def assert_one_order_per_event(fake_revel: FakeRevelServer, event_ids: list[int]) -> None:
    local_ids = Counter(order["local_id"] for order in fake_revel.orders)
    duplicated = {ref: n for ref, n in local_ids.items() if n > 1}
    assert not duplicated, f"duplicate orders at Revel: {duplicated}"
    assert set(local_ids) == {f"tripleseat-{e}" for e in event_ids}
    creates = [r for r in fake_revel.requests if r.method == "POST"]
    assert len(creates) == len(event_ids)


def four_deliveries(event_id: int) -> list[dict[str, Any]]:
    """The same body twice, an update with another trigger, and a guest-count change: all one event."""
    first = definite(event_id)
    update = copy.deepcopy(first)
    update["webhook_trigger_type"] = "UPDATE_EVENT"
    guests = definite(event_id, guest_count=first["event"]["guest_count"] + 12)
    guests["webhook_trigger_type"] = "CHANGE_EVENT_GUEST_COUNTS"
    return [first, first, update, guests]


def test_fifty_events_times_four_deliveries_across_three_replicas_make_fifty_orders(start_replicas, fake_revel):
    replicas = start_replicas()
    event_ids = [random_event_id() for _ in range(50)]
    bodies = [body(payload) for e in event_ids for payload in four_deliveries(e)]
    random.Random(20250314).shuffle(bodies)  # duplicates and updates of one event arrive interleaved

    answers = post_all(replicas, bodies)

    assert [a.status_code for a in answers] == [200] * 200
    statuses = Counter(a.json()["status"] for a in answers)
    assert statuses == {"accepted": 150, "duplicate": 50}
    final = wait_settled(replicas[0], 150, timeout_s=60)
    assert set(final) <= {"done", "needs_attention"}, final  # every delivery terminal, none dead
    assert_one_order_per_event(fake_revel, event_ids)
    # Every replica reads the same database, and each stops cleanly on SIGTERM.
    assert all(counts(r) == final for r in replicas[1:])
    assert stop_together(replicas) == [0] * REPLICAS


def test_the_kill_switch_flipped_on_one_replica_holds_work_sent_to_every_replica(start_replicas, fake_revel, fake_sendgrid):
    replicas = start_replicas()
    flipped = replicas[0].admin("PUT", "/admin/flags", json={"enable_connector": False, "reason": "e2e incident drill"})
    assert flipped.status_code == 200, flipped.text
    time.sleep(1.1)  # the contract: effective on every replica within 1 s
    assert [httpx.get(r.url + "/health", timeout=5).json()["enable_connector"] for r in replicas] == [False] * REPLICAS
    revel_calls, sendgrid_calls = len(fake_revel.requests), len(fake_sendgrid.requests)

    event_ids = [random_event_id() for _ in range(24)]
    answers = post_all(replicas, [body(definite(e)) for e in event_ids])

    assert [a.json()["status"] for a in answers] == ["accepted"] * 24
    assert wait_settled(replicas[2], 24, timeout_s=30) == {"held": 24}
    assert (len(fake_revel.requests), len(fake_sendgrid.requests)) == (revel_calls, sendgrid_calls)

    # Switched back on through another replica and replayed through a third: each event ordered once.
    assert replicas[1].admin("DELETE", "/admin/flags").status_code == 200
    assert replicas[2].admin("POST", "/admin/replay", json={"state": "held"}).json()["count"] == 24
    assert wait_settled(replicas[0], 24, timeout_s=30) == {"done": 24}
    assert_one_order_per_event(fake_revel, event_ids)


def test_a_replica_killed_holding_a_claim_has_its_work_finished_by_another(start_replicas, fake_revel):
    # The third replica dies (as under SIGKILL) right before its Revel create, holding a 2-second
    # lease; the other two must take its delivery over once the lease expires.
    crashing = {"TSREVEL_TEST_CRASH_AT": "before_revel_call", "TSREVEL_LEASE_S": "2"}
    survivor = {"TSREVEL_POLL_INTERVAL_S": "0.5"}
    replicas = start_replicas(survivor, survivor, crashing)
    victim = replicas[2]
    event_ids: list[int] = []
    # /test/webhook stores the delivery and claims it in the same request, so the victim holds the
    # claim unless a survivor's poll lands inside that one round trip; then the next event retries.
    for _ in range(3):
        event_ids.append(random_event_id())
        try:
            victim.admin("POST", "/test/webhook", content=body(definite(event_ids[-1])))
        except httpx.TransportError:
            pass  # the victim died mid-request, as intended
        if exits_within(victim, 8.0):
            break
    assert victim.process.returncode == 137, "the crashing replica never held a claim"

    assert wait_settled(replicas[0], len(event_ids), timeout_s=30) == {"done": len(event_ids)}
    assert_one_order_per_event(fake_revel, event_ids)
    listed = replicas[1].admin("GET", "/admin/deliveries").json()["deliveries"]
    [victims_delivery] = [d["id"] for d in listed if d["event_id"] == str(event_ids[-1])]
    timeline = replicas[1].delivery(victims_delivery)["timeline"]
    at = {entry["note"]: datetime.fromisoformat(entry["at"]) for entry in timeline}
    assert "claimed after lease expired" in at, [entry["note"] for entry in timeline]
    waited = (at["claimed after lease expired"] - at["claimed"]).total_seconds()
    assert waited >= 2.0, f"taken over {waited}s after the claim, before the 2 s lease ran out"


def exits_within(service: Service, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            return True
        time.sleep(0.05)
    return False
