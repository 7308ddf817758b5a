"""End to end: the switch-over from the previous connector (REVEL_LEGACY_LOCAL_IDS, site: entries in ALLOWED_LOCATIONS)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import wait_until
from tests.helpers import body, definite

pytestmark = pytest.mark.e2e

ORDERS = "/resources/Order/"


class TestLegacyLookupAtTheService:
    def test_an_event_the_previous_connector_ordered_gets_no_create(self, start_service, service_env, fake_revel, fake_sendgrid):
        legacy_order = fake_revel.add_order("Triple Seat 123", establishment_id=4)
        service = start_service({**service_env, "REVEL_LEGACY_LOCAL_IDS": "Triple Seat {event_id}"})
        answer = service.signed_post(body(definite(123))).json()
        delivery = service.wait_state(answer["delivery_id"], "done")
        assert [r for r in fake_revel.requests if r.method == "POST"] == []
        assert len(fake_revel.orders) == 1
        # The space reaches Revel as a space: the query decodes to exactly the previous connector's local_id.
        lookups = [r.query["local_id"] for r in fake_revel.requests if r.path == ORDERS]
        assert lookups == [["tripleseat-123"], ["Triple Seat 123"]]
        assert all(r.query["establishment"] == ["4"] for r in fake_revel.requests if r.path == ORDERS)
        assert any(f"Revel order {legacy_order} (Triple Seat 123)" in step["note"] for step in delivery["timeline"])
        wait_until(lambda: fake_sendgrid.mails, timeout_s=15, what="the order email")
        assert "found under the legacy reference 'Triple Seat 123'" in json.dumps(fake_sendgrid.mails[0])

    def test_without_the_setting_the_same_revel_gets_a_second_order(self, start_service, service_env, fake_revel):
        fake_revel.add_order("Triple Seat 124", establishment_id=4)
        service = start_service(service_env)
        answer = service.signed_post(body(definite(124))).json()
        service.wait_state(answer["delivery_id"], "done")
        assert sorted(o["local_id"] for o in fake_revel.orders) == ["Triple Seat 124", "tripleseat-124"]


class TestSiteAllowList:
    def test_an_event_with_only_a_site_id_is_ordered_when_its_site_is_allowed(self, start_service, service_env, fake_revel):
        service = start_service({**service_env, "ALLOWED_LOCATIONS": "202,site:15691"})
        payload = definite(125)
        del payload["event"]["location_id"]
        answer = service.signed_post(body(payload)).json()
        service.wait_state(answer["delivery_id"], "done")
        assert [o["local_id"] for o in fake_revel.orders] == ["tripleseat-125"]

    def test_unknown_allow_list_entries_are_named_in_one_start_up_warning(self, start_service, service_env):
        service = start_service({**service_env, "ALLOWED_LOCATIONS": "201,999,site:15691,site:77777"})
        assert service.stop() == 0
        warnings = [line for line in service.log_lines() if "ALLOWED_LOCATIONS" in line.get("msg", "") and line.get("level") == "WARNING"]
        assert len(warnings) == 1, warnings
        assert "999, site:77777" in warnings[0]["msg"]
