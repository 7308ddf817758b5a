"""The HTTP edge hardened (issue 11): going live, odd bodies, our error shape, auth, the schema, limits."""

from __future__ import annotations

import pytest

from tests.helpers import body, definite
from tests.integration.conftest import SIGNING_SECRET
from tsrevel.domain.signature import sign_body

pytestmark = pytest.mark.integration


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
