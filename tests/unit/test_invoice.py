"""Orders that match the TripleSeat invoice (issue 12): the invariant, every billing kind and policy, payments, change detection."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import body, example
from tsrevel.adapters.fakes import FakeRevel, RefusedOrder, revel_shows
from tsrevel.adapters.revel_http import order_body
from tsrevel.domain import deliveries as dst
from tsrevel.domain.changes import order_changes
from tsrevel.domain.errors import ConfigError, GatewayError
from tsrevel.domain.events import TripleSeatEvent
from tsrevel.domain.invoice import BillingLine, BillingTarget, balance, remaining_due
from tsrevel.domain.mapping import MappingConfig, MappingFailure, map_event, mapping_from_dict
from tsrevel.domain.orders import RevelOrder
from tsrevel.testing import EXAMPLE_MAPPING, fake_world
from tsrevel.testing.strategies import invoice_payloads, mapping_for

MAPPING = mapping_from_dict(EXAMPLE_MAPPING)
# The keys of RevelOrder.to_snapshot() before issue 12 (ledger rows written by the previous version).
OLD_SNAPSHOT_KEYS = ("event_id", "location_id", "location_name", "establishment_id", "local_id", "dining_option", "call_name",
                     "notes", "pickup_time", "items", "unmapped", "total", "guest_count")
CENTS = st.integers(0, 10**8).map(lambda c: Decimal(c) / 100)


def invoice(**event_changes: Any) -> dict[str, Any]:
    """examples/webhook-invoice.json, with event fields changed."""
    payload = example("invoice")
    payload["event"].update(event_changes)
    return payload


def document(payload: dict[str, Any]) -> dict[str, Any]:
    return payload["event"]["documents"][0]


def mapped(payload: dict[str, Any], mapping: MappingConfig = MAPPING, **options: Any) -> RevelOrder | MappingFailure:
    return map_event(TripleSeatEvent.from_payload(json.loads(body(payload), parse_float=Decimal)["event"]), mapping, **options)


def order_of(result: RevelOrder | MappingFailure) -> RevelOrder:
    assert isinstance(result, RevelOrder), result.describe()
    return result


def failure_of(result: RevelOrder | MappingFailure) -> MappingFailure:
    assert isinstance(result, MappingFailure), result
    return result


def with_mapping(**changes: Any) -> MappingConfig:
    data = copy.deepcopy(dict(EXAMPLE_MAPPING))
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if value is None:
            data[section].pop(name, None)
        else:
            data.setdefault(section, {})[name] = value
    return mapping_from_dict(data)


class TestTheInvariant:
    @given(st.lists(CENTS, max_size=8), CENTS, st.lists(CENTS, max_size=4))
    def test_parts_that_make_the_grand_total_balance_exactly(self, lines, discount, charges):
        billing = [BillingLine(name=f"c{i}", amount=a, kind="tax") for i, a in enumerate(charges)]
        grand = sum(lines, Decimal(0)) - discount + sum(charges, Decimal(0))
        assert balance(lines, discount, billing, grand).ok
        assert balance(lines, discount, billing, grand).unexplained == 0

    @given(st.lists(CENTS, max_size=8), CENTS, st.lists(CENTS, max_size=4), st.integers(-10**6, 10**6).filter(bool))
    def test_any_cent_off_is_unbalanced_and_said_exactly(self, lines, discount, charges, off_cents):
        billing = [BillingLine(name=f"c{i}", amount=a, kind="service_fee") for i, a in enumerate(charges)]
        computed = sum(lines, Decimal(0)) - discount + sum(charges, Decimal(0))
        result = balance(lines, discount, billing, computed + Decimal(off_cents) / 100)
        assert not result.ok
        assert result.unexplained == Decimal(off_cents) / 100
        assert result.describe().endswith(f"{result.unexplained} unexplained")

    @given(CENTS, st.lists(CENTS, max_size=5))
    def test_remaining_due_is_the_total_less_every_counted_payment(self, total, payments):
        assert remaining_due(total, payments) + sum(payments, Decimal(0)) == total

    def test_the_arithmetic_is_written_out_like_the_issue_says(self):
        charges = [BillingLine(name="Sales Tax", amount=Decimal("35.18"), kind="tax"),
                   BillingLine(name="Service Fee", amount=Decimal("10.00"), kind="service_fee")]
        text = balance([Decimal("420.00")], Decimal("20.00"), charges, Decimal("446.00")).describe()
        assert text == "lines 420.00 − discount 20.00 + tax 35.18 + fee 10.00 = 445.18; TripleSeat grand total 446.00: 0.82 unexplained"

    @given(invoice_payloads())
    def test_every_consistent_invoice_becomes_an_order_that_adds_up_to_the_grand_total(self, payload):
        event = TripleSeatEvent.from_payload(json.loads(json.dumps(payload), parse_float=Decimal))
        mapping = mapping_for(event, revel_ids={"payment_type": 236, "discount": 3358, "revel_user": 1, "revel_station": 4})
        order = order_of(map_event(event, mapping))
        assert order.final_total == event.grand_total
        counted = sum((p.counted for p in event.payments), Decimal(0))
        assert order.remaining_due == event.grand_total - counted
        assert order.closed == (order.remaining_due == 0)
        shown = revel_shows(order_body(order))  # what the venue sees in Revel: the same numbers
        assert (shown.final_total, shown.remaining_due, shown.has_history) == (order.final_total, order.remaining_due, True)


class TestTheExampleInvoice:
    def test_it_maps_to_an_order_matching_tripleseat_to_the_cent(self):
        order = order_of(mapped(invoice()))
        assert (order.subtotal, order.discount_amount, order.tax, order.service_charge, order.gratuity) == (
            Decimal("420.00"), Decimal("20.00"), Decimal("35.18"), Decimal("10.00"), Decimal("0.00"))
        assert order.final_total == Decimal("445.18") == order.grand_total
        assert [(p.transaction_id, p.amount) for p in order.payments] == [("tripleseat-payment-88001", Decimal("100.00"))]
        assert order.remaining_due == Decimal("345.18")
        assert (order.discount_id, order.payment_type, order.user_id, order.station_id) == (3358, 236, 1, 4)
        assert order.warnings == ()

    def test_how_the_money_was_read_is_logged_as_evidence(self):
        from tsrevel.domain.mapping import money_reading

        reading = money_reading(TripleSeatEvent.from_payload(invoice()["event"]))
        assert reading == (
            "document 0: discount 20.00 from financials.discounts_total (lines' discounts 20.00, its breakdown); "
            "2 billing detail(s) from the documents (event-level sums not added); 2 payment(s) read, 1 counted (100.00)"
        )

    def test_the_payment_date_is_on_the_locations_clock(self):
        order = order_of(mapped(invoice()))
        assert order.payments[0].paid_at == datetime(2025, 12, 1, 9, 45)  # 17:45 UTC in Los Angeles

    def test_the_history_opens_when_the_webhook_came_and_closes_only_when_nothing_is_due(self):
        came = datetime(2025, 12, 1, 17, 50, tzinfo=timezone.utc)
        order = order_of(mapped(invoice(), received_at=came))
        assert order.opened_at == datetime(2025, 12, 1, 9, 50) and not order.closed
        assert "closed" not in order_body(order)["history"][0]
        paid = invoice()
        document(paid)["payment_set"]["payments"][1]["state"] = "paid"
        full = order_of(mapped(paid, received_at=came))
        assert full.remaining_due == 0 and order_body(full)["history"][0]["closed"] == "2025-12-01T09:50:00"


class TestBillingKinds:
    @pytest.mark.parametrize(("target", "field"), [("tax", "tax"), ("gratuity", "gratuity"), ("service_fee", "service_charge")])
    def test_each_kind_lands_in_its_order_field(self, target, field):
        mapping = with_mapping(**{"billing__Service Fee": target})
        order = order_of(mapped(invoice(), mapping))
        assert getattr(order, field) == Decimal("10.00") + (Decimal("35.18") if field == "tax" else 0)
        assert order.final_total == Decimal("445.18")

    def test_a_product_target_adds_an_order_line_of_that_product(self):
        order = order_of(mapped(invoice(), with_mapping(**{"billing__Service Fee": "product:902"})))
        fee = order.items[-1]
        assert (fee.product_id, fee.quantity, fee.price, fee.billing) == (902, Decimal(1), Decimal("10.00"), "Service Fee")
        assert (order.subtotal, order.service_charge, order.final_total) == (Decimal("430.00"), Decimal("0.00"), Decimal("445.18"))
        assert order_body(order)["items"][-1]["product"] == "/resources/Product/902/"

    def test_names_match_ignoring_case_and_spaces(self):
        payload = invoice()
        document(payload)["billing_totals"][0]["description"] = "  sales   TAX "
        assert order_of(mapped(payload)).tax == Decimal("35.18")

    @pytest.mark.parametrize(
        ("billing", "problem"),
        [({"Tax": "vat"}, "is not \"tax\""), ({"Tax": "product:x"}, "is not \"tax\""), ({"Tax": 3}, "is not \"tax\""),
         ({"  ": "tax"}, "empty billing detail name"), ({"Tax": "tax", " tax ": "gratuity"}, "mapped twice")],
    )
    def test_a_bad_billing_table_stops_start_up_with_the_key(self, billing, problem):
        with pytest.raises(ConfigError, match=problem):
            mapping_from_dict({"billing": billing})

    def test_targets_are_read_case_and_space_insensitively(self):
        assert BillingTarget.parse(" Service_Fee ") == BillingTarget("service_fee")
        assert BillingTarget.parse("PRODUCT: 902") == BillingTarget("product", 902)
        assert str(BillingTarget("product", 902)) == "product:902"


class TestUnmappedBillingPolicy:
    def test_fail_is_dead_with_the_names_and_the_exact_toml_lines_to_add(self):
        failure = failure_of(mapped(invoice(), with_mapping(**{"billing__Sales Tax": None, "billing__Service Fee": None})))
        assert failure.unmapped_billing == ("Sales Tax", "Service Fee")
        assert failure.billing_lines == ('"Sales Tax" = "tax"', '"Service Fee" = "service_fee"')
        assert "add to the mapping file's [billing] table: \"Sales Tax\" = \"tax\"; \"Service Fee\" = \"service_fee\"" in failure.describe()

    def test_the_lines_given_are_the_fix(self):
        broken = with_mapping(**{"billing__Sales Tax": None, "billing__Service Fee": None})
        failure = failure_of(mapped(invoice(), broken))
        import tomllib

        fixed = copy.deepcopy(dict(EXAMPLE_MAPPING))
        fixed["billing"] = {**{k: v for k, v in fixed["billing"].items() if k not in ("Sales Tax", "Service Fee")},
                            **tomllib.loads("\n".join(failure.billing_lines))}
        assert order_of(mapped(invoice(), mapping_from_dict(fixed))).final_total == Decimal("445.18")

    def test_skip_makes_the_order_without_them_and_tells_ops(self):
        order = order_of(mapped(invoice(), with_mapping(**{"billing__Service Fee": None}), unmapped="skip"))
        assert (order.service_charge, order.final_total) == (Decimal("0.00"), Decimal("435.18"))
        assert any("'Service Fee' 10.00" in w and "UNMAPPED_ITEMS=skip" in w for w in order.warnings)
        assert revel_shows(order_body(order)).final_total == Decimal("435.18")

    def test_a_zero_detail_that_is_not_mapped_is_ignored_with_a_note(self):
        payload = invoice()
        document(payload)["billing_totals"].append({"description": "Corkage", "total_price": "0"})
        order = order_of(mapped(payload))
        assert any("'Corkage' is 0.00" in w for w in order.warnings)

    @pytest.mark.anyio
    async def test_through_the_processor_fail_is_dead_and_the_email_shows_the_toml_block(self):
        world = fake_world(dry_run=False, mapping=with_mapping(**{"billing__Service Fee": None}))
        outcome = await world.connector().handle(body(invoice()))
        assert outcome.state == dst.DEAD and world.revel.created == []
        (email,) = [e for e in outcome.emails if e.kind == "failure"]
        assert "[billing]\n\"Service Fee\" = \"service_fee\"" in email.text


class TestDiscountsAndPaymentsConfiguration:
    def test_a_discount_without_a_discount_id_is_dead_with_what_to_add(self):
        failure = failure_of(mapped(invoice(), with_mapping(defaults__discount=None)))
        assert "discount of 20.00 but no Revel discount id" in failure.describe()
        assert "[locations.201]" in failure.describe()

    def test_without_a_payment_type_payments_are_not_recorded_and_ops_are_told(self):
        order = order_of(mapped(invoice(), with_mapping(defaults__payment_type=None)))
        assert order.recorded_payments == () and order_body(order)["payments"] == []
        assert order.remaining_due == Decimal("445.18")
        assert any("not recorded in Revel" in w for w in order.warnings)

    def test_ids_are_overridable_per_location(self):
        data = copy.deepcopy(dict(EXAMPLE_MAPPING))
        data["locations"]["201"].update(revel_user=7, revel_station=8, payment_type=9, discount=10)
        order = order_of(mapped(invoice(), mapping_from_dict(data)))
        assert (order.user_id, order.station_id, order.payment_type, order.discount_id) == (7, 8, 9, 10)
        info = order_body(order)["orderInfo"]
        assert (info["created_by"], info["station"], info["discount"]) == ("/enterprise/User/7/", "/resources/PosStation/8/", "/resources/Discount/10/")

    def test_an_unknown_payment_state_is_not_counted_and_lands_on_the_timeline(self):
        payload = invoice()
        document(payload)["payment_set"]["payments"][0]["state"] = "chargeback_pending"
        order = order_of(mapped(payload))
        assert order.payments == () and order.remaining_due == Decimal("445.18")
        assert any("'chargeback_pending'" in w for w in order.warnings)

    @pytest.mark.anyio
    async def test_the_unknown_state_is_listed_in_the_deliverys_timeline(self):
        payload = invoice()
        document(payload)["payment_set"]["payments"][0]["state"] = "chargeback_pending"
        world = fake_world(dry_run=True)
        outcome = await world.connector().handle(body(payload))
        delivery = await world.store.get_delivery(outcome.delivery_id)
        assert any("'chargeback_pending'" in t.note for t in delivery.timeline)

    def test_payments_larger_than_the_total_are_refused(self):
        payload = invoice()
        document(payload)["payment_set"]["payments"][1]["state"] = "paid"
        document(payload)["payment_set"]["payments"][1]["amount"] = "400.00"
        assert "exceed the order's total" in failure_of(mapped(payload)).describe()


class TestUnbalanced:
    def test_numbers_that_do_not_add_up_are_dead_with_the_arithmetic(self):
        payload = invoice()
        document(payload)["financials"]["grand_total"] = "446.00"
        failure = failure_of(mapped(payload))
        assert failure.problems == (
            "TripleSeat's numbers do not add up: lines 420.00 − discount 20.00 + tax 35.18 + fee 10.00 = 445.18; "
            "TripleSeat grand total 446.00: 0.82 unexplained",
        )

    @pytest.mark.anyio
    async def test_through_the_processor_nothing_reaches_revel(self):
        payload = invoice()
        document(payload)["billing_totals"].pop()  # a billing detail missing from the payload
        world = fake_world(dry_run=False)
        outcome = await world.connector().handle(body(payload))
        assert outcome.state == dst.DEAD and world.revel.calls == []
        assert "+ tax 35.18 = 435.18; TripleSeat grand total 445.18: 10.00 unexplained" in outcome.note


class TestTheFakesRefuseWhatDoesNotAddUp:
    def body(self) -> dict[str, Any]:
        return json.loads(json.dumps(order_body(order_of(mapped(invoice()))), default=str))

    @pytest.mark.parametrize(
        ("path", "value", "problem"),
        [(("orderInfo", "final_total"), "446.00", "final_total 446.00 is not subtotal"),
         (("orderInfo", "subtotal"), "421.00", "subtotal 421.00 is not the items' total 420.00"),
         (("orderInfo", "remaining_due"), "445.18", "remaining_due 445.18 is not"),
         (("orderInfo", "discount"), None, "without a Discount URI"),
         (("orderInfo", "tax"), "-1.00", "0 or more")],
    )
    def test_a_body_whose_parts_do_not_add_up_is_refused(self, path, value, problem):
        wire = self.body()
        wire[path[0]][path[1]] = value
        with pytest.raises(RefusedOrder, match=problem):
            revel_shows(wire)

    @pytest.mark.anyio
    async def test_the_in_memory_fake_answers_400_and_stores_nothing(self):
        revel = FakeRevel()
        order = order_of(mapped(invoice()))
        broken = attrs_evolve(order, gratuity=Decimal("-1.00"))
        with pytest.raises(GatewayError) as caught:
            await revel.create_order(broken, correlation_id="c")
        assert caught.value.failure.status == 400 and not caught.value.is_transient
        assert revel.created == []
        await revel.create_order(order, correlation_id="c")
        shown = revel.shown[order.local_id]
        assert (shown.final_total, shown.paid, shown.remaining_due, shown.has_history) == (
            Decimal("445.18"), Decimal("100.00"), Decimal("345.18"), True)


def attrs_evolve(order: RevelOrder, **changes: Any) -> RevelOrder:
    import attrs

    return attrs.evolve(order, **changes)


class TestChangeDetection:
    def ordered(self) -> dict[str, Any]:
        return order_of(mapped(invoice())).to_snapshot()

    def changes(self, payload: dict[str, Any], ordered: dict[str, Any] | None = None) -> list[str]:
        current = map_event(TripleSeatEvent.from_payload(payload["event"]), MAPPING, strict_money=False)
        return order_changes(ordered if ordered is not None else self.ordered(), current)

    def test_the_same_invoice_is_no_change(self):
        assert self.changes(invoice()) == []

    def test_a_new_payment_is_reported(self):
        payload = invoice()
        document(payload)["payment_set"]["payments"][1]["state"] = "paid"
        assert self.changes(payload) == ["new payment tripleseat-payment-88002: 345.18"]

    def test_a_refunded_payment_is_reported(self):
        payload = invoice()
        document(payload)["payment_set"]["payments"][0].update(state="refunded", amount_refunded="100.00")
        assert self.changes(payload) == [
            "payment tripleseat-payment-88001 of 100 no longer counts (refunded, failed or removed in TripleSeat)"]

    def test_a_partial_refund_is_reported(self):
        payload = invoice()
        document(payload)["payment_set"]["payments"][0].update(refunded_at="2025-12-05T10:00:00Z", amount_refunded="40.00")
        assert self.changes(payload) == ["payment tripleseat-payment-88001: 100 -> 60 (partly refunded)"]

    def test_changed_totals_and_billing_details_are_reported(self):
        payload = invoice(grand_total="455.18")
        document(payload)["billing_totals"][1]["total_price"] = "20.00"
        document(payload)["financials"].update(grand_total="455.18", discounts_total="20.00")
        assert self.changes(payload) == [
            "grand total (TripleSeat): 445.18 -> 455.18",
            "billing detail 'Service Fee': 10 -> 20",
        ]

    @pytest.mark.anyio
    async def test_an_event_ordered_by_the_previous_version_is_no_change_before_billing_is_mapped(self):
        from tsrevel.domain.changes import event_changes

        old = {k: v for k, v in self.ordered().items() if k in OLD_SNAPSHOT_KEYS}
        unmapped_billing = with_mapping(**{"billing__Sales Tax": None, "billing__Service Fee": None}, defaults__discount=None)
        event = TripleSeatEvent.from_payload(invoice()["event"])
        assert event_changes(old, event, unmapped_billing, unmapped="fail") == []
        # With a snapshot that has them, a detail no longer mapped is still no change: its amount is the same.
        assert event_changes(self.ordered(), event, unmapped_billing, unmapped="fail") == []

    def test_a_payload_without_payments_or_billing_details_is_not_read_as_refunds_or_removals(self):
        payload = invoice()
        del document(payload)["payment_set"]
        del document(payload)["billing_totals"]
        payload["event"].pop("billing_totals")
        document(payload)["financials"]["grand_total"] = "445.18"
        assert self.changes(payload) == []

    def test_a_new_discount_is_reported(self):
        payload = invoice()
        document(payload)["financials"]["discounts_total"] = "30.00"
        assert "discount: 20 -> 30" in self.changes(payload)

    def test_a_ledger_snapshot_written_before_totals_existed_raises_no_false_alarm(self):
        old = {k: v for k, v in self.ordered().items()
               if k not in ("subtotal", "discount_amount", "tax", "service_charge", "gratuity", "final_total", "remaining_due",
                            "grand_total", "payments", "payments_recorded", "payments_read", "billing", "history",
                            "arithmetic", "warnings")}
        with_fee_line = invoice()  # a fee now mapped to a product line is not an "added item" either
        assert self.changes(with_fee_line, old) == []
        mapping = with_mapping(**{"billing__Service Fee": "product:902"})
        current = map_event(TripleSeatEvent.from_payload(invoice()["event"]), mapping, strict_money=False)
        assert order_changes(old, current) == []

    @given(invoice_payloads())
    def test_any_invoice_compared_with_its_own_snapshot_old_or_new_is_no_change(self, payload):
        event = TripleSeatEvent.from_payload(json.loads(json.dumps(payload), parse_float=Decimal))
        mapping = mapping_for(event, revel_ids={"payment_type": 236, "discount": 3358})
        order = order_of(map_event(event, mapping))
        snapshot = json.loads(json.dumps(order.to_snapshot()))  # through the ledger's JSON
        old = {k: v for k, v in snapshot.items() if k in OLD_SNAPSHOT_KEYS}
        assert order_changes(snapshot, order) == [] and order_changes(old, order) == []

    @pytest.mark.anyio
    async def test_through_the_processor_a_refund_after_the_order_needs_attention(self):
        world = fake_world(dry_run=False)
        world.processor.events = None
        assert (await world.connector().handle(body(invoice()))).state == dst.DONE
        refunded = invoice()
        refunded["webhook_trigger_type"] = "UPDATE_EVENT"
        document(refunded)["payment_set"]["payments"][0].update(state="refunded", amount_refunded="100.00")
        outcome = await world.connector().handle(body(refunded))
        assert outcome.state == dst.NEEDS_ATTENTION and len(world.revel.created) == 1
        (email,) = [e for e in outcome.emails if e.kind == "needs_attention"]
        assert "payment tripleseat-payment-88001 of 100 no longer counts" in email.text


class TestWhatPeopleSee:
    def test_connector_map_shows_the_whole_order_with_totals_and_payments(self):
        import tsrevel
        from tsrevel.testing import MemoryStore

        connector = tsrevel.Connector(store=MemoryStore(), revel=FakeRevel(), mapping=EXAMPLE_MAPPING)
        order = order_of(connector.map(body(invoice())))
        snapshot = order.to_snapshot()
        assert (snapshot["final_total"], snapshot["remaining_due"], snapshot["discount_amount"]) == ("445.18", "345.18", "20.00")
        assert snapshot["payments"][0]["transaction_id"] == "tripleseat-payment-88001"
        assert snapshot["billing"] == [
            {"name": "Sales Tax", "amount": "35.18", "kind": "tax", "product_id": None},
            {"name": "Service Fee", "amount": "10.00", "kind": "service_fee", "product_id": None},
        ]

    @pytest.mark.anyio
    async def test_the_dry_run_email_shows_the_totals_the_deposit_and_what_remains_due(self, caplog):
        import logging

        world = fake_world(dry_run=True)
        with caplog.at_level(logging.INFO, logger="tsrevel.processing"):
            outcome = await world.connector().handle(body(invoice()))
        assert any("= TripleSeat grand total 445.18 (read: document 0: discount 20.00" in r.getMessage() for r in caplog.records)
        assert outcome.state == dst.DRY_RUN
        (email,) = [e for e in outcome.emails if e.kind == "dry_run"]
        for line in ("Subtotal:     420.00", "Discount:     -20.00  (Revel discount 3358)", "Tax:          35.18",
                     "Service fee:  10.00", "Final total:  445.18  (TripleSeat grand total 445.18)",
                     "  100.00  tripleseat-payment-88001  2025-12-01 09:45:00  Visa ending 4242", "Remaining due: 345.18"):
            assert line in email.text, line
        assert "final total 445.18, remaining due 345.18" in outcome.note

    @pytest.mark.anyio
    async def test_the_order_created_email_shows_the_same_and_revel_shows_it_too(self):
        world = fake_world(dry_run=False)
        outcome = await world.connector().handle(body(invoice()))
        assert outcome.state == dst.DONE
        (email,) = [e for e in outcome.emails if e.kind == "order_created"]
        assert "Final total:  445.18" in email.text and "Remaining due: 345.18" in email.text
        shown = world.revel.shown["tripleseat-55521700"]
        assert (shown.final_total, shown.remaining_due, shown.has_history) == (Decimal("445.18"), Decimal("345.18"), True)


class TestTheReadingIsConfigurable:
    """[invoice]: where a real payload differs from our reading, the mapping file says how to read it."""

    def test_discounts_lines_ignores_the_documents_discounts_total(self):
        payload = invoice()
        document(payload)["financials"]["discounts_total"] = "25.00"  # disagrees with its lines (20.00)
        document(payload)["financials"]["grand_total"] = "445.18"
        assert "TripleSeat grand total 445.18: 5.00 unexplained" in failure_of(mapped(payload)).describe()  # default reading: 25.00
        order = order_of(mapped(payload, with_mapping(invoice__discounts="lines")))
        assert (order.discount_amount, order.final_total) == (Decimal("20.00"), Decimal("445.18"))

    def test_billing_totals_event_reads_the_event_level_sums(self):
        payload = invoice()
        payload["event"]["billing_totals"] = [{"name": "Sales Tax", "total": "35.18"}, {"name": "Gratuity", "total": "10.00"}]
        default = order_of(mapped(payload))
        assert (default.service_charge, default.gratuity) == (Decimal("10.00"), Decimal("0.00"))
        event_level = order_of(mapped(payload, with_mapping(invoice__billing_totals="event")))
        assert (event_level.service_charge, event_level.gratuity) == (Decimal("0.00"), Decimal("10.00"))

    @pytest.mark.parametrize(("table", "problem"), [({"discounts": "both"}, 'invoice.discounts: \'both\' is not one of "document_total", "lines"'),
                                                    ({"rounding": "up"}, "invoice.rounding: unknown key")])
    def test_a_bad_reading_stops_start_up(self, table, problem):
        with pytest.raises(ConfigError, match=problem):
            mapping_from_dict({"invoice": table})
