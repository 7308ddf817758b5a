"""Reading TripleSeat's invoice: line discounts, billing details, financials and payments (issue 12)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsrevel.domain.errors import PayloadError
from tsrevel.domain.events import PAID_STATES, UNPAID_STATES, Payment, TripleSeatEvent, WebhookEnvelope


def event(**fields: Any) -> TripleSeatEvent:
    return TripleSeatEvent.from_payload({"id": 7, **fields})


def refused(body: bytes) -> PayloadError:
    with pytest.raises(PayloadError) as caught:
        WebhookEnvelope.from_json_bytes(body)
    return caught.value


def with_document(document: dict[str, Any]) -> TripleSeatEvent:
    return event(documents=[{"line_items": [{"id": 1, "quantity": 1, "price": "420.00"}], **document}])


class TestDiscounts:
    def test_a_line_discount_is_read_as_an_amount_or_an_object(self) -> None:
        parsed = event(documents=[{"line_items": [
            {"id": 1, "quantity": 2, "price": "10.00", "discount": "2.50"},
            {"id": 2, "quantity": 1, "price": "5.00", "discount": {"amount": 1}},
            {"id": 3, "quantity": 1, "price": "5.00", "discount": None},
        ]}])
        assert [i.discount for i in parsed.line_items] == [Decimal("2.50"), Decimal("1.00"), Decimal("0.00")]
        assert parsed.discount_total == Decimal("3.50")

    def test_the_documents_discounts_total_is_the_whole_discount_and_the_lines_are_its_breakdown(self) -> None:
        parsed = event(documents=[{
            "line_items": [{"id": 1, "quantity": 1, "price": "100", "discount": "15"}, {"id": 2, "quantity": 1, "price": "50", "discount": "5"}],
            "financials": {"discounts_total": "20.00"},
        }])
        assert parsed.discount_total == Decimal("20.00")  # not 40.00

    def test_each_document_brings_its_own_discount(self) -> None:
        parsed = event(documents=[
            {"line_items": [{"id": 1, "quantity": 1, "price": "100", "discount": "15"}]},
            {"line_items": [{"id": 2, "quantity": 1, "price": "50"}], "financials": {"discounts_total": "5"}},
        ])
        assert parsed.discount_total == Decimal("20.00")


class TestBillingTotals:
    def test_document_billing_details_are_read_with_their_id_rate_and_total_price(self) -> None:
        parsed = with_document({"billing_totals": [{"billing_id": 31, "description": "Sales Tax", "value": "8.375", "total_price": "35.18"}]})
        (tax,) = parsed.billing_totals
        assert (tax.name, tax.amount, tax.billing_id, tax.rate, tax.document_index) == ("Sales Tax", Decimal("35.18"), "31", Decimal("8.375"), 0)

    def test_the_event_level_sums_are_used_only_when_no_document_has_billing_details(self) -> None:
        doc = {"line_items": [{"id": 1, "quantity": 1, "price": "1"}], "billing_totals": [{"description": "Sales Tax", "total_price": "3.00"}]}
        both = event(documents=[doc], billing_totals=[{"name": "Sales Tax", "total": "3.00"}])
        assert [(b.name, b.amount, b.document_index) for b in both.billing_totals] == [("Sales Tax", Decimal("3.00"), 0)]
        only_event = event(documents=[{"line_items": doc["line_items"]}], billing_totals=[{"name": "Sales Tax", "total": "3.00"}])
        assert [(b.name, b.amount, b.document_index) for b in only_event.billing_totals] == [("Sales Tax", Decimal("3.00"), None)]

    @pytest.mark.parametrize(("wire", "rate"), [("8.375%", Decimal("8.375")), ("n/a", None), ("", None), (None, None)])
    def test_the_rate_is_evidence_only_and_never_refuses_the_event(self, wire: object, rate: Decimal | None) -> None:
        parsed = with_document({"billing_totals": [{"description": "Sales Tax", "value": wire, "total_price": "35.18"}]})
        assert parsed.billing_totals[0].rate == rate

    def test_older_shapes_still_read(self) -> None:
        parsed = with_document({"billing_totals": [{"name": "Sales tax", "amount": "35.27"}, {"display_name": "Fee", "total": 4}]})
        assert [(b.name, b.amount) for b in parsed.billing_totals] == [("Sales tax", Decimal("35.27")), ("Fee", Decimal("4.00"))]


class TestPayments:
    def test_payments_are_read_from_the_documents_payment_set(self) -> None:
        parsed = with_document({"payment_set": {"payments": [
            {"id": 77, "amount": "100.00", "state": "Paid", "paid_at": "2025-12-01T17:00:00Z", "payment_method": {"name": "Visa"}, "x_new": 1},
        ]}})
        (payment,) = parsed.payments
        assert (payment.id, payment.amount, payment.state, payment.payment_method, payment.counted) == ("77", Decimal("100.00"), "paid", "Visa", Decimal("100.00"))

    def test_event_level_payments_are_used_only_when_no_document_has_any(self) -> None:
        parsed = event(documents=[{"line_items": []}], payment_set=[{"id": 1, "amount": 5, "state": "paid"}])
        assert [p.document_index for p in parsed.payments] == [None]

    @pytest.mark.parametrize(
        ("fields", "counted"),
        [
            ({"state": "paid"}, "100.00"),
            ({"state": "captured"}, "100.00"),
            ({"state": "pending"}, "0.00"),
            ({"state": "failed"}, "0.00"),
            ({"state": "refunded", "amount_refunded": "100"}, "0.00"),
            ({"state": "paid", "refunded_at": "2025-12-02T10:00:00Z"}, "0.00"),
            ({"state": "paid", "refunded_at": "2025-12-02T10:00:00Z", "amount_refunded": "30.00"}, "70.00"),
            ({"state": "partially_refunded", "amount_refunded": "30.00"}, "70.00"),
            ({"state": "", "paid_at": "2025-12-01T17:00:00Z"}, "100.00"),
            ({"state": ""}, "0.00"),
            ({"state": "chargeback_pending"}, "0.00"),
        ],
    )
    def test_a_payment_counts_when_paid_and_not_refunded(self, fields: dict[str, Any], counted: str) -> None:
        (payment,) = with_document({"payment_set": {"payments": [{"id": 1, "amount": "100.00", **fields}]}}).payments
        assert str(payment.counted) == counted

    def test_an_unknown_state_is_marked_unknown(self) -> None:
        (payment,) = with_document({"payment_set": {"payments": [{"id": 1, "amount": "1", "state": "chargeback_pending"}]}}).payments
        assert not payment.state_known

    @given(
        st.integers(0, 10**8), st.integers(0, 10**8), st.sampled_from(sorted(PAID_STATES | UNPAID_STATES) + ["", "weird"]),
        st.booleans(), st.booleans(),
    )
    def test_the_payment_rule(self, amount: int, refunded: int, state: str, paid_at: bool, refunded_at: bool) -> None:
        payment = Payment(
            id="1", amount=Decimal(amount) / 100, state=state, amount_refunded=Decimal(refunded) / 100,
            paid_at="2025-12-01T17:00:00Z" if paid_at else None, refunded_at="2025-12-02T10:00:00Z" if refunded_at else None,
        )
        paid = state in PAID_STATES or (state == "" and paid_at)
        assert Decimal(0) <= payment.counted <= payment.amount
        if not paid or (refunded_at and refunded == 0):
            assert payment.counted == 0
        else:
            assert payment.counted == max(payment.amount - payment.amount_refunded, Decimal(0))
