"""Idempotency keys and the delivery state machine: the two things that keep one order per event."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsrevel.domain import deliveries
from tsrevel.domain.deliveries import (
    DEAD,
    DONE,
    DRY_RUN,
    HELD,
    PENDING_STATES,
    PROCESSING,
    QUEUED,
    RECEIVED,
    REJECTED,
    REPLAYABLE_STATES,
    RETRYING,
    SKIPPED,
    STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    can_move,
)
from tsrevel.domain.ids import ORDER_REFERENCE_PREFIX, delivery_key, order_reference

BODY = b'{"webhook_trigger_type": "STATUS_CHANGE_EVENT", "event": {"id": 55521609}}'


class TestDeliveryKey:
    def test_the_delivery_key_is_the_sha256_hex_of_the_raw_body(self) -> None:
        assert delivery_key(BODY) == hashlib.sha256(BODY).hexdigest()
        assert delivery_key(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    def test_the_same_json_with_other_whitespace_is_another_delivery(self) -> None:
        assert delivery_key(BODY) != delivery_key(BODY.replace(b": ", b":"))

    @given(st.binary(max_size=512), st.binary(max_size=512))
    def test_equal_bodies_share_a_key_and_different_bodies_do_not(self, first: bytes, second: bytes) -> None:
        assert re.fullmatch(r"[0-9a-f]{64}", delivery_key(first))
        assert (delivery_key(first) == delivery_key(second)) == (first == second)


class TestOrderReference:
    def test_the_reference_is_tripleseat_dash_event_id(self) -> None:
        assert order_reference("55521609") == "tripleseat-55521609"
        assert ORDER_REFERENCE_PREFIX == "tripleseat-"

    @given(st.integers(1, 10**12))
    def test_the_reference_is_stable_and_gives_back_the_event_id(self, event_id: int) -> None:
        reference = order_reference(str(event_id))
        assert reference == order_reference(str(event_id))
        assert reference.removeprefix(ORDER_REFERENCE_PREFIX) == str(event_id)


class TestTransitions:
    def test_every_state_is_listed_once_and_has_a_row(self) -> None:
        assert len(STATES) == len(set(STATES)) == 12
        assert set(TRANSITIONS) == set(STATES)

    def test_every_move_leads_to_a_known_state_and_none_stays_put(self) -> None:
        for old, targets in TRANSITIONS.items():
            assert targets <= set(STATES), old
            assert old not in targets, old

    def test_pending_and_terminal_states_split_the_states(self) -> None:
        assert PENDING_STATES | TERMINAL_STATES == set(STATES)
        assert not PENDING_STATES & TERMINAL_STATES
        assert PENDING_STATES == {RECEIVED, QUEUED, PROCESSING, RETRYING}

    @pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
    def test_a_terminal_state_moves_only_by_replay_to_queued(self, state: str) -> None:
        expected = {QUEUED} if state in REPLAYABLE_STATES else set()
        assert TRANSITIONS[state] == expected

    def test_replay_covers_held_skipped_dead_and_dry_run(self) -> None:
        assert REPLAYABLE_STATES == {HELD, SKIPPED, DEAD, DRY_RUN}
        assert REPLAYABLE_STATES <= TERMINAL_STATES
        assert DONE not in REPLAYABLE_STATES  # a done event never makes a second order
        assert REJECTED not in REPLAYABLE_STATES

    def test_every_pending_state_can_move_on(self) -> None:
        for state in PENDING_STATES:
            assert TRANSITIONS[state], state

    def test_every_state_can_be_reached_from_received(self) -> None:
        reached, frontier = {RECEIVED}, [RECEIVED]
        while frontier:
            for target in TRANSITIONS[frontier.pop()]:
                if target not in reached:
                    reached.add(target)
                    frontier.append(target)
        assert reached == set(STATES)

    def test_only_a_worker_holding_the_delivery_ends_it(self) -> None:
        # Every terminal state except REJECTED (refused at intake) is entered from PROCESSING only.
        for state in TERMINAL_STATES - {REJECTED}:
            sources = {old for old, targets in TRANSITIONS.items() if state in targets}
            assert sources == {PROCESSING}, state

    @pytest.mark.parametrize(
        ("old", "new", "allowed"),
        [
            (RECEIVED, QUEUED, True),
            (QUEUED, PROCESSING, True),
            (PROCESSING, DONE, True),
            (RETRYING, PROCESSING, True),
            (DEAD, QUEUED, True),
            (DONE, QUEUED, False),
            (QUEUED, DONE, False),
            (RETRYING, DONE, False),
            ("no-such-state", QUEUED, False),
        ],
    )
    def test_can_move_follows_the_table(self, old: str, new: str, allowed: bool) -> None:
        assert can_move(old, new) is allowed

    def test_state_names_are_the_documented_lowercase_words(self) -> None:
        assert all(getattr(deliveries, name.upper()) == name for name in STATES)
