"""R5-R9: Revel failing in every scripted way, through the real HttpxRevelGateway, SQLite store and worker."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from tests.e2e.conftest import free_port
from tests.helpers import body, definite
from tests.reliability.conftest import (
    CREATE_PATH,
    ORDERS_PATH,
    creates,
    orders_by_local_id,
    parse_iso,
    query_db,
    wait_until,
    wall,
)
from tsrevel.domain.retry import RetryPolicy
from tsrevel.testing.servers import ServerFault

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

_NEXT_AT = re.compile(r"^attempt (\d+) failed .*; next attempt at (\S+)$", re.S)


def lookups(revel) -> list:
    return [r for r in revel.requests if r.method == "GET" and r.path == ORDERS_PATH]


def scheduled_retries(delivery: dict) -> list[tuple[int, datetime, datetime]]:
    """(attempt, when it failed, when the next attempt is due) from the delivery's timeline."""
    out = []
    for entry in delivery["timeline"]:
        match = _NEXT_AT.match(entry["note"]) if entry["state"] == "retrying" else None
        if match:
            out.append((int(match.group(1)), parse_iso(entry["at"]), parse_iso(match.group(2))))
    return out


class TestCreateThenStall:
    def test_R5_revel_stores_the_order_then_times_out_and_the_lookup_finds_it(self, real_app, fake_revel):
        fake_revel.script(ServerFault.create_then_stall(30, path=CREATE_PATH))
        app = real_app(revel_timeout_s=0.5)
        payload = definite()
        answer = app.signed_post(body(payload)).json()
        delivery = app.wait_state(answer["delivery_id"], "done")
        ref = f"tripleseat-{payload['event']['id']}"
        assert [(r.method, r.path) for r in fake_revel.requests] == [
            ("GET", ORDERS_PATH), ("POST", CREATE_PATH), ("GET", ORDERS_PATH),
        ]
        assert orders_by_local_id(fake_revel) == {ref: 1}
        assert any("timed out" in e["note"] for e in delivery["timeline"])
        assert delivery["order"]["revel_order_id"] == fake_revel.orders[0]["id"]
        assert any(e["note"].startswith("found existing Revel order") for e in delivery["timeline"])


class TestTransientFailures:
    def test_R6_500_502_503_504_reset_and_timeout_then_ok_make_exactly_one_order_within_the_jitter_envelope(self, real_app, fake_revel):
        fake_revel.script(
            ServerFault.status(500, path=CREATE_PATH),
            ServerFault.status(502, path=CREATE_PATH),
            ServerFault.status(503, path=CREATE_PATH),
            ServerFault.status(504, path=CREATE_PATH),
            ServerFault.reset(path=CREATE_PATH),
            ServerFault.hang(30, path=ORDERS_PATH),  # a lookup that times out
        )
        app = real_app(revel_timeout_s=0.5)
        payload = definite()
        answer = app.signed_post(body(payload)).json()
        delivery = app.wait_state(answer["delivery_id"], "done", timeout_s=30)
        assert fake_revel.pending_faults == []
        assert orders_by_local_id(fake_revel) == {f"tripleseat-{payload['event']['id']}": 1}
        assert len(creates(fake_revel)) == 6  # 5 failed creates (4 statuses, 1 reset) and the one that worked
        assert delivery["attempts"] == 6

        policy = RetryPolicy(base_s=app.settings.retry_base_s, cap_s=app.settings.retry_cap_s)
        retries = scheduled_retries(delivery)
        assert [n for n, _, _ in retries] == [1, 2, 3, 4, 5, 6]
        for attempt, failed_at, due in retries:
            # Full jitter: due - now is a draw in [0, min(cap, base * 2^(n-1))].
            assert due - failed_at <= timedelta(seconds=policy.envelope_s(attempt)), (attempt, failed_at, due)
        # Each attempt starts with a lookup; none started before the moment the store scheduled it.
        starts = lookups(fake_revel)
        assert len(starts) == 7
        for (_, _, due), start in zip(retries, starts[1:], strict=True):
            assert wall(start.at) >= due.timestamp() - 0.01


class TestRateLimits:
    def test_R7_retry_after_in_seconds_is_not_undercut(self, real_app, fake_revel):
        fake_revel.script(ServerFault.rate_limited(2, path=ORDERS_PATH))
        app = real_app()
        answer = app.signed_post(body(definite())).json()
        app.wait_state(answer["delivery_id"], "done", timeout_s=20)
        first, second = lookups(fake_revel)[:2]
        assert second.at - first.at >= 2.0
        assert len(fake_revel.orders) == 1

    def test_R7_retry_after_as_an_http_date_is_not_undercut(self, real_app, fake_revel):
        moment = (datetime.now(timezone.utc) + timedelta(seconds=3)).replace(microsecond=0)
        fake_revel.script(ServerFault.rate_limited(format_datetime(moment, usegmt=True), path=ORDERS_PATH))
        app = real_app()
        answer = app.signed_post(body(definite())).json()
        retrying = app.wait_state(answer["delivery_id"], "retrying", "done")
        if retrying["state"] == "retrying":
            assert parse_iso(retrying["next_attempt_at"]) >= moment
        app.wait_state(answer["delivery_id"], "done", timeout_s=20)
        second = lookups(fake_revel)[1]
        assert wall(second.at) >= moment.timestamp() - 0.01
        assert len(fake_revel.orders) == 1

    def test_R7_a_huge_retry_after_is_capped_by_TSREVEL_RETRY_AFTER_CAP_S(self, real_app, fake_revel):
        fake_revel.script(ServerFault.rate_limited(10_000_000, path=ORDERS_PATH))
        app = real_app(retry_after_cap_s=1.0)
        answer = app.signed_post(body(definite())).json()
        delivery = app.wait_state(answer["delivery_id"], "done", timeout_s=20)  # not in 115 days
        [(_, failed_at, due)] = scheduled_retries(delivery)
        assert due - failed_at <= timedelta(seconds=1.0)
        first, second = lookups(fake_revel)[:2]
        assert second.at - first.at >= 1.0 - 0.01  # the cap is still a Retry-After: honoured in full
        assert len(fake_revel.orders) == 1


class TestPermanentFailures:
    @pytest.mark.parametrize("status", [400, 422])
    def test_R8_a_refused_create_is_dead_after_one_attempt_with_the_error_and_replay_gives_one_order(self, real_app, fake_revel, fake_sendgrid, status):
        fake_revel.script(ServerFault.status(status, path=CREATE_PATH, body={"error": "dining_option 113 is not valid here"}))
        app = real_app()
        payload = definite()
        answer = app.signed_post(body(payload)).json()
        dead = app.wait_state(answer["delivery_id"], "dead")
        assert dead["attempts"] == 1
        assert f"HTTP {status}" in dead["last_error"] and "dining_option 113 is not valid here" in dead["last_error"]
        assert len(creates(fake_revel)) == 1 and fake_revel.orders == []
        wait_until(lambda: [e for e in app.delivery(answer["delivery_id"])["emails"] if e["state"] == "sent"], timeout_s=15, what="the failure email")
        # The fix (here: Revel accepts the order now), then replay: exactly one order.
        replay = app.admin("POST", f"/admin/deliveries/{answer['delivery_id']}/replay")
        assert replay.status_code == 200, replay.text
        app.wait_state(answer["delivery_id"], "done")
        assert orders_by_local_id(fake_revel) == {f"tripleseat-{payload['event']['id']}": 1}


class TestRevelDownForGood:
    def test_R9_dead_after_exactly_TSREVEL_MAX_ATTEMPTS_then_replay_loses_nothing(self, real_app, fake_revel):
        fake_revel.script(ServerFault.status(503, times=10_000))
        app = real_app(max_attempts=4)
        answer = app.signed_post(body(definite())).json()
        dead = app.wait_state(answer["delivery_id"], "dead", timeout_s=20)
        assert dead["attempts"] == 4
        assert "gave up after 4 attempts" in dead["last_error"]
        assert len(lookups(fake_revel)) == 4 and creates(fake_revel) == []
        kinds = wait_until(lambda: [e["kind"] for e in app.delivery(answer["delivery_id"])["emails"]], timeout_s=10, what="the failure email")
        assert kinds == ["failure"]
        # Nothing lost: the body is kept, and once Revel is back a replay makes the order.
        assert query_db(app.db_path, "SELECT length(body) AS n FROM deliveries WHERE id = ?", answer["delivery_id"])[0]["n"] > 0
        fake_revel.clear()
        assert app.admin("POST", "/admin/replay", json={"state": "dead"}).json()["count"] == 1
        app.wait_state(answer["delivery_id"], "done")
        assert len(fake_revel.orders) == 1

    def test_R9_a_refused_connection_counts_the_same_attempts(self, real_app):
        app = real_app(max_attempts=3, revel_base_url=f"http://127.0.0.1:{free_port()}")  # nothing listens there
        answer = app.signed_post(body(definite())).json()
        dead = app.wait_state(answer["delivery_id"], "dead", timeout_s=20)
        assert dead["attempts"] == 3
        assert "connection failed" in dead["last_error"]
