"""The rules every store applies (domain/store_rules.py), tested once: due work, leases, the order slot, replay, discard, prune."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsrevel.domain.deliveries import (
    DEAD,
    DISCARDABLE_STATES,
    DONE,
    DRY_RUN,
    HELD,
    IGNORED,
    LEDGER_CREATED,
    LEDGER_PENDING,
    PENDING_STATES,
    PROCESSING,
    QUEUED,
    REJECTED,
    REPLAYABLE_STATES,
    RETRYING,
    SKIPPED,
    STATES,
    TERMINAL_STATES,
    LedgerEntry,
    NewDelivery,
    can_move,
)
from tsrevel.domain.errors import InvalidRequest
from tsrevel.domain.ports import BUSY, EMAIL_PENDING, EMAIL_RETRYING, EMAIL_SENDING, EMAIL_SENT, EXISTING, RESERVED
from tsrevel.domain.store_rules import (
    CLAIMABLE_STATES,
    EMAIL_FINISH_STATES,
    NOTE_CLAIMED,
    NOTE_TAKEN_OVER,
    PASS_TO_ME,
    PRUNABLE_STATES,
    SETTLED_EMAIL_STATES,
    check_email_state,
    check_finish_state,
    check_new_state,
    check_replayable,
    claim_note,
    discardable,
    due,
    holds_lease,
    intake_note,
    leased,
    prunable,
    replayable,
    reservation_outcome,
)

UTC = timezone.utc
NOW = datetime(2025, 3, 14, 9, 26, 53, tzinfo=UTC)

states = st.sampled_from(STATES)
offsets = st.one_of(st.none(), st.integers(-3600, 3600).map(lambda s: NOW + timedelta(seconds=s)))


def entry(*, state: str = LEDGER_PENDING, delivery_id: int = 1) -> LedgerEntry:
    return LedgerEntry(event_id="evt-1", reference="tripleseat-evt-1", establishment_id=4, delivery_id=delivery_id, state=state)


class TestDueWork:
    @given(states, offsets, offsets)
    def test_only_queued_retrying_or_processing_deliveries_are_ever_due(self, state, next_at, lease_until):
        if due(state, next_at, lease_until, NOW):
            assert state in CLAIMABLE_STATES
            assert state in PENDING_STATES

    @given(offsets)
    def test_queued_work_is_always_due(self, lease_until):
        assert due(QUEUED, None, lease_until, NOW)

    @given(offsets)
    def test_a_retry_is_due_once_its_time_has_come_or_when_it_has_none(self, next_at):
        assert due(RETRYING, next_at, None, NOW) == (next_at is None or next_at <= NOW)

    @given(offsets)
    def test_a_claimed_delivery_is_due_only_once_its_lease_expired(self, lease_until):
        assert due(PROCESSING, None, lease_until, NOW) == (lease_until is None or lease_until < NOW)
        # A delivery is due (taken over) exactly when nobody holds it.
        assert due(PROCESSING, None, lease_until, NOW) != leased(PROCESSING, lease_until, NOW)

    def test_emails_follow_the_same_rule_with_their_own_states(self):
        assert due(EMAIL_PENDING, None, None, NOW)
        assert not due(EMAIL_RETRYING, NOW + timedelta(seconds=1), None, NOW)
        assert due(EMAIL_RETRYING, NOW, None, NOW)
        assert not due(EMAIL_SENDING, None, NOW, NOW)
        assert due(EMAIL_SENDING, None, NOW - timedelta(microseconds=1), NOW)
        assert not due(EMAIL_SENT, None, None, NOW)

    def test_a_claim_of_an_expired_lease_says_it_took_over(self):
        assert claim_note(PROCESSING) == NOTE_TAKEN_OVER
        assert claim_note(QUEUED) == claim_note(RETRYING) == NOTE_CLAIMED


class TestLeases:
    @given(states, st.integers(0, 5), st.integers(0, 5))
    def test_only_the_current_token_of_a_processing_delivery_holds_its_lease(self, state, current, token):
        assert holds_lease(state, current, token) == (state == PROCESSING and current == token)

    @given(states, offsets)
    def test_a_lease_is_live_until_and_including_its_end(self, state, lease_until):
        assert leased(state, lease_until, NOW) == (state == PROCESSING and lease_until is not None and lease_until >= NOW)


class TestTheOrderSlot:
    @given(st.integers(1, 4), st.integers(1, 4), st.booleans())
    def test_a_made_order_is_existing_for_everyone(self, owner, asking, owner_leased):
        assert reservation_outcome(entry(state=LEDGER_CREATED, delivery_id=owner), delivery_id=asking,
                                   owner_leased=owner_leased) == EXISTING

    @given(st.booleans())
    def test_the_owner_of_a_pending_slot_keeps_it(self, owner_leased):
        assert reservation_outcome(entry(delivery_id=7), delivery_id=7, owner_leased=owner_leased) == RESERVED

    def test_another_delivery_waits_while_the_owner_holds_a_live_lease(self):
        assert reservation_outcome(entry(delivery_id=7), delivery_id=8, owner_leased=True) == BUSY

    def test_the_slot_passes_to_another_delivery_once_the_owner_is_gone(self):
        assert reservation_outcome(entry(delivery_id=7), delivery_id=8, owner_leased=False) == PASS_TO_ME


class TestOperatorMoves:
    @given(states)
    def test_replay_works_exactly_on_the_replayable_states_and_each_may_move_to_queued(self, state):
        assert replayable(state) == (state in REPLAYABLE_STATES)
        if replayable(state):
            assert can_move(state, QUEUED)

    @given(states)
    def test_discard_works_on_what_could_be_replayed(self, state):
        assert discardable(state) == (state in DISCARDABLE_STATES)
        assert {s for s in STATES if discardable(s)} == {HELD, SKIPPED, DEAD, DRY_RUN}

    @pytest.mark.parametrize("state", [DONE, IGNORED, REJECTED, QUEUED, PROCESSING])
    def test_replaying_a_whole_state_that_replay_does_not_cover_is_refused(self, state):
        with pytest.raises(InvalidRequest, match="cannot be replayed"):
            check_replayable(state)

    @pytest.mark.parametrize("state", sorted(REPLAYABLE_STATES))
    def test_replaying_a_replayable_state_is_allowed(self, state):
        check_replayable(state)


class TestPruning:
    @given(states, offsets, st.booleans(), st.booleans())
    def test_only_old_terminal_deliveries_owning_no_order_and_no_unsent_email_are_pruned(
        self, state, updated_at, owns_order, unsettled
    ):
        pruned = prunable(state, updated_at, NOW, owns_order=owns_order, has_unsettled_email=unsettled)
        expected = (state in TERMINAL_STATES and updated_at is not None and updated_at < NOW
                    and not owns_order and not unsettled)
        assert pruned == expected
        if pruned:
            assert state not in PENDING_STATES

    def test_the_prunable_and_settled_sets(self):
        assert set(PRUNABLE_STATES) == set(TERMINAL_STATES)
        assert set(SETTLED_EMAIL_STATES) <= EMAIL_FINISH_STATES
        assert EMAIL_PENDING not in SETTLED_EMAIL_STATES and EMAIL_RETRYING not in SETTLED_EMAIL_STATES


class TestArgumentChecks:
    @given(st.text(max_size=12))
    def test_a_new_delivery_state_must_be_known(self, state):
        if state in STATES:
            check_new_state(state)
        else:
            with pytest.raises(ValueError, match="unknown delivery state"):
                check_new_state(state)

    @given(states)
    def test_a_claimed_delivery_finishes_only_where_the_state_machine_allows(self, state):
        if can_move(PROCESSING, state):
            check_finish_state(state)
        else:
            with pytest.raises(ValueError, match="cannot finish"):
                check_finish_state(state)

    def test_an_email_never_finishes_as_sending(self):
        with pytest.raises(ValueError, match="cannot finish"):
            check_email_state(EMAIL_SENDING)
        check_email_state(EMAIL_SENT)

    def test_the_first_note_is_the_rejection_reason_or_received_or_the_given_note(self):
        base = dict(key="k", body=b"{}", correlation_id="c", received_at=NOW, trigger_type=None, event_id=None)
        assert intake_note(NewDelivery(**base, state=REJECTED, error="bad signature")) == "bad signature"
        assert intake_note(NewDelivery(**base, state=QUEUED)) == "received"
        assert intake_note(NewDelivery(**base, state=QUEUED, note="synced by ops")) == "synced by ops"
