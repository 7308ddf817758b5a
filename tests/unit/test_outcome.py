"""The verdicts a delivery pass hands the store: each named constructor sets exactly what its store write needs."""

from __future__ import annotations

from datetime import UTC, datetime

import attrs
import pytest

from tsrevel.domain.deliveries import DEAD, DONE, DRY_RUN, HELD, IGNORED, NEEDS_ATTENTION, PROCESSING, REJECTED, RETRYING, SKIPPED
from tsrevel.domain.outcome import Outcome
from tsrevel.domain.ports import EmailMessage
from tsrevel.domain.store_rules import check_finish_state

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EMAIL = EmailMessage(kind="failure", subject="s", text="t", delivery_id=1, correlation_id="c")


class TestOutcome:
    def test_a_retry_keeps_the_attempts_unless_told_so_a_deferral_is_no_failed_attempt(self) -> None:
        deferred = Outcome.retry_at(AT, "deferred")
        assert (deferred.state, deferred.next_attempt_at, deferred.attempts, deferred.error) == (RETRYING, AT, None, None)
        failed = Outcome.retry_at(AT, "attempt 2 failed", error="502", attempts=2, result="{}")
        assert (failed.attempts, failed.error, failed.result) == (2, "502", "{}")

    def test_dead_records_the_reason_as_note_and_error_and_may_release_the_slot(self) -> None:
        dead = Outcome.dead("gave up", attempts=3, emails=(EMAIL,), release_event_id="evt-1")
        assert (dead.state, dead.note, dead.error, dead.attempts) == (DEAD, "gave up", "gave up", 3)
        assert (dead.emails, dead.release_event_id) == ((EMAIL,), "evt-1")
        assert Outcome.dead("unmapped", attempts=1).release_event_id is None

    def test_standing_down_before_the_revel_call_releases_the_slot(self) -> None:
        assert Outcome.held("switched off", release_event_id="evt-1").release_event_id == "evt-1"
        assert Outcome.dry_run("dry run on", release_event_id="evt-1").release_event_id == "evt-1"
        assert Outcome.held("held by the policy").release_event_id is None

    def test_emails_are_kept_as_a_tuple_whatever_sequence_is_given(self) -> None:
        assert Outcome(state=DONE, note="done", emails=[EMAIL]).emails == (EMAIL,)

    def test_an_outcome_is_a_value(self) -> None:
        done = Outcome.done("no change", order_reference="tripleseat-1")
        assert done == Outcome(state=DONE, note="no change", order_reference="tripleseat-1")
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            done.state = DEAD  # type: ignore[misc]

    @pytest.mark.parametrize(
        ("outcome", "state"),
        [
            (Outcome.done("x"), DONE),
            (Outcome.held("x"), HELD),
            (Outcome.skipped("x"), SKIPPED),
            (Outcome.ignored("x"), IGNORED),
            (Outcome.rejected("x", error="bad"), REJECTED),
            (Outcome.dry_run("x"), DRY_RUN),
            (Outcome.needs_attention("x", order_reference="r", emails=(EMAIL,)), NEEDS_ATTENTION),
            (Outcome.retry_at(AT, "x"), RETRYING),
            (Outcome.dead("x", attempts=1), DEAD),
        ],
        ids=lambda value: value if isinstance(value, str) else "",
    )
    def test_every_named_verdict_is_a_state_a_claimed_delivery_may_finish_in(self, outcome: Outcome, state: str) -> None:
        assert outcome.state == state
        check_finish_state(outcome.state)  # raises for a state the store would refuse

    def test_the_store_rule_still_refuses_a_state_no_verdict_names(self) -> None:
        with pytest.raises(ValueError, match="cannot finish"):
            check_finish_state(Outcome(state=PROCESSING, note="?").state)
