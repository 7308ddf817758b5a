"""The shipped examples: the mapping file loads, and the sample webhooks map the way the docs say."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from tsrevel.domain.events import WebhookEnvelope
from tsrevel.domain.mapping import MappingConfig, MappingFailure, map_event, mapping_from_dict
from tsrevel.domain.orders import RevelOrder
from tsrevel.domain.safety import Ignore, Process, SafetyFlags, decide

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LIVE = SafetyFlags(enable_connector=True, dry_run=False)


@pytest.fixture(scope="module")
def mapping() -> MappingConfig:
    with (EXAMPLES / "mapping.toml").open("rb") as file:
        return mapping_from_dict(tomllib.load(file))


def example(name: str) -> WebhookEnvelope:
    return WebhookEnvelope.from_json_bytes((EXAMPLES / name).read_bytes())


class TestExampleMapping:
    def test_the_example_mapping_file_loads(self, mapping: MappingConfig) -> None:
        assert (mapping.timezone, mapping.dining_option) == ("America/Los_Angeles", 3)
        assert set(mapping.locations) == {"201", "202"}
        assert set(mapping.sites) == {"15691"}
        tropicana = mapping.locations["201"]
        assert (tropicana.name, tropicana.revel_establishment, tropicana.dining_option) == ("Tropicana", 4, 113)
        assert dict(tropicana.products.by_menu_item) == {"5501": 580}
        assert dict(mapping.products.by_menu_item) == {"5501": 579, "5502": 581}
        assert mapping.products.by_name["og - glazed raised ring"] == 579


class TestExampleWebhooks:
    def test_the_definite_webhook_maps_to_an_order_at_establishment_4(self, mapping: MappingConfig) -> None:
        envelope = example("webhook-definite.json")
        assert decide(envelope, LIVE) == Process(dry_run=False)
        assert envelope.event is not None
        order = map_event(envelope.event, mapping)
        assert isinstance(order, RevelOrder), order
        assert order.establishment_id == 4
        assert order.dining_option == 113
        assert order.local_id == "tripleseat-55521609"
        # 48 x 3.25 + 4 x 38.5 + 2 x 64.00 = 156 + 154 + 128
        assert [(line.product_id, line.quantity, line.price) for line in order.items] == [
            (580, Decimal("48"), Decimal("3.25")),
            (590, Decimal("4"), Decimal("38.5")),
            (601, Decimal("2"), Decimal("64.00")),
        ]
        assert len(order.items) == 3
        assert order.total == Decimal("438.00")
        assert order.to_snapshot()["total"] == "438.00"
        assert order.pickup_time is not None and order.pickup_time.isoformat() == "2025-12-28T18:00:00"
        assert order.unmapped == ()

    def test_the_unmapped_webhook_fails_listing_both_unknown_items(self, mapping: MappingConfig) -> None:
        envelope = example("webhook-unmapped.json")
        assert envelope.object_key == "object"
        assert envelope.event is not None
        failure = map_event(envelope.event, mapping)
        assert isinstance(failure, MappingFailure)
        assert [u.display_name for u in failure.unmapped] == ["Fruit tower", "Egg bites (dozen)"]

    def test_the_unmapped_webhook_in_skip_mode_orders_the_glazed_rings_only(self, mapping: MappingConfig) -> None:
        envelope = example("webhook-unmapped.json")
        assert envelope.event is not None
        order = map_event(envelope.event, mapping, unmapped="skip")
        assert isinstance(order, RevelOrder)
        assert [(line.product_id, line.quantity) for line in order.items] == [(579, Decimal("12"))]
        assert order.total == Decimal("39.00")
        assert len(order.unmapped) == 2

    def test_the_tentative_webhook_is_ignored(self) -> None:
        decision = decide(example("webhook-tentative.json"), LIVE)
        assert isinstance(decision, Ignore)
        assert "TENTATIVE" in decision.reason

    def test_the_lead_webhook_is_ignored(self) -> None:
        envelope = example("webhook-lead.json")
        assert (envelope.object_key, envelope.object_id, envelope.event) == ("lead", "998877", None)
        assert isinstance(decide(envelope, LIVE), Ignore)


class TestExampleInvoice:
    def test_the_example_mapping_names_the_revel_ids_and_the_billing_details(self, mapping: MappingConfig) -> None:
        tropicana, harbor = mapping.locations["201"], mapping.locations["202"]
        assert (tropicana.revel_user, tropicana.revel_station, tropicana.payment_type, tropicana.discount) == (1, 4, 236, 3358)
        assert harbor.revel_station == 9
        assert {name: str(target) for name, target in mapping.billing.items()} == {
            "sales tax": "tax", "gratuity": "gratuity", "service fee": "service_fee",
            "service charge 18%": "service_fee", "delivery fee": "product:902",
        }

    def test_the_invoice_webhook_becomes_an_order_that_adds_up_with_its_deposit(self, mapping: MappingConfig) -> None:
        envelope = example("webhook-invoice.json")
        assert envelope.event is not None
        order = map_event(envelope.event, mapping)
        assert isinstance(order, RevelOrder), order
        # 48 x 3.25 + 4 x 38.50 + 2 x 55.00 = 420.00; - 20.00 discount + 35.18 tax + 10.00 service fee
        assert (order.subtotal, order.final_total, order.paid, order.remaining_due) == (
            Decimal("420.00"), Decimal("445.18"), Decimal("100.00"), Decimal("345.18"))
