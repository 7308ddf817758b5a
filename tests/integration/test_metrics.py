"""GET /metrics after real traffic through the app, read back with the Prometheus text parser."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import definite
from tests.integration.conftest import SIGNING_SECRET, AppHarness, wait_for
from tsrevel.adapters.fakes import Fault
from tsrevel.domain.signature import sign_body

pytestmark = pytest.mark.integration


def scrape(app: AppHarness) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = app.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Mapping[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"{name}{labels} not exported; have {sorted(n for n, _ in samples if n.startswith(name))}"
    return samples[key]


def post(app: AppHarness, payload: dict, *, signature: str | None = None) -> dict:
    raw = json.dumps(payload).encode()
    response = app.client.post("/webhooks/tripleseat", content=raw, headers={"X-Signature": signature or sign_body(raw, secret=SIGNING_SECRET)})
    return {"status_code": response.status_code, **response.json()}


class TestMetricsAfterTraffic:
    def test_acks_processing_revel_and_email_calls_retries_and_dead_letters_are_counted(self, app_factory):
        app = app_factory(workers=1, retry_base_s=0.05, retry_cap_s=0.1)

        app.revel.script(Fault.transient(n=1, on="find"))
        retried = post(app, definite())
        app.wait_state(retried["delivery_id"], "done")
        app.revel.script(Fault.permanent(on="create"))
        dead = post(app, definite())
        app.wait_state(dead["delivery_id"], "dead")
        again = definite()
        done = post(app, again)
        app.wait_state(done["delivery_id"], "done")
        assert post(app, again)["status"] == "duplicate"
        assert post(app, definite(), signature="0" * 64)["status_code"] == 401
        wait_for(lambda: len(app.mailer.sent) == 3, what="3 emails (2 orders, 1 failure) sent")

        m = scrape(app)
        assert value(m, "tsrevel_webhook_ack_seconds_count", status="accepted") == 3
        assert value(m, "tsrevel_webhook_ack_seconds_count", status="duplicate") == 1
        assert value(m, "tsrevel_webhook_ack_seconds_count", status="unauthorized") == 1
        assert value(m, "tsrevel_webhook_ack_seconds_bucket", status="accepted", le="+Inf") == 3
        assert value(m, "tsrevel_processing_seconds_count", outcome="done") == 2
        assert value(m, "tsrevel_processing_seconds_count", outcome="dead") == 1
        assert value(m, "tsrevel_processing_seconds_count", outcome="retrying") == 1
        assert value(m, "tsrevel_revel_calls_total", operation="find", outcome="ok") == 3
        assert value(m, "tsrevel_revel_calls_total", operation="find", outcome="transient") == 1
        assert value(m, "tsrevel_revel_calls_total", operation="create", outcome="ok") == 2
        assert value(m, "tsrevel_revel_calls_total", operation="create", outcome="permanent") == 1
        assert value(m, "tsrevel_revel_call_seconds_count", operation="find") == 4
        assert value(m, "tsrevel_revel_call_seconds_count", operation="create") == 3
        assert value(m, "tsrevel_sendgrid_calls_total", outcome="ok") == 3
        assert value(m, "tsrevel_sendgrid_call_seconds_count") == 3
        assert value(m, "tsrevel_retries_total", kind="delivery") == 1
        assert value(m, "tsrevel_dead_letters_total", kind="delivery") == 1
        assert value(m, "tsrevel_dead_letters_total", kind="email") == 0
        assert value(m, "tsrevel_deliveries", state="done") == 2
        assert value(m, "tsrevel_deliveries", state="dead") == 1
        assert value(m, "tsrevel_flag_enable_connector") == 1
        assert value(m, "tsrevel_flag_dry_run") == 0
        assert value(m, "tsrevel_oldest_pending_age_seconds") == 0

    def test_email_failures_count_as_sendgrid_outcomes_and_retries(self, app_factory):
        app = app_factory(workers=1, retry_base_s=0.05, retry_cap_s=0.1)
        app.mailer.script(Fault.transient(n=1))
        app.wait_state(post(app, definite())["delivery_id"], "done")
        wait_for(lambda: len(app.mailer.sent) == 1, what="the email sent on its second attempt")
        m = scrape(app)
        assert value(m, "tsrevel_sendgrid_calls_total", outcome="transient") == 1
        assert value(m, "tsrevel_sendgrid_calls_total", outcome="ok") == 1
        assert value(m, "tsrevel_retries_total", kind="email") == 1

    def test_the_kill_switch_and_held_work_show_in_the_gauges(self, app_factory):
        app = app_factory(enable_connector=False, dry_run=True)
        app.wait_state(post(app, definite())["delivery_id"], "held")
        m = scrape(app)
        assert value(m, "tsrevel_flag_enable_connector") == 0
        assert value(m, "tsrevel_flag_dry_run") == 1
        assert value(m, "tsrevel_deliveries", state="held") == 1
        assert value(m, "tsrevel_revel_calls_total", operation="create", outcome="ok") == 0

    def test_each_app_has_its_own_registry(self, app_factory, tmp_path):
        first = app_factory()
        first.wait_state(post(first, definite())["delivery_id"], "done")
        second = app_factory(database_url=f"sqlite:///{tmp_path / 'second.db'}")
        assert value(scrape(first), "tsrevel_webhook_ack_seconds_count", status="accepted") == 1
        assert ("tsrevel_webhook_ack_seconds_count", frozenset({("status", "accepted")})) not in scrape(second)
        assert value(scrape(second), "tsrevel_revel_calls_total", operation="create", outcome="ok") == 0
