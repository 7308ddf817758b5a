"""The HTTP edge hardened (issue 11): going live, odd bodies, our error shape, auth, the schema, limits."""

from __future__ import annotations

import json
import logging

import pytest

from tests.helpers import body, definite
from tests.integration.conftest import SIGNING_SECRET
from tsrevel.domain import deliveries as st
from tsrevel.domain.signature import sign_body

pytestmark = pytest.mark.integration

FINAL_STATES = tuple(st.TERMINAL_STATES)


def signed(raw: bytes) -> dict[str, str]:
    return {"X-Signature": sign_body(raw, secret=SIGNING_SECRET), "Content-Type": "application/json"}


class TestGoingLive:
    def test_put_flags_dry_run_false_on_an_unsigned_service_is_409_with_the_reason(self, app_factory):
        app = app_factory(signing_secret=None, dry_run=True)
        response = app.client.put("/admin/flags", json={"dry_run": False, "reason": "go live"}, headers=app.admin())
        assert response.status_code == 409, response.text
        answer = response.json()
        assert "TRIPLESEAT_SIGNING_SECRET" in answer["error"] and answer["correlation_id"]
        # ...and an unsigned webhook then makes no Revel order.
        raw = body(definite())
        delivery_id = app.client.post("/webhooks/tripleseat", content=raw).json()["delivery_id"]
        app.wait_state(delivery_id, "dry_run")
        assert app.revel.created == []

    def test_put_flags_dry_run_false_is_allowed_when_unsigned_on_purpose(self, app_factory):
        app = app_factory(signing_secret=None, dry_run=True, allow_unsigned=True)
        response = app.client.put("/admin/flags", json={"dry_run": False, "reason": "go live"}, headers=app.admin())
        assert response.status_code == 200 and response.json()["dry_run"] is False

    def test_status_says_a_stored_dry_run_false_is_refused_here(self, app_factory):
        signed_app = app_factory(dry_run=True)
        assert signed_app.client.put("/admin/flags", json={"dry_run": False}, headers=signed_app.admin()).status_code == 200
        unsigned = app_factory(signing_secret=None, dry_run=True)  # the same store, another replica
        status = unsigned.client.get("/admin/status", headers=unsigned.admin()).json()
        assert status["flags"]["dry_run"]["value"] is True
        assert "refused" in status["flags"]["dry_run"]["source"]
        assert unsigned.client.get("/health").json()["dry_run"] is True


def with_surrogate(where: str) -> bytes:
    payload = definite()
    if where == "trigger":
        payload["webhook_trigger_type"] = "\ud800"
    elif where == "event_id":
        payload["event"]["id"] = "\ud800"
    elif where == "name":
        payload["event"]["name"] = "half \ud83d emoji"
    elif where == "location":
        payload["event"]["location_id"] = "\udfff"
    elif where == "key":
        payload["event"]["\ud800"] = 1
    return json.dumps(payload).encode()  # ensure_ascii: the surrogate travels as a \\uXXXX escape


class TestLoneSurrogates:
    @pytest.mark.parametrize("where", ["trigger", "event_id", "name", "location", "key"])
    def test_a_signed_body_with_a_lone_surrogate_is_200_and_its_delivery_never_dies_of_encoding(self, app_factory, where):
        app = app_factory()
        raw = with_surrogate(where)
        response = app.client.post("/webhooks/tripleseat", content=raw, headers=signed(raw))
        assert response.status_code == 200, response.text
        assert response.json()["status"] in ("accepted", "rejected")
        delivery = app.wait_state(response.json()["delivery_id"], *FINAL_STATES)
        assert "Unicode" not in (delivery["last_error"] or ""), delivery
        assert delivery["state"] != "dead", delivery

    def test_the_test_webhook_answers_200_for_a_lone_surrogate(self, app_factory):
        app = app_factory()
        response = app.client.post("/test/webhook", content=with_surrogate("location"), headers=app.admin())
        assert response.status_code == 200, response.text
        assert response.json()["delivery"]["state"] != "dead"

    def test_an_admin_reason_with_a_lone_surrogate_is_stored(self, app_factory):
        app = app_factory()
        response = app.client.put("/admin/flags", content=b'{"enable_connector": true, "reason": "INC \\ud800"}', headers=app.admin())
        assert response.status_code == 200, response.text
        status = app.client.get("/admin/status", headers=app.admin()).json()
        assert status["flags"]["override"]["reason"] == "INC \ufffd"


class TestUnhandledErrors:
    def test_an_exception_in_a_handler_is_logged_once_with_its_traceback_and_answered_in_our_shape(self, app_factory, monkeypatch, caplog):
        from tsrevel.adapters.sqlite_store import SqliteStore

        async def broken(self, *args, **kwargs):
            raise RuntimeError("a bug nobody mapped")

        app = app_factory()
        monkeypatch.setattr(SqliteStore, "count_by_state", broken)
        caplog.set_level(logging.INFO)
        response = app.client.get("/admin/status", headers={**app.admin(), "X-Correlation-ID": "cid-unhandled-1"})
        assert response.status_code == 500
        answer = response.json()
        assert set(answer) == {"error", "correlation_id"} and answer["correlation_id"] == "cid-unhandled-1"
        assert response.headers["x-correlation-id"] == "cid-unhandled-1"
        logged = [r for r in caplog.records if r.exc_info and "a bug nobody mapped" in str(r.exc_info[1])]
        assert len(logged) == 1, [r.getMessage() for r in caplog.records]
        assert getattr(logged[0], "correlation_id", None) == "cid-unhandled-1"

    @pytest.mark.parametrize(
        ("method", "path", "status"),
        [("GET", "/no/such/route", 404), ("DELETE", "/health", 405), ("GET", "/admin/deliveries/0", 400)],
    )
    def test_every_error_answer_has_our_shape(self, app_factory, method, path, status):
        app = app_factory()
        response = app.client.request(method, path, headers=app.admin())
        assert response.status_code == status
        assert {"error", "correlation_id"} <= set(response.json()) and "status_code" not in response.json()


BODILESS = {"/admin/deliveries/{delivery_id}/replay"}  # the delivery is named in the path


class TestHttpHygiene:
    @pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-0123456789", "Basic YWRtaW46YWRtaW4="])
    def test_missing_or_wrong_admin_credentials_are_401_with_a_bearer_challenge(self, app_factory, authorization):
        app = app_factory()
        headers = {"Authorization": authorization} if authorization else {}
        response = app.client.get("/admin/status", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert {"error", "correlation_id"} <= set(response.json())

    def test_admin_api_disabled_stays_403(self, app_factory):
        app = app_factory(admin_token=None)
        response = app.client.get("/admin/status", headers=app.admin())
        assert response.status_code == 403 and "TSREVEL_ADMIN_TOKEN" in response.json()["error"]

    @pytest.mark.parametrize("value", ["", "nope", "DONE"])
    def test_an_invalid_state_query_is_400_naming_the_allowed_values(self, app_factory, value):
        app = app_factory()
        response = app.client.get("/admin/deliveries", params={"state": value}, headers=app.admin())
        assert response.status_code == 400, response.text
        assert all(state in response.json()["error"] for state in st.STATES)

    def test_head_metrics_works(self, app_factory):
        app = app_factory()
        response = app.client.head("/metrics")
        assert response.status_code == 200 and response.content == b""
        assert response.headers["content-type"].startswith("text/plain")

    def test_the_openapi_document_describes_bodies_the_signature_header_and_the_bearer_scheme(self, app_factory):
        app = app_factory()
        doc = app.client.get("/schema/openapi.json").json()
        assert doc["components"]["securitySchemes"]["BearerToken"] == {"type": "http", "scheme": "bearer", "description": "TSREVEL_ADMIN_TOKEN"}
        referenced = set()
        for path, item in doc["paths"].items():
            for method, operation in item.items():
                referenced |= {name for requirement in operation.get("security", []) for name in requirement}
                if method in ("post", "put") and path not in BODILESS:
                    assert "requestBody" in operation, f"{method.upper()} {path} has no requestBody"
        assert referenced == {"BearerToken"}, "the admin routes reference the scheme that exists"
        webhook = doc["paths"]["/webhooks/tripleseat"]["post"]
        assert "X-Signature" in [p["name"] for p in webhook["parameters"] if p["in"] == "header"]
        assert doc["paths"]["/admin/status"]["get"]["security"] == [{"BearerToken": []}]

    @pytest.mark.parametrize("path", ["/schema", "/schema/swagger", "/schema/redoc", "/schema/elements", "/schema/rapidoc", "/schema/openapi.yaml"])
    def test_no_documentation_page_loads_a_script_from_another_host(self, app_factory, path):
        app = app_factory()
        response = app.client.get(path)
        assert "<script" not in response.text.lower(), f"{path} serves a page with scripts"
        if response.status_code == 404:
            assert "error" in response.json()


class TestSignatures:
    def test_uppercase_hex_is_accepted(self, app_factory):
        app = app_factory()
        raw = body(definite())
        headers = {"X-Signature": sign_body(raw, secret=SIGNING_SECRET).upper()}
        assert app.client.post("/webhooks/tripleseat", content=raw, headers=headers).json()["status"] == "accepted"

    def test_a_wrong_signature_names_the_forms_tried_never_the_expected_value(self, app_factory):
        app = app_factory()
        raw = body(definite())
        response = app.client.post("/webhooks/tripleseat", content=raw, headers={"X-Signature": "0" * 64})
        assert response.status_code == 401
        error = response.json()["error"]
        assert all(form in error for form in ("hex", "base64", "sha256="))
        assert sign_body(raw, secret=SIGNING_SECRET)[:12] not in error.lower()


class TestHeaderNamesInTheLog:
    def test_header_names_are_logged_only_after_the_signature_verified_and_at_most_64_per_line(self, app_factory, caplog):
        app = app_factory()
        caplog.set_level(logging.INFO, logger="tsrevel.http")
        raw = body(definite())
        many = {f"x-junk-{i:03}": "v" for i in range(200)}
        assert app.client.post("/webhooks/tripleseat", content=raw, headers={**many, "X-Signature": "0" * 64}).status_code == 401
        assert [r for r in caplog.records if "header names" in r.getMessage()] == []
        assert app.client.post("/webhooks/tripleseat", content=raw, headers={**many, **signed(raw)}).status_code == 200
        (line,) = [r.getMessage() for r in caplog.records if "header names" in r.getMessage()]
        assert line.removeprefix("webhook header names: ").split(" (and ")[0].count(", ") + 1 == 64 and "more)" in line
