"""R2, R3, R12-R15, R17, R19, R21, R23 on the in-process app: real SQLite, real Revel and SendGrid adapters, loopback fakes."""

from __future__ import annotations

import copy
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from tests.helpers import body, definite, example
from tests.reliability.conftest import (
    CREATE_PATH,
    MAIL_PATH,
    ORDERS_PATH,
    REVEL_KEY,
    REVEL_SECRET,
    creates,
    orders_by_local_id,
    wait_until,
    with_store,
)
from tsrevel.testing.servers import FakeRevelServer, ServerFault

pytestmark = [pytest.mark.reliability, pytest.mark.integration]


def deliveries(app, state: str | None = None) -> list[dict]:
    query = f"?limit=500&state={state}" if state else "?limit=500"
    return app.admin("GET", "/admin/deliveries" + query).json()["deliveries"]


def count_in(app, state: str) -> int:
    return app.admin("GET", "/admin/status").json()["counts"].get(state, 0)


def wait_count(app, state: str, n: int, *, timeout_s: float = 30) -> None:
    wait_until(lambda: count_in(app, state) == n, timeout_s=timeout_s, what=f"{n} deliveries {state}; counts: {app.admin('GET', '/admin/status').json()['counts']}")


def all_emails_sent(app, delivery_ids) -> bool:
    emails = [e for i in delivery_ids for e in app.delivery(i)["emails"]]
    return bool(emails) and all(e["state"] == "sent" for e in emails)


class TestRedeliveries:
    def test_R2_the_same_body_again_even_after_its_history_is_pruned_days_later_makes_no_new_order(self, real_app, fake_revel):
        app = real_app()
        original = definite()
        update = copy.deepcopy(original)
        update["webhook_trigger_type"] = "UPDATE_EVENT"  # same items: the order stays as it is
        first = app.signed_post(body(original)).json()
        app.wait_state(first["delivery_id"], "done")
        second = app.signed_post(body(update)).json()
        app.wait_state(second["delivery_id"], "done")
        # Minutes later: each body again is a duplicate of its stored delivery.
        for raw, stored in ((body(original), first), (body(update), second)):
            again = app.signed_post(raw).json()
            assert (again["status"], again["delivery_id"]) == ("duplicate", stored["delivery_id"])
        # Days later, after the history is pruned: the delivery that made the order is kept (it owns
        # the ledger row), the update's is gone, so its body arrives as new; the ledger, never
        # pruned, still knows the event's order.
        pruned = with_store(app.db_path, lambda s: s.prune_history(older_than=datetime.now(timezone.utc) + timedelta(days=3)))
        assert pruned == 1
        assert app.signed_post(body(original)).json()["status"] == "duplicate"
        later = app.signed_post(body(update)).json()
        assert later["status"] == "accepted" and later["delivery_id"] not in (first["delivery_id"], second["delivery_id"])
        delivery = app.wait_state(later["delivery_id"], "done")
        assert "already exists" in delivery["timeline"][-1]["note"]
        assert len(creates(fake_revel)) == 1 and len(fake_revel.orders) == 1

    def test_R3_updates_and_status_changes_of_one_event_make_one_order_and_ops_hear_of_item_changes(self, real_app, fake_revel, fake_sendgrid):
        app = real_app()
        original = definite()
        event_id = original["event"]["id"]
        same_items = copy.deepcopy(original)
        same_items["webhook_trigger_type"] = "UPDATE_EVENT"
        same_items["event"]["updated_at"] = "12/28/2025 1:10 PM"
        more_rings = copy.deepcopy(same_items)
        more_rings["event"]["documents"][0]["line_items"][0]["quantity"] = "60"
        status_again = copy.deepcopy(more_rings)
        status_again["webhook_trigger_type"] = "STATUS_CHANGE_EVENT"

        states = []
        for payload in (original, same_items, more_rings, status_again):
            answer = app.signed_post(body(payload)).json()
            assert answer["status"] == "accepted"
            states.append(app.wait_state(answer["delivery_id"], "done", "needs_attention")["state"])
        assert states == ["done", "done", "needs_attention", "needs_attention"]
        assert orders_by_local_id(fake_revel) == {f"tripleseat-{event_id}": 1}
        assert len(creates(fake_revel)) == 1
        wait_until(lambda: len(fake_sendgrid.mails) == 3, timeout_s=15, what="3 emails")
        subjects = [m["subject"] for m in fake_sendgrid.mails]
        attention = [m for m in fake_sendgrid.mails if "48 x 3.25 -> 60 x 3.25" in m["content"][0]["value"]]
        assert len(attention) == 2, subjects  # ops told, once per delivery that changed the items


class TestKillSwitch:
    def test_R12_a_hundred_events_held_with_no_call_then_replayed_in_arrival_order(self, real_app, fake_revel, fake_sendgrid):
        app = real_app(enable_connector=False, workers=1)
        payloads = [definite() for _ in range(100)]
        answers = [app.signed_post(body(p)) for p in payloads]
        assert [a.status_code for a in answers] == [200] * 100
        assert {a.json()["status"] for a in answers} == {"accepted"}
        wait_count(app, "held", 100)
        assert fake_revel.requests == [] and fake_sendgrid.requests == []

        app.set_flags(enable_connector=True)
        assert app.admin("POST", "/admin/replay", json={"state": "held"}).json()["count"] == 100
        wait_count(app, "done", 100, timeout_s=60)
        arrival = [f"tripleseat-{p['event']['id']}" for p in payloads]
        assert [o["local_id"] for o in fake_revel.orders] == arrival  # created in arrival order, once each
        assert len(creates(fake_revel)) == 100

    def test_R13_a_flip_while_an_item_waits_in_backoff_means_no_side_effect_after_it(self, real_app, fake_revel, fake_sendgrid):
        fake_revel.script(ServerFault.rate_limited(5, path=ORDERS_PATH))
        app = real_app()
        answer = app.signed_post(body(definite())).json()
        app.wait_state(answer["delivery_id"], "retrying")
        app.set_flags(enable_connector=False)
        revel_seen, mail_seen = len(fake_revel.requests), len(fake_sendgrid.requests)
        held = app.wait_state(answer["delivery_id"], "held", timeout_s=20)  # decided when its retry came due
        assert "ENABLE_CONNECTOR" in held["timeline"][-1]["note"]
        assert len(fake_revel.requests) == revel_seen == 1 and len(fake_sendgrid.requests) == mail_seen == 0
        # Held, never dropped: on again and replayed, it makes its one order.
        app.set_flags(enable_connector=True)
        assert app.admin("POST", f"/admin/deliveries/{answer['delivery_id']}/replay").status_code == 200
        app.wait_state(answer["delivery_id"], "done")
        assert len(fake_revel.orders) == 1

    def test_R14_dry_run_writes_nothing_then_each_event_is_processed_once(self, real_app, fake_revel, fake_sendgrid):
        app = real_app(dry_run=True)
        payloads = [definite() for _ in range(3)]
        ids = [app.signed_post(body(p)).json()["delivery_id"] for p in payloads]
        for i in ids:
            app.wait_state(i, "dry_run")
        wait_until(lambda: len(fake_sendgrid.mails) == 3, timeout_s=15, what="3 dry-run emails")
        assert fake_revel.requests == []  # not a lookup, not a write

        app.set_flags(dry_run=False)
        assert app.admin("POST", "/admin/replay", json={"state": "dry_run"}).json()["count"] == 3
        for i in ids:
            app.wait_state(i, "done")
        assert orders_by_local_id(fake_revel) == {f"tripleseat-{p['event']['id']}": 1 for p in payloads}
        # Processed once: nothing left to replay, and the same bodies again are duplicates.
        assert app.admin("POST", "/admin/replay", json={"state": "dry_run"}).json()["count"] == 0
        assert {app.signed_post(body(p)).json()["status"] for p in payloads} == {"duplicate"}
        assert len(creates(fake_revel)) == 3

    def test_R15_a_location_not_allowed_is_skipped_then_after_allowing_it_replay_makes_one_order(self, real_app, fake_revel, fake_sendgrid):
        before = real_app(allowed_locations=frozenset({"202"}))
        answer = before.signed_post(body(definite())).json()
        before.wait_state(answer["delivery_id"], "skipped")
        assert fake_revel.requests == [] and fake_sendgrid.requests == []
        before.stop()

        after = real_app(allowed_locations=frozenset({"201", "202"}))  # restarted with the location allowed
        assert after.admin("POST", "/admin/replay", json={"state": "skipped"}).json()["count"] == 1
        after.wait_state(answer["delivery_id"], "done")
        assert len(fake_revel.orders) == 1 and len(creates(fake_revel)) == 1


class TestSendGridOutage:
    def test_R17_sendgrid_down_all_run_orders_once_and_emails_go_out_on_their_own_when_it_is_back(self, real_app, fake_revel, fake_sendgrid):
        fake_sendgrid.script(ServerFault.status(503, path=MAIL_PATH, times=100_000))
        # The outbox retries about every second; 30 attempts keep the emails alive on a slow machine.
        app = real_app(retry_cap_s=1.0, max_attempts=30)
        ids = [app.signed_post(body(definite())).json()["delivery_id"] for _ in range(3)]
        for i in ids:
            app.wait_state(i, "done")
        wait_until(
            lambda: all(e["attempts"] >= 2 and e["state"] == "retrying" for i in ids for e in app.delivery(i)["emails"]),
            timeout_s=20, what="every email failing and retrying on its own",
        )
        assert len(creates(fake_revel)) == 3 and len(fake_revel.requests) == 6  # no order repeated for an email
        fake_sendgrid.clear()  # SendGrid is back; nobody replays anything
        wait_until(lambda: all_emails_sent(app, ids), timeout_s=20, what="every email sent")
        assert len(fake_sendgrid.mails) == 3
        assert sorted(m["custom_args"]["delivery_id"] for m in fake_sendgrid.mails) == sorted(str(i) for i in ids)
        assert len(fake_revel.orders) == 3 and len(fake_revel.requests) == 6


class TestHealthAndReadiness:
    def test_R19_revel_down_leaves_health_and_readiness_200(self, real_app, fake_revel):
        fake_revel.script(ServerFault.status(503, times=100_000))
        app = real_app()
        answer = app.signed_post(body(definite())).json()
        app.wait_state(answer["delivery_id"], "retrying")
        assert app.client.get("/health").json()["status"] == "ok"
        assert app.client.get("/ready").status_code == 200

    def test_R19_readiness_is_503_only_while_the_database_cannot_take_a_write(self, real_app):
        """The database is made unwritable the way it happens to a live SQLite file: another process holds its write lock.

        As root, chmod does not stop writes, and the service's open file descriptors outlive a
        renamed or replaced directory; a writer holding ``BEGIN IMMEDIATE`` past the store's busy
        timeout (5 s) is a real, reversible outage (a stuck migration, a backup tool, a second
        service on a read-only copy) in which every write fails with "database is locked" while
        reads still work (WAL).
        """
        # One delivery loop polling rarely: fewer worker writes queue behind the lock (each waits 5 s).
        app = real_app(workers=1, poll_interval_s=30.0)
        assert app.client.get("/ready").status_code == 200
        blocker = sqlite3.connect(app.db_path, timeout=10, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            ready = app.client.get("/ready", timeout=60)
            assert ready.status_code == 503 and ready.json()["problems"] == ["store not writable: database is locked"]
            assert app.client.get("/health", timeout=60).status_code == 200
            # Not durable, so not acknowledged: TripleSeat will send it again.
            raw = body(definite())
            refused = app.signed_post(raw)
            assert refused.status_code != 200
            # Issue 11 item 3: a 503 that TripleSeat retries, saying why, in our error shape.
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "30"
            assert "database is locked" in refused.json()["error"] and refused.json()["correlation_id"]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert app.client.get("/ready").status_code == 200
        assert app.signed_post(raw).json()["status"] == "accepted"


class TestPoison:
    @pytest.fixture
    def fake_revel(self) -> Iterator[FakeRevelServer]:
        """This Revel knows establishment 4 only: an event of location 202 (establishment 5) is refused with 400."""
        with FakeRevelServer(api_key=REVEL_KEY, api_secret=REVEL_SECRET, establishments=[(4, "Tropicana")],
                             products={4: [(579, "ring"), (580, "ring"), (590, "brew"), (601, "platter")], 5: [(601, "platter")]}) as server:
            yield server

    def test_R21_poison_payloads_go_dead_alone_and_every_other_delivery_is_done(self, real_app, fake_revel):
        app = real_app()
        refused_by_revel = definite(location_id="202")
        unmapped = example("unmapped")
        good = [definite() for _ in range(4)]
        sequence = [good[0], refused_by_revel, good[1], unmapped, good[2], good[3]]
        ids = [app.signed_post(body(p)).json()["delivery_id"] for p in sequence]
        final = [app.wait_state(i, "done", "dead")["state"] for i in ids]
        assert final == ["done", "dead", "done", "dead", "done", "done"]
        assert "HTTP 400" in app.delivery(ids[1])["last_error"]
        assert "Fruit tower" in app.delivery(ids[3])["last_error"]
        assert orders_by_local_id(fake_revel) == {f"tripleseat-{p['event']['id']}": 1 for p in good}


class TestReplay:
    def test_R23_replaying_a_done_delivery_is_refused_and_a_dead_one_gives_exactly_one_order(self, real_app, fake_revel):
        fake_revel.script(ServerFault.status(422, path=CREATE_PATH))
        app = real_app()
        payload = definite()
        answer = app.signed_post(body(payload)).json()
        app.wait_state(answer["delivery_id"], "dead")
        assert app.admin("POST", f"/admin/deliveries/{answer['delivery_id']}/replay").status_code == 200
        app.wait_state(answer["delivery_id"], "done")
        for _ in range(2):  # a done delivery: refused, every time
            refused = app.admin("POST", f"/admin/deliveries/{answer['delivery_id']}/replay")
            assert refused.status_code == 409 and "done" in refused.json()["error"]
        assert app.admin("POST", "/admin/replay", json={"state": "dead"}).json()["count"] == 0
        assert orders_by_local_id(fake_revel) == {f"tripleseat-{payload['event']['id']}": 1}
