"""End to end: `python -m tsrevel serve` on a real port, signed webhooks in, fake Revel and SendGrid out."""

from __future__ import annotations

import concurrent.futures
import json

import httpx
import pytest

from tests.e2e.conftest import ADMIN_TOKEN, REVEL_KEY, REVEL_SECRET, SENDGRID_KEY, SIGNING_SECRET, wait_until
from tests.helpers import body, definite, example

pytestmark = pytest.mark.e2e


class TestOneEventEndToEnd:
    def test_a_signed_webhook_makes_one_order_and_one_email_with_one_correlation_id(self, start_service, service_env, fake_revel, fake_sendgrid):
        service = start_service(service_env)
        response = service.signed_post(body(example("definite")))
        assert response.status_code == 200
        answer = response.json()
        cid = answer["correlation_id"]
        assert response.headers["x-correlation-id"] == cid
        delivery = service.wait_state(answer["delivery_id"], "done")
        assert delivery["order_reference"] == "tripleseat-55521609"
        wait_until(lambda: fake_sendgrid.mails, timeout_s=15, what="one email at SendGrid")
        creates = [r for r in fake_revel.requests if r.method == "POST"]
        assert len(creates) == 1 and len(fake_revel.orders) == 1
        assert creates[0].json["orderInfo"]["local_id"] == "tripleseat-55521609"
        # R18: one correlation id on the Revel requests, the email and every log line of the delivery.
        assert {r.header("x-correlation-id") for r in fake_revel.requests} == {cid}
        assert len(fake_sendgrid.mails) == 1
        assert cid in json.dumps(fake_sendgrid.mails[0])
        delivery_lines = [line for line in service.log_lines() if line.get("delivery_id") == answer["delivery_id"]]
        assert delivery_lines and {line.get("correlation_id") for line in delivery_lines} == {cid}
        assert service.stop() == 0

    def test_the_start_up_log_shows_every_flag_and_no_secret(self, start_service, service_env):
        service = start_service(service_env)
        assert service.stop() == 0
        text = service.log_path.read_text()
        assert "ENABLE_CONNECTOR: True" in text and "DRY_RUN: False" in text
        for secret in (ADMIN_TOKEN, SIGNING_SECRET, SENDGRID_KEY, REVEL_KEY, REVEL_SECRET):
            assert secret not in text


class TestLeversEndToEnd:
    def test_kill_switch_off_holds_the_delivery_and_calls_nothing(self, start_service, service_env, fake_revel, fake_sendgrid):
        service = start_service({**service_env, "ENABLE_CONNECTOR": "false"})
        answer = service.signed_post(body(definite())).json()
        assert answer["status"] == "accepted"
        service.wait_state(answer["delivery_id"], "held")
        assert fake_revel.requests == [] and fake_sendgrid.requests == []
        assert "ENABLE_CONNECTOR: False" in service.log_path.read_text()

    def test_a_location_outside_allowed_locations_is_skipped_with_no_call(self, start_service, service_env, fake_revel, fake_sendgrid):
        service = start_service({**service_env, "ALLOWED_LOCATIONS": "202"})
        answer = service.signed_post(body(definite())).json()
        service.wait_state(answer["delivery_id"], "skipped")
        assert fake_revel.requests == [] and fake_sendgrid.requests == []

    def test_dry_run_writes_nothing_to_revel_and_sends_a_dry_run_email(self, start_service, service_env, fake_revel, fake_sendgrid):
        service = start_service({**service_env, "DRY_RUN": "true"})
        answer = service.signed_post(body(definite())).json()
        service.wait_state(answer["delivery_id"], "dry_run")
        wait_until(lambda: fake_sendgrid.mails, timeout_s=15, what="the dry-run email")
        assert [r for r in fake_revel.requests if r.method != "GET"] == []
        assert "DRY RUN" in json.dumps(fake_sendgrid.mails[0])

    def test_a_wrong_signature_is_401_and_nothing_is_stored(self, start_service, service_env):
        service = start_service(service_env)
        response = httpx.post(service.url + "/webhooks/tripleseat", content=body(definite()), headers={"X-Signature": "f" * 64})
        assert response.status_code == 401
        assert service.admin("GET", "/admin/deliveries").json()["count"] == 0

    def test_twenty_concurrent_identical_deliveries_make_one_order(self, start_service, service_env, fake_revel):
        service = start_service(service_env)
        raw = body(definite())
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            answers = list(pool.map(lambda _: service.signed_post(raw), range(20)))
        assert [a.status_code for a in answers] == [200] * 20
        ids = {a.json()["delivery_id"] for a in answers}
        assert len(ids) == 1
        assert sorted(a.json()["status"] for a in answers).count("accepted") == 1
        service.wait_state(ids.pop(), "done")
        assert len(fake_revel.orders) == 1


def test_sigterm_stops_the_service_with_exit_code_0(start_service, service_env):
    service = start_service(service_env)
    assert service.stop() == 0
    assert "tsrevel stopped" in service.log_path.read_text()


def test_sighup_reloads_the_mapping_file_and_a_replay_then_orders_without_a_restart(start_service, service_env, tmp_path, fake_revel):
    """Issue 11 item 13: `kill -HUP` reads the mapping file again; the start-up log names the absolute files."""
    import signal

    from tests.e2e.conftest import ROOT

    mapping = tmp_path / "mapping.toml"
    mapping.write_text((ROOT / "examples" / "mapping.toml").read_text())
    service = start_service({**service_env, "TSREVEL_MAPPING_FILE": str(mapping)})
    assert any(f"mapping file: {mapping}" in line.get("msg", "") and f"database: {tmp_path / 'tsrevel.db'}" in line.get("msg", "")
               for line in service.log_lines())
    delivery_id = service.signed_post(body(example("unmapped"))).json()["delivery_id"]
    service.wait_state(delivery_id, "dead")
    mapping.write_text(mapping.read_text().replace("[products]", '[products]\n"Fruit tower" = 601\n"Egg bites (dozen)" = 601\n', 1))
    service.process.send_signal(signal.SIGHUP)
    wait_until(lambda: service.admin("GET", "/admin/status").json()["mapping"]["generation"] == 1, timeout_s=15, what="the SIGHUP reload")
    assert service.process.poll() is None
    assert service.admin("POST", f"/admin/deliveries/{delivery_id}/replay").status_code == 200
    assert service.wait_state(delivery_id, "done", "dead")["state"] == "done"
