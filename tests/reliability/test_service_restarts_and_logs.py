"""R6 (the retry schedule survives a restart), R18 (one correlation id across it) and R16 (SendGrid faults, DEBUG logs) on the service."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.helpers import body, definite
from tests.reliability.conftest import (
    ADMIN_TOKEN,
    MAIL_PATH,
    ORDERS_PATH,
    REVEL_KEY,
    REVEL_SECRET,
    SENDGRID_KEY,
    SIGNING_SECRET,
    orders_by_local_id,
    parse_iso,
    query_db,
    wait_until,
    wall,
)
from tsrevel.testing.servers import ServerFault

pytestmark = [pytest.mark.reliability, pytest.mark.e2e]


def test_R6_R18_a_retry_waiting_in_backoff_survives_a_restart_under_one_correlation_id(start_service, service_env, fake_revel, fake_sendgrid):
    fake_revel.script(ServerFault.rate_limited(8, path=ORDERS_PATH))  # the lookup is told to come back in 8 s
    first = start_service(service_env)
    payload = definite()
    answer = first.signed_post(body(payload)).json()
    cid, delivery_id = answer["correlation_id"], answer["delivery_id"]
    waiting = first.wait_state(delivery_id, "retrying")
    due = parse_iso(waiting["next_attempt_at"])
    assert first.stop() == 0  # SIGTERM while the item waits in backoff

    db_path = service_env["TSREVEL_DATABASE_URL"].removeprefix("sqlite:///")
    [row] = query_db(db_path, "SELECT state, attempts, next_attempt_at FROM deliveries WHERE id = ?", delivery_id)
    assert (row["state"], row["attempts"]) == ("retrying", 1) and parse_iso(row["next_attempt_at"]) == due

    second = start_service(service_env)  # same database
    delivery = second.wait_state(delivery_id, "done", timeout_s=30)
    wait_until(lambda: fake_sendgrid.mails, timeout_s=15, what="the order email")
    assert orders_by_local_id(fake_revel) == {f"tripleseat-{payload['event']['id']}": 1}
    lookups = [r for r in fake_revel.requests if r.method == "GET"]
    assert wall(lookups[1].at) >= due.timestamp() - 0.01  # the schedule was kept, not reset by the restart
    assert delivery["correlation_id"] == cid

    # R18: one correlation id on the Revel requests, the email and every log line of the delivery, in both processes.
    assert {r.header("x-correlation-id") for r in fake_revel.requests} == {cid}
    assert len(fake_sendgrid.mails) == 1
    assert fake_sendgrid.mails[0]["custom_args"]["correlation_id"] == cid
    assert fake_sendgrid.mails[0]["custom_args"]["delivery_id"] == str(delivery_id)
    for service in (first, second):
        lines = [line for line in service.log_lines() if line.get("delivery_id") == delivery_id]
        assert lines, f"no log line for delivery {delivery_id} in {service.log_path}"
        assert {line.get("correlation_id") for line in lines} == {cid}
    assert second.stop() == 0


def test_R16_sendgrid_hang_fails_within_the_timeout_429_waits_for_the_reset_and_debug_logs_hold_no_key(
    start_service, service_env, fake_revel, fake_sendgrid
):
    service = start_service({**service_env, "LOG_LEVEL": "DEBUG", "SENDGRID_TIMEOUT_S": "1"})
    reset_at = int(time.time()) + 5  # the 429 comes about 1-2 s from now: the reset is well ahead of it
    fake_sendgrid.script(
        ServerFault.hang(60, path=MAIL_PATH),
        ServerFault.status(429, path=MAIL_PATH, headers={"X-RateLimit-Reset": str(reset_at)}, body={"errors": [{"message": "too many requests"}]}),
    )
    answer = service.signed_post(body(definite())).json()
    service.wait_state(answer["delivery_id"], "done")
    wait_until(lambda: fake_sendgrid.mails, timeout_s=30, what="the email, once the rate limit reset")
    hung, limited, sent = [r for r in fake_sendgrid.requests if r.path == MAIL_PATH][:3]
    assert len(fake_sendgrid.mails) == 1

    # The hang: the outbox gave up on it within SENDGRID_TIMEOUT_S (60 s of hang would be the alternative).
    [gave_up] = [line for line in service.log_lines() if "will be retried" in line["msg"] and "timed out after 1s" in line["msg"]]
    gave_up_at = datetime.fromisoformat(gave_up["ts"]).timestamp()
    assert gave_up_at - wall(hung.at) < 1.0 + 9.0  # the timeout, plus generous room for a busy machine
    # The 429: the next attempt did not come before X-RateLimit-Reset.
    assert wall(limited.at) < reset_at  # the 429 came before the reset, so waiting for it was needed
    assert wall(sent.at) >= reset_at - 0.01

    # DEBUG logging: on, and still no key. Every secret of the environment is checked.
    text = service.log_path.read_text()
    # tsrevel itself writes little at DEBUG; what matters is that the root level was DEBUG, so the
    # SendGrid client's DEBUG lines (headers, Authorization: Bearer <key>) would have been emitted.
    assert any(line["msg"] == "LOG_LEVEL: DEBUG" for line in service.log_lines())
    for secret in (SENDGRID_KEY, REVEL_KEY, REVEL_SECRET, ADMIN_TOKEN, SIGNING_SECRET):
        assert secret not in text
    assert service.stop() == 0
    assert SENDGRID_KEY not in service.log_path.read_text()  # nor in what shutdown wrote
