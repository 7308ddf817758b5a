"""REVEL_LEGACY_LOCAL_IDS: the templates, and the find-before-create lookup that also finds the previous connector's orders."""

from __future__ import annotations

import asyncio

import attrs
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st_

from tests.helpers import definite
from tsrevel.domain import deliveries as st
from tsrevel.domain.errors import ConfigError
from tsrevel.domain.events import TripleSeatEvent
from tsrevel.domain.legacy import LegacyLookup, LegacyReferences, check_template
from tsrevel.domain.deliveries import LedgerEntry
from tsrevel.domain.mapping import map_event
from tsrevel.domain.reconcile import canonical_reference, reconcile
from tsrevel.entrypoints.settings import Settings
from tsrevel.testing import fake_world

# Text a template may hold around {event_id}: anything but braces and the comma that separates templates.
_AROUND = st_.text(st_.characters(blacklist_characters="{},", blacklist_categories=("Cs",)), max_size=12)
LEGACY = LegacyReferences.parse("Triple Seat {event_id}")
TEMPLATES = st_.builds(lambda a, b: f"{a}{{event_id}}{b}", _AROUND, _AROUND).filter(lambda t: t.strip() == t and t)


class TestTemplates:
    def test_the_previous_connectors_template_renders_its_reference_with_the_space(self) -> None:
        assert LegacyReferences.parse("Triple Seat {event_id}").for_event("123") == ("Triple Seat 123",)

    def test_several_templates_are_comma_separated_trimmed_and_deduplicated(self) -> None:
        refs = LegacyReferences.parse(" Triple Seat {event_id} , TS-{event_id},Triple Seat {event_id}")
        assert refs.templates == ("Triple Seat {event_id}", "TS-{event_id}")
        assert refs.for_event("7") == ("Triple Seat 7", "TS-7")

    @pytest.mark.parametrize(
        ("template", "complaint"),
        [
            ("Triple Seat", "has no {event_id}"),
            ("Triple Seat {id}", "has no {event_id}"),
            ("Triple Seat {event_id} {site}", "'{site}'"),
            ("Triple Seat {event_id}}", "'}'"),
            ("{Triple Seat {event_id}", "'{'"),
        ],
    )
    def test_a_template_with_no_placeholder_or_another_brace_stops_start_up(self, template: str, complaint: str) -> None:
        with pytest.raises(ConfigError) as caught:
            Settings.from_env({"REVEL_LEGACY_LOCAL_IDS": template})
        assert "REVEL_LEGACY_LOCAL_IDS" in str(caught.value) and complaint in str(caught.value)

    def test_the_default_is_no_legacy_lookup(self) -> None:
        assert Settings.from_env({}).revel_legacy_local_ids == ()
        assert not LegacyReferences(Settings.from_env({}).revel_legacy_local_ids)

    def test_settings_keep_the_templates_in_order(self) -> None:
        settings = Settings.from_env({"REVEL_LEGACY_LOCAL_IDS": "Triple Seat {event_id},ts:{event_id}"})
        assert settings.revel_legacy_local_ids == ("Triple Seat {event_id}", "ts:{event_id}")

    def test_prefixes_are_what_each_reference_starts_with(self) -> None:
        assert LegacyReferences.parse("Triple Seat {event_id},{event_id}-x").prefixes() == ("Triple Seat ", "")

    @given(TEMPLATES, st_.integers(1, 10**9).map(str))
    def test_a_rendered_reference_is_recognised_as_its_event(self, template: str, event_id: str) -> None:
        refs = LegacyReferences((check_template(template),))
        assert refs.event_id_of(refs.for_event(event_id)[0]) == event_id

    def test_a_reference_of_another_shape_names_no_event(self) -> None:
        refs = LegacyReferences.parse("Triple Seat {event_id}")
        assert refs.event_id_of("tripleseat-123") is None
        assert refs.event_id_of("Triple Seat ") is None
        assert refs.event_id_of("Triple Seat 12 3") is None


async def _world_with_legacy_order(template: str, event_id: int = 123):
    """A fake world whose Revel already holds the previous connector's order for the event."""
    world = fake_world()
    payload = definite(event_id)
    mapped = map_event(TripleSeatEvent.from_payload(payload["event"]), world.processor.mapping)
    legacy_id = LegacyReferences((template,)).for_event(str(event_id))[0]
    ref = world.revel.seed(attrs.evolve(mapped, local_id=legacy_id))
    world.revel.created.clear()  # seeded by the previous connector, not created by tsrevel
    return world, payload, legacy_id, ref


@pytest.mark.anyio
class TestLegacyLookupEndToEnd:
    async def test_an_event_ordered_by_the_previous_connector_is_found_not_ordered_again(self) -> None:
        world, payload, legacy_id, ref = await _world_with_legacy_order("Triple Seat {event_id}")
        world.processor.revel = LegacyLookup(world.revel, LegacyReferences.parse("Triple Seat {event_id}"))
        result = await world.deliver(payload)
        await world.settle()
        assert world.revel.created == []
        assert world.revel.lookups == ["tripleseat-123", "Triple Seat 123"]
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DONE
        entry = await world.store.get_order("123")
        assert (entry.state, entry.revel_order_id, entry.reference) == (st.LEDGER_CREATED, ref.order_id, "tripleseat-123")
        email = world.mailer.sent[0]
        assert "legacy reference" in email.subject
        assert "found under the legacy reference 'Triple Seat 123'" in email.text
        timeline = " | ".join(t.note for t in (await world.store.get_delivery(result.delivery_id)).timeline)
        assert f"found existing Revel order {ref.order_id} (Triple Seat 123)" in timeline

    async def test_without_the_setting_the_previous_connectors_order_is_duplicated(self) -> None:
        # The reason the setting exists (and the migration guide turns it on): this is the failure it prevents.
        world, payload, _legacy_id, _ref = await _world_with_legacy_order("Triple Seat {event_id}")
        await world.deliver(payload)
        await world.settle()
        assert [o.local_id for o in world.revel.created] == ["tripleseat-123"]

    async def test_a_second_delivery_of_the_event_is_recorded_against_the_found_order(self) -> None:
        world, payload, _legacy_id, ref = await _world_with_legacy_order("Triple Seat {event_id}")
        world.processor.revel = LegacyLookup(world.revel, LegacyReferences.parse("Triple Seat {event_id}"))
        await world.deliver(payload)
        await world.settle()
        again = definite(123, updated_at="12/28/2025 1:00 PM")
        second = await world.deliver(again)
        await world.settle()
        assert world.revel.created == []
        assert (await world.store.get_delivery(second.delivery_id)).state == st.DONE
        assert (await world.store.get_order("123")).revel_order_id == ref.order_id

    async def test_tsrevels_own_order_wins_over_a_legacy_one_and_no_legacy_lookup_is_made(self) -> None:
        world, payload, _legacy_id, _ref = await _world_with_legacy_order("Triple Seat {event_id}")
        mapped = map_event(TripleSeatEvent.from_payload(payload["event"]), world.processor.mapping)
        own = world.revel.seed(mapped)
        world.processor.revel = LegacyLookup(world.revel, LegacyReferences.parse("Triple Seat {event_id}"))
        await world.deliver(payload)
        await world.settle()
        assert world.revel.lookups == ["tripleseat-123"]
        assert (await world.store.get_order("123")).revel_order_id == own.order_id

    async def test_a_legacy_order_in_another_mapped_establishment_is_found_and_the_email_says_where(self) -> None:
        # The previous connector chose the site's establishment (8); the mapping file maps the event's location to 4.
        world, payload, _legacy_id, _ref = await _world_with_legacy_order("Triple Seat {event_id}")
        world.revel.orders.clear()
        mapped = map_event(TripleSeatEvent.from_payload(payload["event"]), world.processor.mapping)
        elsewhere = world.revel.seed(attrs.evolve(mapped, local_id="Triple Seat 123", establishment_id=5))
        world.revel.created.clear()
        world.processor.revel = LegacyLookup(world.revel, LEGACY, establishments=[4, 5, 9])
        await world.deliver(payload)
        await world.settle()
        assert world.revel.created == []
        assert (await world.store.get_order("123")).revel_order_id == elsewhere.order_id
        assert "in establishment 5, not 4 as the mapping file says" in world.mailer.sent[0].text

    async def test_the_orders_own_establishment_is_searched_first_then_the_others(self) -> None:
        world = fake_world()
        asked: list[tuple[int, str]] = []

        class Recording:
            async def find_order(self, establishment_id: int, reference: str, *, correlation_id: str):
                asked.append((establishment_id, reference))
                return await world.revel.find_order(establishment_id, reference, correlation_id=correlation_id)

            async def create_order(self, order, *, correlation_id: str):
                return await world.revel.create_order(order, correlation_id=correlation_id)

        world.processor.revel = LegacyLookup(Recording(), LEGACY, establishments=[9, 4, 5])
        await world.deliver(definite(789))
        await world.settle()
        assert asked == [(4, "tripleseat-789"), (4, "Triple Seat 789"), (5, "Triple Seat 789"), (9, "Triple Seat 789")]
        assert [o.local_id for o in world.revel.created] == ["tripleseat-789"]

    async def test_when_no_reference_is_in_revel_the_order_is_created_once_under_tsrevels_reference(self) -> None:
        world = fake_world()
        world.processor.revel = LegacyLookup(world.revel, LegacyReferences.parse("Triple Seat {event_id},TS-{event_id}"))
        await world.deliver(definite(456))
        await world.settle()
        assert world.revel.lookups == ["tripleseat-456", "Triple Seat 456", "TS-456"]
        assert [o.local_id for o in world.revel.created] == ["tripleseat-456"]


class TestAnyTemplate:
    @hsettings(max_examples=40)
    @given(template=TEMPLATES, others=st_.lists(TEMPLATES, max_size=2))
    def test_with_any_template_an_event_held_under_it_gets_no_create(self, template: str, others: list[str]) -> None:
        async def scenario() -> None:
            world, payload, legacy_id, ref = await _world_with_legacy_order(template)
            world.processor.revel = LegacyLookup(world.revel, LegacyReferences(tuple(dict.fromkeys([*others, template]))))
            await world.deliver(payload)
            await world.settle()
            assert world.revel.created == [], f"{legacy_id!r} was in Revel, yet tsrevel created an order"
            assert (await world.store.get_order("123")).revel_order_id == ref.order_id

        asyncio.run(scenario())


# ---- reconcile counts legacy references as the event's order -----------------------------------------


def _row(event_id: int, revel_order_id: int) -> LedgerEntry:
    return LedgerEntry(event_id=str(event_id), reference=f"tripleseat-{event_id}", establishment_id=4, delivery_id=event_id,
                       state=st.LEDGER_CREATED, revel_order_id=revel_order_id)


class TestReconcileWithLegacyReferences:
    def test_a_ledger_row_found_under_its_legacy_reference_is_not_missing(self) -> None:
        report = reconcile([_row(1, 501)], [(501, "Triple Seat 1")], legacy=LEGACY)
        assert report.ok and report.legacy_orders == 1 and report.orders_checked == 1

    def test_without_the_templates_the_same_row_is_missing(self) -> None:
        assert [m.reference for m in reconcile([_row(1, 501)], [(501, "Triple Seat 1")]).missing] == ["tripleseat-1"]

    def test_a_legacy_order_beside_tsrevels_own_is_a_duplicate_naming_both_references(self) -> None:
        report = reconcile([_row(2, 602)], [(502, "Triple Seat 2"), (602, "tripleseat-2")], legacy=LEGACY)
        assert [(d.reference, d.order_ids, d.local_ids) for d in report.duplicates] == [
            ("tripleseat-2", (502, 602), ("Triple Seat 2", "tripleseat-2"))
        ]
        assert report.problems() == ["duplicate: tripleseat-2 has 2 Revel orders (502 as 'Triple Seat 2', 602); the ledger points at 602"]

    def test_a_legacy_order_without_a_ledger_row_is_the_previous_connectors_not_an_orphan(self) -> None:
        report = reconcile([], [(503, "Triple Seat 3")], legacy=LEGACY)
        assert report.ok and report.orphans == () and report.legacy_orders == 1

    def test_two_legacy_orders_for_one_event_are_a_duplicate(self) -> None:
        two = LegacyReferences.parse("Triple Seat {event_id},TS-{event_id}")
        report = reconcile([], [(504, "Triple Seat 4"), (505, "TS-4")], legacy=two)
        assert [d.order_ids for d in report.duplicates] == [(504, 505)]

    @given(TEMPLATES, st_.integers(1, 10**8))
    def test_with_any_template_the_legacy_order_satisfies_its_row(self, template: str, event_id: int) -> None:
        refs = LegacyReferences((template,))
        legacy_id = refs.for_event(str(event_id))[0]
        assert canonical_reference(legacy_id, refs) == f"tripleseat-{event_id}" or legacy_id.startswith("tripleseat-")
        assert reconcile([_row(event_id, 77)], [(77, legacy_id)], legacy=refs).ok
