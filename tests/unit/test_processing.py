"""The use cases on fakes: intake, the worker's decisions, retries, crash-free guarantees, emails."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from tests.helpers import body, definite, example
from tsrevel.domain import deliveries as st
from tsrevel.domain.errors import SignatureError
from tsrevel.domain.signature import sign_body
from tsrevel.testing import Fault, fake_world

pytestmark = pytest.mark.anyio


class TestIntake:
    async def test_a_new_delivery_is_accepted_and_queued_without_any_outside_call(self):
        world = fake_world()
        result = await world.deliver(definite())
        assert result.status == "accepted"
        assert (await world.store.get_delivery(result.delivery_id)).state == st.QUEUED
        assert world.revel.calls == [] and world.mailer.calls == []

    async def test_the_same_body_again_is_a_duplicate_of_the_first_delivery(self):
        world = fake_world()
        payload = definite()
        first = await world.deliver(payload)
        again = await world.deliver(payload)
        assert (again.status, again.delivery_id) == ("duplicate", first.delivery_id)
        assert len(await world.store.list_deliveries()) == 1

    async def test_an_unusable_payload_is_stored_as_rejected_with_the_field_path(self):
        world = fake_world()
        payload = definite()
        payload["event"]["documents"][0]["line_items"][1]["quantity"] = "abc"
        result = await world.deliver(payload)
        assert result.status == "rejected"
        assert result.reason == "event.documents[0].line_items[1].quantity: 'abc' is not a number"
        assert (await world.store.get_delivery(result.delivery_id)).state == st.REJECTED

    async def test_malformed_json_is_rejected_not_lost(self):
        world = fake_world()
        result = await world.deliver(b'{"webhook_trigger_type": ')
        assert result.status == "rejected"
        stored = await world.store.get_delivery(result.delivery_id)
        assert stored.body == b'{"webhook_trigger_type": '

    async def test_a_wrong_signature_is_refused_and_nothing_is_stored(self):
        world = fake_world(secret="s3cret-signing-key")
        with pytest.raises(SignatureError):
            await world.deliver(definite(), signature="0" * 64)
        assert await world.store.list_deliveries() == []

    async def test_a_correct_signature_is_accepted(self):
        world = fake_world(secret="s3cret-signing-key")
        raw = body(definite())
        result = await world.deliver(raw, signature=sign_body(raw, secret="s3cret-signing-key"))
        assert result.status == "accepted"


class TestOrders:
    async def test_a_definite_event_becomes_one_revel_order_and_one_email(self):
        world = fake_world()
        result = await world.deliver(example("definite"))
        await world.settle()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.state == st.DONE
        assert delivery.order_reference == "tripleseat-55521609"
        assert [o.local_id for o in world.revel.created] == ["tripleseat-55521609"]
        assert world.revel.calls == ["find tripleseat-55521609", "create tripleseat-55521609"]
        assert [m.kind for m in world.mailer.sent] == ["order_created"]
        order = world.revel.created[0]
        assert (order.establishment_id, order.dining_option, str(order.total)) == (4, 113, "438.00")

    async def test_the_revel_calls_and_the_email_carry_the_delivery_correlation_id(self):
        world = fake_world()
        await world.deliver(definite(), correlation_id="corr-R18")
        await world.settle()
        assert set(world.revel.correlation_ids) == {"corr-R18"}
        assert world.mailer.sent[0].correlation_id == "corr-R18"

    async def test_a_later_delivery_for_an_ordered_event_creates_nothing(self):
        world = fake_world()
        payload = definite()
        await world.deliver(payload)
        await world.drain()
        assert len(world.revel.created) == 1
        # A second body for the same event (an update that leaves the order as it is).
        result = await world.deliver(dict(payload, webhook_trigger_type="UPDATE_EVENT"))
        await world.drain()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DONE
        assert len(world.revel.created) == 1

    async def test_an_order_already_in_revel_is_found_recorded_and_not_created_again(self):
        from tsrevel.domain.events import TripleSeatEvent
        from tsrevel.domain.mapping import map_event

        world = fake_world()
        payload = definite()
        earlier = map_event(TripleSeatEvent.from_payload(payload["event"]), world.processor.mapping)
        ref = world.revel.seed(earlier)  # e.g. made by the connector we replace
        result = await world.deliver(payload)
        await world.settle()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DONE
        assert world.revel.created == [earlier]
        assert (await world.store.get_order(str(payload["event"]["id"]))).revel_order_id == ref.order_id
        assert "found (already in Revel)" in world.mailer.sent[0].subject

    async def test_R3_a_changed_event_after_its_order_needs_attention_and_tells_ops(self):
        world = fake_world()
        payload = definite()
        await world.deliver(payload)
        await world.settle()
        changed = definite(payload["event"]["id"])
        changed["event"]["documents"][0]["line_items"][0]["quantity"] = "60"
        result = await world.deliver(changed)
        await world.settle()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.state == st.NEEDS_ATTENTION
        assert len(world.revel.created) == 1
        attention = [m for m in world.mailer.sent if m.kind == "needs_attention"]
        assert len(attention) == 1 and "48 x 3.25 -> 60 x 3.25" in attention[0].text

    async def test_a_deleted_event_with_an_order_asks_ops_to_void_it(self):
        world = fake_world()
        payload = definite()
        await world.deliver(payload)
        await world.settle()
        await world.deliver(dict(payload, webhook_trigger_type="DELETE_EVENT"))
        await world.settle()
        assert [m.kind for m in world.mailer.sent] == ["order_created", "void_request"]
        assert len(world.revel.created) == 1

    async def test_unmapped_items_go_dead_with_every_item_listed(self):
        world = fake_world()
        result = await world.deliver(example("unmapped"))
        await world.settle()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.state == st.DEAD
        assert "Fruit tower" in delivery.last_error and "Egg bites (dozen)" in delivery.last_error
        assert world.revel.calls == []
        assert [m.kind for m in world.mailer.sent] == ["failure"]
        assert f"tsrevel replay {delivery.id}" in world.mailer.sent[0].text

    async def test_unmapped_items_skip_policy_orders_the_rest_and_reports_them(self):
        world = fake_world()
        world.processor.settings = attrs.evolve(world.processor.settings, unmapped_items="skip")
        await world.deliver(example("unmapped"))
        await world.settle()
        assert len(world.revel.created) == 1
        assert [line.product_id for line in world.revel.created[0].items] == [579]
        assert "Fruit tower" in world.mailer.sent[0].text

    async def test_a_lead_is_ignored(self):
        world = fake_world()
        result = await world.deliver(example("lead"))
        await world.settle()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.IGNORED
        assert world.revel.calls == []

    async def test_an_event_without_line_items_is_enriched_from_the_tripleseat_api(self):
        from tsrevel.domain.events import TripleSeatEvent

        world = fake_world()
        full = definite()
        world.tripleseat.add(TripleSeatEvent.from_payload(full["event"]))
        bare = definite(full["event"]["id"])
        del bare["event"]["documents"]
        await world.deliver(bare)
        await world.settle()
        assert world.tripleseat.fetched == [str(full["event"]["id"])]
        assert len(world.revel.created) == 1 and len(world.revel.created[0].items) == 3


class TestSafetyLevers:
    async def test_R12_kill_switch_off_holds_everything_and_calls_nothing(self):
        world = fake_world(enable_connector=False)
        ids = [(await world.deliver(definite())).delivery_id for _ in range(5)]
        await world.settle()
        assert {(await world.store.get_delivery(i)).state for i in ids} == {st.HELD}
        assert world.revel.calls == [] and world.mailer.calls == []

    async def test_R12_switch_on_and_replay_creates_each_order_in_arrival_order(self):
        world = fake_world(enable_connector=False)
        payloads = [definite() for _ in range(5)]
        for payload in payloads:
            await world.deliver(payload)
        await world.settle()
        await world.processor.set_flags(enable_connector=True, dry_run=None, actor="test", reason="incident over")
        assert await world.processor.replay_state(st.HELD, actor="test", reason="replay") == 5
        await world.settle()
        assert [o.event_id for o in world.revel.created] == [str(p["event"]["id"]) for p in payloads]

    async def test_R13_a_flip_while_waiting_in_backoff_means_no_side_effect_after_it(self):
        world = fake_world()
        world.revel.script(Fault.transient(n=1))
        result = await world.deliver(definite())
        await world.drain()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.RETRYING
        calls_before = list(world.revel.calls)
        await world.processor.set_flags(enable_connector=False, dry_run=None, actor="test", reason="incident")
        await world.settle()
        assert world.revel.calls == calls_before
        assert (await world.store.get_delivery(result.delivery_id)).state == st.HELD

    async def test_R14_dry_run_writes_nothing_then_each_event_is_ordered_once_after_replay(self):
        world = fake_world(dry_run=True)
        payloads = [definite() for _ in range(3)]
        for payload in payloads:
            await world.deliver(payload)
        await world.settle()
        assert world.revel.created == []
        assert all(c.startswith("find") is False for c in world.revel.calls)
        assert [m.kind for m in world.mailer.sent] == ["dry_run"] * 3
        await world.processor.set_flags(enable_connector=None, dry_run=False, actor="test", reason="go live")
        assert await world.processor.replay_state(st.DRY_RUN, actor="test", reason="go live") == 3
        await world.settle()
        assert sorted(o.event_id for o in world.revel.created) == sorted(str(p["event"]["id"]) for p in payloads)

    async def test_R15_a_location_not_allowed_is_skipped_then_ordered_once_when_allowed(self):
        world = fake_world(allowed_locations=frozenset({"202"}))
        result = await world.deliver(definite())
        await world.settle()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.SKIPPED
        assert world.revel.calls == [] and world.mailer.calls == []
        world.processor.boot_flags = attrs.evolve(world.processor.boot_flags, allowed_locations=frozenset({"201", "202"}))
        await world.processor.replay(result.delivery_id, actor="test", reason="allowed now")
        await world.settle()
        assert len(world.revel.created) == 1


class TestRetries:
    async def test_R6_transient_failures_then_success_make_exactly_one_order(self):
        world = fake_world()
        world.revel.script(Fault.transient(n=3, status=502))
        result = await world.deliver(definite())
        await world.settle()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.state == st.DONE and delivery.attempts == 3
        assert len(world.revel.created) == 1

    async def test_R6_the_next_attempt_is_inside_the_full_jitter_envelope(self):
        world = fake_world()
        world.processor.unit_random = lambda: 0.999
        world.revel.script(Fault.transient(n=1))
        result = await world.deliver(definite())
        before = world.clock.now()
        await world.drain()
        delivery = await world.store.get_delivery(result.delivery_id)
        envelope = world.processor.settings.retry.envelope_s(1)
        assert before <= delivery.next_attempt_at <= before + timedelta(seconds=envelope)

    async def test_R7_a_retry_after_is_never_undercut(self):
        world = fake_world()
        world.revel.script(Fault.rate_limited(120))
        result = await world.deliver(definite())
        before = world.clock.now()
        await world.drain()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.next_attempt_at >= before + timedelta(seconds=120)

    async def test_R7_a_huge_retry_after_is_capped(self):
        world = fake_world()
        world.revel.script(Fault.rate_limited(10_000_000))
        result = await world.deliver(definite())
        before = world.clock.now()
        await world.drain()
        delivery = await world.store.get_delivery(result.delivery_id)
        cap = world.processor.settings.retry.retry_after_cap_s
        assert delivery.next_attempt_at <= before + timedelta(seconds=cap)

    async def test_R8_a_permanent_error_is_dead_after_one_attempt_and_replay_gives_one_order(self):
        world = fake_world()
        world.revel.script(Fault.permanent(status=422, message="bad dining option"))
        result = await world.deliver(definite())
        await world.settle()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert (delivery.state, delivery.attempts) == (st.DEAD, 1)
        assert "bad dining option" in delivery.last_error
        assert await world.processor.replay(result.delivery_id, actor="test", reason="fixed")
        await world.settle()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DONE
        assert len(world.revel.created) == 1

    async def test_R9_revel_down_for_good_is_dead_after_exactly_max_attempts(self):
        world = fake_world()
        world.revel.script(Fault.transient(n=1000))
        result = await world.deliver(definite())
        await world.settle()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert delivery.state == st.DEAD
        assert delivery.attempts == world.processor.settings.retry.max_attempts
        assert world.revel.created == []
        assert [m.kind for m in world.mailer.sent] == ["failure"]

    async def test_R5_create_then_timeout_is_found_by_reference_and_not_created_again(self):
        world = fake_world()
        world.revel.script(Fault.create_then_timeout())
        result = await world.deliver(definite())
        await world.settle()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DONE
        assert len(world.revel.created) == 1
        assert [c.split()[0] for c in world.revel.calls] == ["find", "create", "find"]

    async def test_credentials_errors_are_dead_at_once_and_ops_are_told(self):
        world = fake_world()
        world.revel.script(Fault.credentials(status=401))
        result = await world.deliver(definite())
        await world.settle()
        delivery = await world.store.get_delivery(result.delivery_id)
        assert (delivery.state, delivery.attempts) == (st.DEAD, 1)
        assert "credentials" in delivery.last_error
        assert [m.kind for m in world.mailer.sent] == ["failure"]


class TestEmails:
    async def test_R17_sendgrid_down_does_not_block_or_repeat_the_order(self):
        world = fake_world()
        world.mailer.script(Fault.transient(n=3))
        result = await world.deliver(definite())
        await world.settle()
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DONE
        assert len(world.revel.created) == 1
        assert len(world.mailer.sent) == 1 and len(world.mailer.calls) == 4

    async def test_R16_a_rate_limited_email_waits_for_the_reset(self):
        world = fake_world()
        world.mailer.script(Fault.rate_limited(300))
        await world.deliver(definite())
        await world.drain()
        emails = await world.store.list_emails()
        assert emails[0].state == "retrying"
        assert emails[0].next_attempt_at >= world.clock.now() + timedelta(seconds=299)

    async def test_with_no_mailer_emails_are_recorded_as_unsent(self):
        world = fake_world()
        world.processor.mailer = None
        await world.deliver(definite())
        await world.settle()
        assert [e.state for e in await world.store.list_emails()] == ["unsent"]

    async def test_kill_switch_holds_emails_already_in_the_outbox(self):
        world = fake_world()
        await world.deliver(definite())
        await world.drain(emails=False)
        await world.processor.set_flags(enable_connector=False, dry_run=None, actor="test", reason="incident")
        await world.drain()
        assert world.mailer.calls == []


class TestIsolation:
    async def test_R21_one_poison_payload_is_dead_and_the_others_are_done(self):
        world = fake_world()
        good = [definite() for _ in range(3)]
        poison = definite()

        original = world.revel.create_order

        async def explode_on_poison(order, *, correlation_id):
            if order.event_id == str(poison["event"]["id"]):
                raise RuntimeError("boom")
            return await original(order, correlation_id=correlation_id)

        world.revel.create_order = explode_on_poison  # type: ignore[method-assign]
        ids = [(await world.deliver(p)).delivery_id for p in [good[0], poison, good[1], good[2]]]
        await world.settle()
        states = [(await world.store.get_delivery(i)).state for i in ids]
        assert states == [st.DONE, st.DEAD, st.DONE, st.DONE]
        assert "RuntimeError: boom" in (await world.store.get_delivery(ids[1])).last_error

    async def test_R22_a_stalled_worker_cannot_commit_over_the_one_that_took_over(self):
        world = fake_world()
        result = await world.deliver(definite())
        now = world.clock.now()
        stale = await world.store.claim_delivery(now=now, lease_until=now + timedelta(seconds=60))
        world.clock.advance(61)  # the first worker stalls past its lease
        await world.drain()  # another worker takes over and finishes
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DONE
        # The stale worker wakes up and runs its copy: the fence stops every write and the create.
        await world.processor.process_claimed(stale)
        assert len(world.revel.created) == 1
        assert (await world.store.get_delivery(result.delivery_id)).state == st.DONE

    async def test_R23_replaying_a_done_delivery_creates_nothing(self):
        world = fake_world()
        result = await world.deliver(definite())
        await world.settle()
        assert not await world.processor.replay(result.delivery_id, actor="test", reason="oops")
        await world.settle()
        assert len(world.revel.created) == 1
