"""Reading TripleSeat's invoice: line discounts, billing details, financials, payments, and payload sanity (issue 11 item 9)."""

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


class TestPayloadSanity:
    """Issue 11, item 9: each of these was accepted before, and would have stalled or misprinted later."""

    @pytest.mark.parametrize("field", ["id", "location_id", "booking_id"])
    def test_an_integer_id_over_64_digits_is_refused_with_its_path(self, field: str) -> None:
        body = ('{"webhook_trigger_type": "X", "event": {"id": 1, "%s": %s}}' % (field, "9" * 65)).encode()
        if field == "id":
            body = ('{"webhook_trigger_type": "X", "event": {"id": %s}}' % ("9" * 65)).encode()
        assert refused(body).path == f"event.{field}"

    def test_an_integer_id_of_64_digits_is_still_an_id(self) -> None:
        envelope = WebhookEnvelope.from_json_bytes(('{"webhook_trigger_type": "X", "event": {"id": %s}}' % ("9" * 64)).encode())
        assert envelope.event is not None and envelope.event.id == "9" * 64

    @pytest.mark.parametrize("wire", ["1E-999999999", "-1E-999999999", "1e999999999", "0.0000000000001"])
    @pytest.mark.parametrize("field", ["price", "quantity", "total_price", "discount"])
    def test_money_and_quantities_with_absurd_exponents_are_refused_with_the_field_path(self, wire: str, field: str) -> None:
        item = {"id": 1, "quantity": 1, "price": 1} | {field: wire}
        for spelling in (json.dumps(wire), wire):  # a JSON string and a JSON number
            body = json.dumps({"webhook_trigger_type": "X", "event": {"id": 1, "documents": [{"line_items": [item]}]}})
            body = body.replace(json.dumps(wire), spelling)
            assert refused(body.encode()).path == f"event.documents[0].line_items[0].{field}"

    @pytest.mark.parametrize("wire", ["NaN", "Infinity", "-Infinity", "sNaN"])
    def test_non_finite_money_is_refused_with_the_field_path(self, wire: str) -> None:
        body = json.dumps({"webhook_trigger_type": "X", "event": {"id": 1, "documents": [{"financials": {"grand_total": wire}}]}})
        assert refused(body.encode()).path == "event.documents[0].financials.grand_total"

    @pytest.mark.parametrize(("wire", "problem"), [("-20.00", "negative"), ("12.345", "more than 2 decimals")])
    def test_negative_money_and_fractions_of_a_cent_are_refused(self, wire: str, problem: str) -> None:
        with pytest.raises(PayloadError, match=problem) as caught:
            with_document({"payment_set": {"payments": [{"id": 1, "amount": wire, "state": "paid"}]}})
        assert caught.value.path == "event.documents[0].payment_set.payments[0].amount"

    def test_money_is_quantised_once_at_parse_time(self) -> None:
        parsed = with_document({"financials": {"grand_total": "446", "amount_due": 46.5, "discounts_total": "20.000"}})
        document = parsed.documents[0]
        assert [str(v) for v in (document.grand_total, document.amount_due, document.discounts_total)] == ["446.00", "46.50", "20.00"]
        assert str(parsed.line_items[0].price) == "420.00"

    @given(st.integers(-(10**64) + 1, 10**64 - 1))
    def test_every_integer_id_under_65_digits_reads_as_its_digits(self, number: int) -> None:
        envelope = WebhookEnvelope.from_json_bytes(('{"webhook_trigger_type": "X", "event": {"id": 1, "account_id": %d}}' % number).encode())
        assert envelope.event is not None and envelope.event.account_id == str(number)


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
