"""R4: the service killed (os._exit(137), as SIGKILL leaves it) at each step, then restarted on the same database.

TSREVEL_TEST_CRASH_AT=<point> is the test-only seam (docs/reliability.md): the process exits at
once, with no cleanup and no flush, the first time any delivery or email reaches that point.
The restart runs without it, with a 2 s lease so the dead process's claim is taken over
quickly (and REVEL_TIMEOUT_S=1 keeps the lease longer than any Revel call, as in production).
"""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import body, definite
from tests.reliability.conftest import orders_by_local_id, query_db, wait_until
from tsrevel.domain.processing import CRASH_POINTS

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]

CRASH_EXIT = 137


def test_every_crash_point_is_in_the_matrix():
    assert CRASH_POINTS == ("after_store", "after_claim", "before_revel_call", "after_revel_2xx", "before_email", "after_email")


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_R4_killed_at_each_step_then_restarted_ends_terminal_with_one_order_and_one_email(
    point, start_service, service_env, fake_revel, fake_sendgrid
):
    env = {**service_env, "TSREVEL_LEASE_S": "2", "REVEL_TIMEOUT_S": "1"}
    payload = definite()
    raw = body(payload)
    ref = f"tripleseat-{payload['event']['id']}"

    doomed = start_service({**env, "TSREVEL_TEST_CRASH_AT": point})
    try:
        answer = doomed.signed_post(raw)
    except httpx.TransportError:
        answer = None  # after_store: the process died before answering; TripleSeat will send again
    assert doomed.process.wait(timeout=30) == CRASH_EXIT, doomed.log_path.read_text()[-2000:]
    assert "tsrevel stopped" not in doomed.log_path.read_text()  # no clean shutdown ran
    if point == "after_store":
        assert answer is None
    else:
        assert answer is not None and answer.status_code == 200 and answer.json()["status"] == "accepted"

    db_path = env["TSREVEL_DATABASE_URL"].removeprefix("sqlite:///")
    [stored] = query_db(db_path, "SELECT id, state FROM deliveries")  # durable before anything else
    delivery_id = stored["id"]

    service = start_service(env)  # the restart: same database, no crash seam
    if point == "after_store":
        again = service.signed_post(raw)  # TripleSeat's re-send of the delivery it got no 200 for
        assert (again.status_code, again.json()["status"], again.json()["delivery_id"]) == (200, "duplicate", delivery_id)
    delivery = service.wait_state(delivery_id, "done", timeout_s=30)
    emails = wait_until(
        lambda: (e if (e := service.delivery(delivery_id)["emails"]) and all(m["state"] == "sent" for m in e) else None),
        timeout_s=30, what="the order email to be sent",
    )

    # Every delivery terminal, nothing lost, one order for the event, one email for the outcome.
    states = {row["state"] for row in query_db(db_path, "SELECT state FROM deliveries")}
    assert states == {"done"}
    assert orders_by_local_id(fake_revel) == {ref: 1}
    assert delivery["order"]["state"] == "created" and delivery["order"]["revel_order_id"] == fake_revel.orders[0]["id"]
    assert [e["kind"] for e in emails] == ["order_created"]
    assert len(fake_sendgrid.mails) == 1
    if point == "after_revel_2xx":
        # The order was made before the crash: the restarted worker found it by reference.
        assert any(e["note"].startswith("found existing Revel order") for e in delivery["timeline"])
        assert len([r for r in fake_revel.requests if r.method == "POST"]) == 1
    if point in ("after_claim", "before_revel_call", "after_revel_2xx"):
        assert any("after lease expired" in e["note"] for e in delivery["timeline"]), delivery["timeline"]
    assert service.stop() == 0
