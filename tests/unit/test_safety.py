"""decide(): the kill switch, the allow-list and the order policy, as one pure and total choice."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsrevel.domain.events import WebhookEnvelope
from tsrevel.domain.safety import (
    KNOWN_STATUSES,
    ORDER_TRIGGERS,
    Hold,
    Ignore,
    OrderPolicy,
    Process,
    SafetyFlags,
    Skip,
    Withdraw,
    decide,
)
from tsrevel.testing.strategies import (
    DOCUMENTED_TRIGGERS,
    lead_payloads,
    order_policies,
    safety_flags,
    webhook_payloads,
)

LIVE = SafetyFlags(enable_connector=True, dry_run=False)
DECISIONS = (Hold, Skip, Ignore, Withdraw, Process)


def webhook(trigger: str = "STATUS_CHANGE_EVENT", status: str = "DEFINITE", location_id: object = 201) -> WebhookEnvelope:
    return WebhookEnvelope.from_payload(
        {"webhook_trigger_type": trigger, "event": {"id": 55521609, "status": status, "location_id": location_id}}
    )


# Lean payloads (no financials): decide() never looks at line items, and generation stays fast.
_EVENT_ENVELOPES = webhook_payloads(
    statuses=KNOWN_STATUSES + ("definite", "ARCHIVED", ""), location_ids=(201, 202, 203, 999, None), with_financials=False
).map(WebhookEnvelope.from_payload)
ENVELOPES = st.one_of(
    _EVENT_ENVELOPES,
    _EVENT_ENVELOPES,
    lead_payloads().map(WebhookEnvelope.from_payload),
    st.builds(lambda t: WebhookEnvelope.from_payload({"webhook_trigger_type": t}), st.sampled_from(DOCUMENTED_TRIGGERS)),
)


class TestExamples:
    def test_a_definite_event_is_processed(self) -> None:
        assert decide(webhook(), LIVE) == Process(dry_run=False)

    def test_the_kill_switch_holds_even_a_perfect_event(self) -> None:
        decision = decide(webhook(), SafetyFlags(enable_connector=False, dry_run=False))
        assert isinstance(decision, Hold)
        assert "ENABLE_CONNECTOR" in decision.reason

    def test_an_unknown_trigger_is_ignored(self) -> None:
        decision = decide(webhook(trigger="SOMETHING_NEW_EVENT"), LIVE)
        assert decision == Ignore("trigger SOMETHING_NEW_EVENT makes no order")

    def test_a_lead_is_ignored(self) -> None:
        lead = WebhookEnvelope.from_payload({"webhook_trigger_type": "CREATE_LEAD", "lead": {"id": 998877}})
        assert decide(lead, LIVE) == Ignore("CREATE_LEAD carries lead, not an event: no order")

    def test_a_webhook_without_an_object_is_ignored(self) -> None:
        bare = WebhookEnvelope.from_payload({"webhook_trigger_type": "CREATE_EVENT"})
        assert decide(bare, LIVE) == Ignore("CREATE_EVENT carries no object, not an event: no order")

    def test_a_tentative_event_is_ignored(self) -> None:
        decision = decide(webhook(status="TENTATIVE"), LIVE)
        assert decision == Ignore("status TENTATIVE makes no order (ORDER_ON_STATUSES: DEFINITE)")

    def test_a_deleted_event_is_withdrawn_whatever_its_status(self) -> None:
        assert decide(webhook(trigger="DELETE_EVENT", status="DEFINITE"), LIVE) == Withdraw("event 55521609 deleted")
        assert decide(webhook(trigger="DELETE_EVENT", status=""), LIVE) == Withdraw("event 55521609 deleted")

    def test_a_lost_event_is_withdrawn(self) -> None:
        assert decide(webhook(status="LOST"), LIVE) == Withdraw("event 55521609 marked LOST")

    def test_a_lost_event_under_an_unknown_trigger_is_ignored(self) -> None:
        assert isinstance(decide(webhook(trigger="SOMETHING_NEW", status="LOST"), LIVE), Ignore)

    def test_a_withdrawal_outside_the_allow_list_is_skipped(self) -> None:
        flags = SafetyFlags(enable_connector=True, dry_run=False, allowed_locations=frozenset({"202"}))
        assert isinstance(decide(webhook(trigger="DELETE_EVENT"), flags), Skip)

    def test_a_location_outside_the_allow_list_is_skipped_with_the_reason(self) -> None:
        flags = SafetyFlags(enable_connector=True, dry_run=False, allowed_locations=frozenset({"202", "203"}))
        assert decide(webhook(location_id="201"), flags) == Skip("location 201 is not in ALLOWED_LOCATIONS (202, 203)")

    def test_an_event_without_a_location_is_skipped_when_there_is_an_allow_list(self) -> None:
        flags = SafetyFlags(enable_connector=True, dry_run=False, allowed_locations=frozenset({"201"}))
        assert isinstance(decide(webhook(location_id=None), flags), Skip)

    def test_an_allowed_location_given_as_an_integer_is_processed(self) -> None:
        flags = SafetyFlags(enable_connector=True, dry_run=True, allowed_locations=frozenset({"201"}))
        assert decide(webhook(location_id=201), flags) == Process(dry_run=True)

    def test_the_default_flags_are_safe(self) -> None:
        assert SafetyFlags() == SafetyFlags(enable_connector=True, dry_run=True, allowed_locations=frozenset())
        assert decide(webhook(), SafetyFlags()) == Process(dry_run=True)


class TestOrderOnStatuses:
    @pytest.mark.parametrize(
        ("order_on", "status", "expected"),
        [
            ({"DEFINITE"}, "DEFINITE", Process),
            ({"DEFINITE"}, "definite", Process),
            ({"DEFINITE"}, "TENTATIVE", Ignore),
            ({"DEFINITE"}, "CLOSED", Ignore),
            ({"DEFINITE", "CLOSED"}, "CLOSED", Process),
            ({"DEFINITE", "TENTATIVE"}, "TENTATIVE", Process),
            ({"DEFINITE"}, "PROSPECT", Ignore),
            ({"DEFINITE"}, "WAITLIST", Ignore),
            ({"DEFINITE"}, "", Ignore),
            ({"LOST"}, "LOST", Withdraw),
            (set(), "DEFINITE", Ignore),
        ],
    )
    def test_order_on_statuses_chooses_which_statuses_make_an_order(
        self, order_on: set[str], status: str, expected: type
    ) -> None:
        policy = OrderPolicy(order_on_statuses=frozenset(order_on))
        assert isinstance(decide(webhook(status=status), LIVE, policy), expected)

    @pytest.mark.parametrize("trigger", sorted(ORDER_TRIGGERS))
    def test_every_order_trigger_processes_a_definite_event(self, trigger: str) -> None:
        assert decide(webhook(trigger=trigger), LIVE) == Process(dry_run=False)

    def test_a_trigger_removed_from_the_policy_makes_no_order(self) -> None:
        policy = OrderPolicy(order_triggers=frozenset({"CREATE_EVENT"}))
        assert isinstance(decide(webhook(trigger="UPDATE_EVENT"), LIVE, policy), Ignore)

    def test_the_reason_names_the_statuses_that_would_order(self) -> None:
        policy = OrderPolicy(order_on_statuses=frozenset({"DEFINITE", "CLOSED"}))
        decision = decide(webhook(status="TENTATIVE"), LIVE, policy)
        assert decision == Ignore("status TENTATIVE makes no order (ORDER_ON_STATUSES: CLOSED, DEFINITE)")


class TestDecisionProperties:
    @given(ENVELOPES, safety_flags(), order_policies())
    def test_with_the_kill_switch_off_every_delivery_is_held(
        self, envelope: WebhookEnvelope, flags: SafetyFlags, policy: OrderPolicy
    ) -> None:
        off = SafetyFlags(enable_connector=False, dry_run=flags.dry_run, allowed_locations=flags.allowed_locations)
        assert isinstance(decide(envelope, off, policy), Hold)

    @given(ENVELOPES, safety_flags(), order_policies())
    def test_a_location_outside_a_non_empty_allow_list_is_never_processed(
        self, envelope: WebhookEnvelope, flags: SafetyFlags, policy: OrderPolicy
    ) -> None:
        decision = decide(envelope, flags, policy)
        if flags.allowed_locations and (envelope.event is None or envelope.event.location_id not in flags.allowed_locations):
            assert not isinstance(decision, (Process, Withdraw))
        if isinstance(decision, Process):
            assert envelope.event is not None
            assert not flags.allowed_locations or envelope.event.location_id in flags.allowed_locations

    @given(ENVELOPES, safety_flags(), order_policies())
    def test_decide_is_total_and_process_follows_dry_run(
        self, envelope: WebhookEnvelope, flags: SafetyFlags, policy: OrderPolicy
    ) -> None:
        decision = decide(envelope, flags, policy)
        assert isinstance(decision, DECISIONS)
        if isinstance(decision, Process):
            assert decision.dry_run == flags.dry_run
            assert envelope.event is not None
            assert envelope.event.status in policy.order_on_statuses
            assert envelope.trigger_type in policy.order_triggers
        else:
            assert isinstance(decision, Hold) or decision.reason

    @given(ENVELOPES, safety_flags())
    def test_only_an_event_can_be_processed_or_withdrawn(self, envelope: WebhookEnvelope, flags: SafetyFlags) -> None:
        if envelope.event is None:
            assert isinstance(decide(envelope, flags), (Hold, Ignore))

    @given(webhook_payloads(statuses=("DEFINITE",), with_financials=False), st.booleans())
    def test_a_definite_event_under_an_order_trigger_is_processed_when_nothing_stops_it(
        self, payload: dict[str, Any], dry_run: bool
    ) -> None:
        envelope = WebhookEnvelope.from_payload(payload)
        decision = decide(envelope, SafetyFlags(enable_connector=True, dry_run=dry_run))
        if envelope.trigger_type in ORDER_TRIGGERS:
            assert decision == Process(dry_run=dry_run)
        elif envelope.trigger_type == "DELETE_EVENT":
            assert isinstance(decision, Withdraw)
        else:
            assert isinstance(decision, Ignore)
