"""The Litestar app end to end in-process: real SQLite file, real worker, fake Revel and mailer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import body, definite, example
from tests.integration.conftest import ADMIN_TOKEN, ROOT, SIGNING_SECRET, wait_for
from tsrevel.domain.signature import sign_body

pytestmark = pytest.mark.integration


def signed(raw: bytes) -> dict[str, str]:
    return {"X-Signature": sign_body(raw, secret=SIGNING_SECRET), "Content-Type": "application/json"}


class TestWebhookIntake:
    def test_a_signed_definite_webhook_becomes_one_order_and_one_email(self, app_factory):
        app = app_factory()
        raw = body(example("definite"))
        response = app.client.post("/webhooks/tripleseat", content=raw, headers=signed(raw))
        assert response.status_code == 200
        answer = response.json()
        assert answer["status"] == "accepted"
        assert response.headers["x-correlation-id"] == answer["correlation_id"]
        delivery = app.wait_state(answer["delivery_id"], "done")
        assert delivery["order_reference"] == "tripleseat-55521609"
        wait_for(lambda: app.mailer.sent, what="the order email")
        assert len(app.revel.created) == 1
        assert app.revel.correlation_ids == [answer["correlation_id"]] * 2
        assert app.mailer.sent[0].correlation_id == answer["correlation_id"]

    def test_the_webhook_alias_path_works_too(self, app_factory):
        app = app_factory()
        raw = body(definite())
        assert app.client.post("/webhook", content=raw, headers=signed(raw)).json()["status"] == "accepted"

    @pytest.mark.parametrize(
        "headers",
        [{}, {"X-Signature": "0" * 64}, {"X-Signature": "not hex at all"}, {"X-Signature": "x" * 16_384}],
        ids=["missing", "wrong", "malformed", "16KB"],
    )
    def test_R10_a_bad_signature_is_401_and_nothing_is_stored(self, app_factory, headers):
        app = app_factory()
        raw = body(definite())
        response = app.client.post("/webhooks/tripleseat", content=raw, headers=headers)
        assert response.status_code == 401
        assert SIGNING_SECRET not in response.text
        listing = app.client.get("/admin/deliveries", headers=app.admin()).json()
        assert listing["count"] == 0

    def test_R10_a_one_byte_change_of_the_body_is_401(self, app_factory):
        app = app_factory()
        raw = body(definite())
        headers = signed(raw)
        tampered = raw.replace(b'"48"', b'"49"')
        assert app.client.post("/webhooks/tripleseat", content=tampered, headers=headers).status_code == 401

    def test_a_body_over_one_mebibyte_is_413(self, app_factory):
        app = app_factory()
        raw = b"{" + b" " * (1024 * 1024 + 10) + b"}"
        response = app.client.post("/webhooks/tripleseat", content=raw, headers=signed(raw))
        assert response.status_code == 413

    def test_an_authentic_but_unusable_payload_is_200_rejected_with_the_reason(self, app_factory):
        app = app_factory()
        raw = b'{"webhook_trigger_type": "UPDATE_EVENT", "event": {"id": 5, "guest_count": "many"}}'
        answer = app.client.post("/webhooks/tripleseat", content=raw, headers=signed(raw)).json()
        assert answer["status"] == "rejected"
        assert answer["reason"] == "event.guest_count: 'many' is not a number"
        assert app.delivery(answer["delivery_id"])["state"] == "rejected"

    def test_a_duplicate_is_answered_200_duplicate_with_the_same_delivery(self, app_factory):
        app = app_factory()
        raw = body(definite())
        first = app.client.post("/webhooks/tripleseat", content=raw, headers=signed(raw)).json()
        again = app.client.post("/webhooks/tripleseat", content=raw, headers=signed(raw)).json()
        assert (again["status"], again["delivery_id"]) == ("duplicate", first["delivery_id"])

    def test_a_valid_incoming_correlation_id_is_kept_and_an_invalid_one_replaced(self, app_factory):
        app = app_factory()
        kept = app.client.get("/health", headers={"X-Correlation-ID": "ops-check.42"})
        assert kept.headers["x-correlation-id"] == "ops-check.42"
        replaced = app.client.get("/health", headers={"X-Correlation-ID": "bad id with spaces"})
        assert replaced.headers["x-correlation-id"] != "bad id with spaces"
        assert len(replaced.headers["x-correlation-id"]) == 32


class TestLevers:
    def test_kill_switch_off_holds_and_calls_nothing(self, app_factory):
        app = app_factory(enable_connector=False)
        raw = body(definite())
        answer = app.client.post("/webhooks/tripleseat", content=raw, headers=signed(raw)).json()
        assert answer["status"] == "accepted"
        app.wait_state(answer["delivery_id"], "held")
        assert app.revel.calls == [] and app.mailer.calls == []

    def test_runtime_flags_override_the_environment_and_reset(self, app_factory):
        app = app_factory()
        response = app.client.put("/admin/flags", json={"enable_connector": False, "reason": "incident 42"}, headers=app.admin())
        assert response.status_code == 200 and response.json()["enable_connector"] is False
        assert app.client.get("/health").json()["enable_connector"] is False
        status = app.client.get("/admin/status", headers=app.admin()).json()
        assert status["flags"]["enable_connector"] == {"value": False, "source": "runtime override"}
        assert status["flags"]["override"]["reason"] == "incident 42"
        assert app.client.delete("/admin/flags", headers=app.admin()).json()["enable_connector"] is True

    def test_held_deliveries_are_replayed_with_one_call(self, app_factory):
        app = app_factory(enable_connector=False)
        ids = []
        for _ in range(3):
            raw = body(definite())
            ids.append(app.client.post("/webhooks/tripleseat", content=raw, headers=signed(raw)).json()["delivery_id"])
        for delivery_id in ids:
            app.wait_state(delivery_id, "held")
        app.client.put("/admin/flags", json={"enable_connector": True}, headers=app.admin())
        assert app.client.post("/admin/replay", json={"state": "held"}, headers=app.admin()).json()["count"] == 3
        for delivery_id in ids:
            app.wait_state(delivery_id, "done")
        assert len(app.revel.created) == 3

    def test_replaying_a_done_delivery_is_refused_with_409(self, app_factory):
        app = app_factory()
        raw = body(definite())
        delivery_id = app.client.post("/webhooks/tripleseat", content=raw, headers=signed(raw)).json()["delivery_id"]
        app.wait_state(delivery_id, "done")
        response = app.client.post(f"/admin/deliveries/{delivery_id}/replay", headers=app.admin())
        assert response.status_code == 409
        assert len(app.revel.created) == 1

    def test_bad_flag_bodies_are_422_with_the_field(self, app_factory):
        app = app_factory()
        response = app.client.put("/admin/flags", json={"enable_connector": "yes"}, headers=app.admin())
        assert response.status_code == 422 and response.json()["field"] == "enable_connector"
        response = app.client.put("/admin/flags", content=b"{not json", headers=app.admin())
        assert response.status_code == 422


class TestAdminAuth:
    @pytest.mark.parametrize("path", ["/admin/status", "/admin/deliveries"])
    def test_admin_endpoints_need_the_bearer_token(self, app_factory, path):
        app = app_factory()
        assert app.client.get(path).status_code == 403
        assert app.client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 403
        assert app.client.get(path, headers=app.admin()).status_code == 200

    def test_without_a_configured_token_admin_and_test_endpoints_answer_403(self, app_factory):
        app = app_factory(admin_token=None)
        assert app.client.get("/admin/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 403
        assert app.client.post("/test/webhook", content=b"{}").status_code == 403


class TestTestWebhook:
    def test_it_processes_now_and_answers_the_whole_trace(self, app_factory):
        app = app_factory(dry_run=True)
        raw = body(definite())
        response = app.client.post("/test/webhook", content=raw, headers=app.admin())
        assert response.status_code == 200, response.text
        trace = response.json()
        assert trace["decision"] == "dry_run" and trace["dry_run"] is True
        assert trace["mapped_order"]["establishment_id"] == 4
        assert trace["emails"][0]["kind"] == "dry_run"
        assert trace["correlation_id"] == response.headers["x-correlation-id"]
        assert app.revel.created == []

    def test_an_invalid_payload_is_422_with_the_field_and_not_stored(self, app_factory):
        app = app_factory()
        payload = definite()
        payload["event"]["documents"][0]["line_items"][2]["quantity"] = "abc"
        response = app.client.post("/test/webhook", content=body(payload), headers=app.admin())
        assert response.status_code == 422
        assert response.json()["error"] == "event.documents[0].line_items[2].quantity: 'abc' is not a number"
        assert app.client.get("/admin/deliveries", headers=app.admin()).json()["count"] == 0


class TestProbes:
    def test_health_says_the_flags_and_version(self, app_factory):
        app = app_factory(allowed_locations=frozenset({"201"}))
        health = app.client.get("/health").json()
        assert health == {
            "status": "ok", "enable_connector": True, "dry_run": False, "allowed_locations": ["201"],
            "flags_source": "store", "version": health["version"],
        }

    def test_ready_is_200_when_the_store_is_writable(self, app_factory):
        app = app_factory()
        assert app.client.get("/ready").status_code == 200

    def test_metrics_count_deliveries_by_state(self, app_factory):
        app = app_factory(enable_connector=False)
        raw = body(definite())
        delivery_id = app.client.post("/webhooks/tripleseat", content=raw, headers=signed(raw)).json()["delivery_id"]
        app.wait_state(delivery_id, "held")
        text = app.client.get("/metrics").text
        assert 'tsrevel_deliveries{state="held"} 1.0' in text
        assert "tsrevel_flag_enable_connector 0.0" in text

    def test_openapi_is_served(self, app_factory):
        app = app_factory()
        schema = app.client.get("/schema/openapi.json").json()
        assert "/webhooks/tripleseat" in schema["paths"]


class TestMappingReload:
    """Issue 11 item 13: POST /admin/mapping/reload, a replay after the fix, and a bad file refused with its line."""

    def test_a_fixed_mapping_is_in_force_for_the_replay_without_a_restart(self, app_factory, tmp_path):
        mapping = tmp_path / "mapping.toml"
        mapping.write_text((ROOT / "examples" / "mapping.toml").read_text())
        app = app_factory(mapping_file=str(mapping))
        raw = body(example("unmapped"))
        delivery_id = app.client.post("/webhooks/tripleseat", content=raw, headers=signed(raw)).json()["delivery_id"]
        app.wait_state(delivery_id, "dead")
        mapping.write_text(mapping.read_text().replace("[products]", '[products]\n"Fruit tower" = 601\n"Egg bites (dozen)" = 601\n', 1))
        reloaded = app.client.post("/admin/mapping/reload", json={"reason": "map the fruit tower"}, headers=app.admin())
        assert reloaded.status_code == 200, reloaded.text
        assert reloaded.json()["mapping"]["file"] == str(mapping.absolute())
        assert reloaded.json()["mapping"]["generation"] == 1 and reloaded.json()["mapping"]["loaded_at"]
        status = app.client.get("/admin/status", headers=app.admin()).json()
        assert status["mapping"]["file"] == str(mapping.absolute())
        assert app.client.post(f"/admin/deliveries/{delivery_id}/replay", headers=app.admin()).status_code == 200
        assert app.wait_state(delivery_id, "done", "dead")["state"] == "done"

    def test_a_file_that_does_not_validate_is_refused_with_its_file_and_line(self, app_factory, tmp_path):
        mapping = tmp_path / "mapping.toml"
        mapping.write_text((ROOT / "examples" / "mapping.toml").read_text())
        app = app_factory(mapping_file=str(mapping))
        mapping.write_text(mapping.read_text() + "\n[locations.203\n")
        refused = app.client.post("/admin/mapping/reload", json={"reason": "try"}, headers=app.admin())
        assert refused.status_code == 422
        answer = refused.json()
        assert answer["file"] == str(mapping.absolute()) and isinstance(answer["line"], int)
        assert "not valid TOML" in answer["problem"] and answer["correlation_id"]
        raw = body(definite())  # the old mapping still orders
        delivery_id = app.client.post("/webhooks/tripleseat", content=raw, headers=signed(raw)).json()["delivery_id"]
        assert app.wait_state(delivery_id, "done", "dead")["state"] == "done"

    def test_a_reason_with_a_lone_surrogate_is_stored_not_a_500(self, app_factory):
        app = app_factory()
        answer = app.client.post("/admin/mapping/reload", content=b'{"reason": "half an emoji \\ud83d"}', headers=app.admin())
        assert answer.status_code == 200, answer.text

    def test_a_body_that_is_not_an_object_is_422(self, app_factory):
        app = app_factory()
        assert app.client.post("/admin/mapping/reload", content=b"[1]", headers=app.admin()).status_code == 422

    def test_the_reload_needs_the_admin_token(self, app_factory):
        app = app_factory()
        assert app.client.post("/admin/mapping/reload", json={"reason": "x"}).status_code in (401, 403)


def test_no_secret_appears_in_any_response(app_factory):
    app = app_factory()
    raw = body(definite())
    texts = [
        app.client.post("/webhooks/tripleseat", content=raw, headers={"X-Signature": "0" * 64}).text,
        app.client.get("/admin/status", headers=app.admin()).text,
        app.client.get("/health").text,
    ]
    for secret in (ADMIN_TOKEN, SIGNING_SECRET, "revel-secret", "revel-key"):
        assert all(secret not in text for text in texts)
