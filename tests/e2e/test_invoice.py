"""End to end (issue 12): a signed webhook with a discount, tax, a fee and a paid deposit becomes one Revel order
whose final total is TripleSeat's grand total and whose remaining due is the grand total less the deposit."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import wait_until
from tests.helpers import body, example

pytestmark = pytest.mark.e2e


def test_the_invoice_event_becomes_one_order_that_adds_up_with_the_deposit_recorded(start_service, service_env, fake_revel, fake_sendgrid):
    service = start_service(service_env)
    payload = example("invoice")
    document = payload["event"]["documents"][0]
    grand_total = document["financials"]["grand_total"]
    deposit = document["payment_set"]["payments"][0]["amount"]
    assert (grand_total, deposit) == ("445.18", "100.00")
    answer = service.signed_post(body(payload)).json()
    delivery = service.wait_state(answer["delivery_id"], "done")
    assert delivery["order_reference"] == "tripleseat-55521700"
    [order] = fake_revel.orders
    assert (order["final_total"], order["remaining_due"]) == ("445.18", "345.18")  # 445.18 - 100.00
    assert (order["discount_amount"], order["tax"], order["service_charge"]) == ("20.00", "35.18", "10.00")
    assert order["has_history"] is True and order["closed"] is False
    assert [(p["transaction_id"], p["amount"]) for p in order["payments"]] == [("tripleseat-payment-88001", "100.00")]
    shown = service.delivery(answer["delivery_id"])["mapped_order"]
    assert (shown["final_total"], shown["remaining_due"]) == ("445.18", "345.18")
    mail = wait_until(lambda: fake_sendgrid.mails, timeout_s=15, what="the order email")[0]
    assert "Final total:  445.18  (TripleSeat grand total 445.18)" in str(mail) and "Remaining due: 345.18" in str(mail)
    assert service.stop() == 0
