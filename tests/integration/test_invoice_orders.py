"""The invoice reaches Revel (issue 12): the exact OrderAllInOne body of the example event at the loopback fake Revel,
and the mapped order with its totals and payments in `deliveries show` and `/admin/deliveries/{id}` (issue 11, item 14)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from typing import Any

import attrs
import httpx
import pytest

from tests.helpers import body, example
from tests.integration.conftest import ROOT
from tests.integration.test_cli import cli, env, ok, revel_server, seed  # noqa: F401  # fixtures and helpers reused
from tsrevel.adapters.mapping_toml import load_mapping_file
from tsrevel.adapters.revel_http import HttpxRevelGateway, order_uuid
from tsrevel.domain.errors import GatewayError
from tsrevel.domain.events import WebhookEnvelope
from tsrevel.domain.mapping import map_event
from tsrevel.domain.orders import RevelOrder
from tsrevel.testing.servers import FakeRevelServer

pytestmark = pytest.mark.integration

KEY, SECRET = "invoice-key", "invoice-secret"
RECEIVED = datetime(2025, 12, 1, 17, 50, tzinfo=timezone.utc)  # 09:50 in Los Angeles

USER, STATION = "/enterprise/User/1/", "/resources/PosStation/4/"
EXPECTED_BODY = {
    "orderInfo": {
        "establishment": "/enterprise/Establishment/4/",
        "local_id": "tripleseat-55521700",
        "uuid": order_uuid("tripleseat-55521700"),
        "dining_option": 113,
        "call_name": "Marcus Okafor",
        "notes": "TripleSeat event 55521700: Okafor board breakfast; guests: 36; contact: Marcus Okafor "
                 "((702) 555-0188, marcus.okafor@example.com); Board room, 2nd floor. Set up by 7:30 AM.",
        "web_order": True,
        "subtotal": "420.00",
        "discount_amount": "20.00",
        "tax": "35.18",
        "service_charge": "10.00",
        "gratuity": "0.00",
        "final_total": "445.18",
        "remaining_due": "345.18",
        "discount": "/resources/Discount/3358/",
        "pickup_time": "2025-12-30T08:00:00",
        "number_of_people": 36,
        "created_by": USER,
        "updated_by": USER,
        "station": STATION,
    },
    "items": [
        {"product": "/resources/Product/580/", "quantity": 48, "price": "3.25", "initial_price": "3.25",
         "price_to_display": "3.25", "special_request": ""},
        {"product": "/resources/Product/590/", "quantity": 4, "price": "38.50", "initial_price": "38.50",
         "price_to_display": "38.50", "special_request": "oat milk on the side"},
        {"product": "/resources/Product/601/", "quantity": 2, "price": "55.00", "initial_price": "55.00",
         "price_to_display": "55.00", "special_request": ""},
    ],
    "history": [{"order_opened_by": USER, "order_opened_at": STATION, "opened": "2025-12-01T09:50:00"}],
    "payments": [
        {"payment_type": 236, "amount": "100.00", "tip": "0.00", "transaction_id": "tripleseat-payment-88001",
         "establishment": "/enterprise/Establishment/4/", "payment_date": "2025-12-01T09:45:00",
         "created_by": USER, "updated_by": USER, "station": STATION},
    ],
}


def example_order() -> RevelOrder:
    envelope = WebhookEnvelope.from_json_bytes((ROOT / "examples" / "webhook-invoice.json").read_bytes())
    assert envelope.event is not None
    order = map_event(envelope.event, load_mapping_file(ROOT / "examples" / "mapping.toml"), received_at=RECEIVED)
    assert isinstance(order, RevelOrder), order.describe()
    return order


@pytest.fixture
def revel() -> Iterator[FakeRevelServer]:
    with FakeRevelServer(api_key=KEY, api_secret=SECRET) as server:
        yield server


@pytest.fixture
async def gateway(revel: FakeRevelServer) -> AsyncIterator[HttpxRevelGateway]:
    async with httpx.AsyncClient(base_url=revel.url, timeout=5.0, trust_env=False) as client:
        yield HttpxRevelGateway(client, api_key=KEY, api_secret=SECRET, min_interval_s=0)


class TestTheExampleEventAtRevel:
    @pytest.mark.anyio
    async def test_the_body_is_exactly_the_invoice_with_the_deposit_and_a_history_entry(self, gateway, revel):
        await gateway.create_order(example_order(), correlation_id="invoice")
        [request] = revel.requests
        assert json.loads(request.body) == EXPECTED_BODY
        assert b'"final_total":"445.18"' in request.body  # money as 2-decimal strings, not numbers

    @pytest.mark.anyio
    async def test_revel_shows_the_grand_total_the_deposit_and_what_remains_due(self, gateway, revel):
        await gateway.create_order(example_order(), correlation_id="invoice")
        [stored] = revel.orders
        assert {k: stored[k] for k in ("subtotal", "discount_amount", "tax", "service_charge", "final_total", "remaining_due", "has_history", "closed")} == {
            "subtotal": "420.00", "discount_amount": "20.00", "tax": "35.18", "service_charge": "10.00",
            "final_total": "445.18", "remaining_due": "345.18", "has_history": True, "closed": False,
        }
        assert stored["orderhistory"] == [f"/resources/OrderHistory/{stored['id']}/"]

    @pytest.mark.anyio
    async def test_an_order_whose_parts_do_not_add_up_is_refused_with_400_and_not_stored(self, gateway, revel):
        body_with_wrong_total = {**EXPECTED_BODY, "orderInfo": {**EXPECTED_BODY["orderInfo"], "final_total": "446.00"}}
        async with httpx.AsyncClient(base_url=revel.url, trust_env=False) as client:
            answer = await client.post("/resources/OrderAllInOne/", json=body_with_wrong_total,
                                       headers={"API-AUTHENTICATION": f"{KEY}:{SECRET}"})
        assert answer.status_code == 400
        assert "final_total 446.00 is not subtotal 420.00 - discount 20.00 + tax 35.18" in answer.json()["error"]
        assert revel.orders == []

    @pytest.mark.anyio
    async def test_through_the_adapter_a_400_is_a_permanent_error(self, gateway, revel):
        broken = attrs.evolve(example_order(), discount_id=None)  # a discount without its Discount URI
        with pytest.raises(GatewayError) as caught:
            await gateway.create_order(broken, correlation_id="c")
        assert not caught.value.is_transient and caught.value.failure.status == 400
        assert "without a Discount URI" in str(caught.value)


def invoice_payload() -> dict[str, Any]:
    return example("invoice")


class TestShowTheMappedOrder:
    """Issue 11, item 14: before, `deliveries show` and /admin/deliveries/{id} showed no mapped order for done deliveries."""

    def test_deliveries_show_json_has_the_whole_order_for_a_done_delivery(self, env, revel_server):
        [done] = seed(env, invoice_payload())
        shown = json.loads(ok(env, "deliveries", "show", str(done), "--json").stdout)
        assert shown["state"] == "done"
        order = shown["mapped_order"]
        assert (order["final_total"], order["remaining_due"], order["discount_amount"], order["tax"]) == ("445.18", "345.18", "20.00", "35.18")
        assert [p["transaction_id"] for p in order["payments"]] == ["tripleseat-payment-88001"]
        assert revel_server.orders[0]["final_total"] == "445.18"

    def test_deliveries_show_text_has_totals_and_payments_for_done_and_dry_run(self, env, revel_server):
        [done] = seed(env, invoice_payload())
        text = ok(env, "deliveries", "show", str(done)).stdout
        assert "Mapped order:   tripleseat-55521700 at Revel establishment 4" in text
        assert "Final total:   445.18" in text and "Remaining due: 345.18" in text
        assert "Payment tripleseat-payment-88001: 100.00 at 2025-12-01T09:45:00" in text

        dry = dict(env, DRY_RUN="true")
        payload = invoice_payload()
        payload["event"]["id"] = 55521701
        [rehearsed] = seed(dry, payload)
        text = ok(dry, "deliveries", "show", str(rehearsed)).stdout
        assert "State:          dry_run" in text and "Final total:   445.18" in text
        assert json.loads(ok(dry, "deliveries", "show", str(rehearsed), "--json").stdout)["mapped_order"]["remaining_due"] == "345.18"


class TestReconcileTotals:
    def test_an_order_whose_revel_final_total_differs_from_the_ledgers_is_reported(self, env, revel_server, tmp_path):
        from tests.helpers import definite

        seed(env, invoice_payload(), definite())
        edited = next(o for o in revel_server.orders if o["local_id"] == "tripleseat-55521700")
        revel_server.edit_order(edited["id"], final_total="400.00")
        today = datetime.now(timezone.utc).date().isoformat()
        out = tmp_path / "reconcile.json"
        result = cli(env, "reconcile", "--from", today, "--to", today, "--json", str(out))
        assert result.exit_code == 1, result.output
        rows = [line.split("\t") for line in result.stdout.splitlines() if line.startswith("total")]
        assert rows == [["total", "tripleseat-55521700", f"{edited['id']}: final_total 400.00", f"{edited['id']}: recorded 445.18"]]
        [mismatch] = json.loads(out.read_text())["total_mismatches"]
        assert (mismatch["ledger_final_total"], mismatch["revel_final_total"]) == ("445.18", "400.00")

    def test_agreeing_totals_pass(self, env, revel_server):
        seed(env, invoice_payload())
        today = datetime.now(timezone.utc).date().isoformat()
        assert "✓ ledger and Revel agree" in ok(env, "reconcile", "--from", today, "--to", today).stdout


class TestAdminDelivery:
    def test_admin_deliveries_id_shows_the_mapped_order_for_done_and_dry_run(self, app_factory, tmp_path):
        from tests.integration.test_http_app import signed

        app = app_factory()
        raw = body(invoice_payload())
        delivery_id = app.client.post("/webhooks/tripleseat", content=raw, headers=signed(raw)).json()["delivery_id"]
        done = app.wait_state(delivery_id, "done")
        assert (done["mapped_order"]["final_total"], done["mapped_order"]["remaining_due"]) == ("445.18", "345.18")
        assert done["mapped_order"]["payments"][0]["amount"] == "100.00"

        # Its own database: on the first app's file, that app's live worker could claim the
        # rehearsal's delivery between its store and its claim and make the order for real.
        rehearsal = app_factory(dry_run=True, database_url=f"sqlite:///{tmp_path / 'rehearsal.db'}")
        payload = invoice_payload()
        payload["event"]["id"] = 55521702
        trace = rehearsal.client.post("/test/webhook", content=body(payload), headers=rehearsal.admin()).json()
        assert trace["decision"] == "dry_run"
        assert trace["mapped_order"]["final_total"] == "445.18"
        assert rehearsal.delivery(trace["delivery"]["id"])["mapped_order"]["payments"][0]["transaction_id"] == "tripleseat-payment-88001"
