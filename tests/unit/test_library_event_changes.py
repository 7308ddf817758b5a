"""Changes after the order, through the public Connector on fakes: the diff operators get, void requests, never a second order."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.helpers import body, definite
from tsrevel.domain import deliveries as st
from tsrevel.domain.changes import event_changes, order_changes
from tsrevel.domain.events import TripleSeatEvent
from tsrevel.domain.mapping import map_event, mapping_from_dict
from tsrevel.testing import EXAMPLE_MAPPING, FakeWorld, fake_world

pytestmark = pytest.mark.anyio
MAPPING = mapping_from_dict(EXAMPLE_MAPPING)


async def ordered_world(*, api: bool = False) -> tuple[FakeWorld, dict[str, Any]]:
    """A world where the example event already has its Revel order; without the TripleSeat API unless asked."""
    world = fake_world(dry_run=False)
    if not api:
        world.processor.events = None
    payload = definite()
    outcome = await world.connector().handle(body(payload))
    assert outcome.state == "done"
    return world, payload


def changed(payload: dict[str, Any], trigger: str = "UPDATE_EVENT", **fields: Any) -> dict[str, Any]:
    again = copy.deepcopy(payload)
    again["webhook_trigger_type"] = trigger
    again["event"].update(fields)
    return again


async def send(world: FakeWorld, payload: dict[str, Any]):
    outcome = await world.connector().handle(body(payload))
    assert len(world.revel.created) == 1, "a change must never make a second order"
    return outcome


def attention_lines(outcome) -> list[str]:
    (email,) = [e for e in outcome.emails if e.kind == "needs_attention"]
    section = email.text.split("What changed:\n", 1)[1].split("\n\n", 1)[0]
    return [line.removeprefix("- ") for line in section.splitlines()]


class TestWhatOperatorsAreTold:
    async def test_a_new_guest_count_is_said_explicitly(self):
        world, payload = await ordered_world()
        outcome = await send(world, changed(payload, "CHANGE_EVENT_GUEST_COUNTS", guest_count=55))
        assert outcome.state == st.NEEDS_ATTENTION
        assert attention_lines(outcome) == ["guest count: 40 -> 55"]  # the notes line would only repeat it
        assert "guest count: 40 -> 55" in outcome.note

    async def test_a_guaranteed_count_counts_over_the_expected_one(self):
        world, payload = await ordered_world()
        outcome = await send(world, changed(payload, guaranteed_guest_count=38))
        assert attention_lines(outcome) == ["guest count: 40 -> 38"]

    async def test_a_new_time_is_the_new_pickup_time(self):
        world, payload = await ordered_world()
        outcome = await send(
            world, changed(payload, "CHANGE_EVENT_DATETIME", event_start="12/28/2025 7:30 PM", event_start_utc="2025-12-29T03:30:00Z",
                           event_start_iso8601="2025-12-28T19:30:00-08:00"),
        )
        assert attention_lines(outcome) == ["pickup time: '2025-12-28T18:00:00' -> '2025-12-28T19:30:00'"]

    async def test_a_new_location_names_the_location_and_the_revel_establishment(self):
        world, payload = await ordered_world()
        outcome = await send(world, changed(payload, "REASSIGN_EVENT_LOCATION", location_id=202))
        lines = attention_lines(outcome)
        assert "Revel establishment: 4 -> 5" in lines and "location: '201' -> '202'" in lines
        assert "void this order and enter it at the new location" in outcome.emails[0].text

    async def test_items_added_removed_and_requantified_are_each_listed(self):
        world, payload = await ordered_world()
        again = changed(payload)
        items = again["event"]["documents"][0]["line_items"]
        items[0]["quantity"] = "60"  # glazed rings: 48 -> 60
        del items[2]  # the pastry platter is gone
        items.append({"id": 4, "quantity": 1, "price": "12.00", "display_name": "Cold brew, 96 oz box", "menu_item_id": 5502})
        lines = attention_lines(await send(world, again))
        assert "changed OG - Glazed raised ring (product 580): 48 x 3.25 -> 60 x 3.25" in lines
        assert "removed Assorted pastry platter (product 601): was 2 x 64" in lines
        assert "added Cold brew, 96 oz box (product 581): 1 x 12" in lines

    async def test_the_email_says_what_to_do_in_revel_and_in_tsrevel(self):
        world, payload = await ordered_world()
        outcome = await send(world, changed(payload, guest_count=55))
        (email,) = outcome.emails
        assert email.subject == f"[tsrevel] CHANGED after ordering: TripleSeat event {payload['event']['id']} (Ponder family brunch)"
        assert "What to do in Revel:" in email.text
        assert f"Open the order tripleseat-{payload['event']['id']} (Revel id 1001)" in email.text
        assert "Nothing to do in tsrevel" in email.text and "never creates a second order" in email.text

    async def test_a_redelivery_with_nothing_changed_is_done_without_an_email(self):
        world, payload = await ordered_world()
        outcome = await send(world, changed(payload, "REASSIGN_EVENT_OWNERSHIP"))
        assert (outcome.state, outcome.emails) == (st.DONE, ())
        assert outcome.order_reference == f"tripleseat-{payload['event']['id']}"


class TestUpdatesWithoutLineItems:
    async def test_without_the_api_only_what_the_webhook_carries_is_compared(self):
        world, payload = await ordered_world()
        bare = changed(payload, "CHANGE_EVENT_GUEST_COUNTS", guest_count=55)
        del bare["event"]["documents"]
        outcome = await send(world, bare)
        assert attention_lines(outcome) == ["guest count: 40 -> 55"]  # not "removed" items: they are unknown

    async def test_without_the_api_an_unchanged_bare_update_is_done(self):
        world, payload = await ordered_world()
        bare = changed(payload)
        del bare["event"]["documents"]
        assert (await send(world, bare)).state == st.DONE

    async def test_with_the_api_the_items_are_fetched_and_compared_too(self):
        world, payload = await ordered_world(api=True)
        now = changed(payload)
        now["event"]["documents"][0]["line_items"][1]["quantity"] = 6
        world.tripleseat.add(TripleSeatEvent.from_payload(now["event"]))
        bare = copy.deepcopy(now)
        del bare["event"]["documents"]
        outcome = await send(world, bare)
        assert world.tripleseat.fetched == [str(payload["event"]["id"])]
        assert attention_lines(outcome) == ["changed Cold brew, 96 oz box (product 590): 4 x 38.5 -> 6 x 38.5"]

    async def test_with_the_api_an_unchanged_event_is_done(self):
        world, payload = await ordered_world(api=True)
        world.tripleseat.add(TripleSeatEvent.from_payload(payload["event"]))
        bare = changed(payload)
        del bare["event"]["documents"]
        assert (await send(world, bare)).state == st.DONE


class TestWithdrawals:
    @pytest.mark.parametrize(("trigger", "status", "why"), [("DELETE_EVENT", "DEFINITE", "deleted"), ("STATUS_CHANGE_EVENT", "LOST", "marked LOST")])
    async def test_a_deleted_or_lost_event_with_an_order_asks_operations_to_void_it(self, trigger, status, why):
        world, payload = await ordered_world()
        outcome = await send(world, changed(payload, trigger, status=status))
        assert outcome.state == st.NEEDS_ATTENTION
        (email,) = outcome.emails
        assert email.kind == "void_request" and email.subject.endswith(f"was {why}")
        assert "Please void the order in Revel" in email.text and f"tripleseat-{payload['event']['id']}" in email.text

    async def test_a_withdrawal_before_any_order_keeps_older_deliveries_from_ordering_on_replay(self):
        world = fake_world(dry_run=False, enable_connector=False)
        made = world.connector()
        payload = definite()
        held = await made.handle(body(payload))
        await world.processor.set_flags(enable_connector=True, dry_run=None, actor="t", reason="on")
        deleted = await made.handle(body(changed(payload, "DELETE_EVENT")))
        assert deleted.state == st.IGNORED and deleted.emails == ()
        assert await made.replay(held.delivery_id, reason="incident over")
        await made.drain()
        after = await made.outcome(held.delivery_id)
        assert after.state == st.IGNORED and "deleted by a later delivery" in (after.note or "")
        assert world.revel.calls == []

    async def test_an_event_restored_after_its_deletion_is_ordered_by_the_newer_delivery(self):
        world = fake_world(dry_run=False)
        made = world.connector()
        payload = definite()
        await made.handle(body(changed(payload, "DELETE_EVENT")))
        restored = await made.handle(body(changed(payload, "STATUS_CHANGE_EVENT")))
        assert restored.state == st.DONE and len(world.revel.created) == 1


class TestComparisonRules:
    def snapshot(self, payload: dict[str, Any]) -> dict[str, Any]:
        order = map_event(TripleSeatEvent.from_payload(payload["event"]), MAPPING)
        return json.loads(json.dumps(order.to_snapshot()))  # type: ignore[union-attr]

    def test_a_snapshot_from_before_guest_counts_were_kept_reports_no_false_guest_change(self):
        payload = definite()
        old = self.snapshot(payload)
        del old["guest_count"]
        now = map_event(TripleSeatEvent.from_payload(payload["event"]), MAPPING)
        assert order_changes(old, now) == []

    def test_notes_that_changed_beyond_the_guest_count_are_still_reported(self):
        payload = definite()
        now = definite(payload["event"]["id"], guest_count=55, description="Front door instead.")
        changes = order_changes(self.snapshot(payload), map_event(TripleSeatEvent.from_payload(now["event"]), MAPPING))
        assert changes[0] == "guest count: 40 -> 55"
        assert changes[1].startswith("notes (guest count, contact, description): ") and "Front door instead." in changes[1]

    def test_a_bare_event_that_no_longer_maps_says_so(self):
        payload = definite()
        bare = definite(payload["event"]["id"], location_id=999, site_id=1)
        del bare["event"]["documents"]
        changes = event_changes(self.snapshot(payload), TripleSeatEvent.from_payload(bare["event"]), MAPPING, unmapped="fail")
        assert changes == ["the event no longer maps to an order: location 999 (site 1) is not in the mapping file"]


class TestWhenTheApiFailsForAnOrderedEvent:
    async def test_a_refused_fetch_compares_what_the_webhook_carries_instead_of_reporting_a_failed_order(self):
        from tsrevel.testing import Fault

        world, payload = await ordered_world(api=True)
        world.tripleseat.script(Fault.credentials())
        bare = changed(payload, guest_count=55)
        del bare["event"]["documents"]
        outcome = await send(world, bare)
        assert outcome.state == st.NEEDS_ATTENTION and attention_lines(outcome) == ["guest count: 40 -> 55"]
        assert [e.kind for e in outcome.emails] == ["needs_attention"]
        delivery = await world.store.get_delivery(outcome.delivery_id)
        assert any("could not fetch the event's line items" in t.note for t in delivery.timeline)

    async def test_a_transient_fetch_failure_is_retried_before_comparing(self):
        from tsrevel.testing import Fault

        world, payload = await ordered_world(api=True)
        world.tripleseat.add(TripleSeatEvent.from_payload(payload["event"]))
        world.tripleseat.script(Fault.transient(n=1))
        bare = changed(payload)
        del bare["event"]["documents"]
        outcome = await send(world, bare)
        assert outcome.state == st.RETRYING and outcome.emails == ()
        await world.settle()
        assert (await world.connector().outcome(outcome.delivery_id)).state == st.DONE
        assert len(world.revel.created) == 1
