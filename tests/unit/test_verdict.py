"""The verdicts a delivery pass hands the store: each named constructor sets exactly what its store write needs."""

from __future__ import annotations

from datetime import UTC, datetime

import attrs
import pytest

from tsrevel.domain.deliveries import DEAD, DONE, DRY_RUN, HELD, IGNORED, NEEDS_ATTENTION, PROCESSING, REJECTED, RETRYING, SKIPPED
from tsrevel.domain.verdict import Verdict
from tsrevel.domain.ports import EmailMessage
from tsrevel.domain.store_rules import check_finish_state

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EMAIL = EmailMessage(kind="failure", subject="s", text="t", delivery_id=1, correlation_id="c")


class TestOutcome:
    def test_a_retry_keeps_the_attempts_unless_told_so_a_deferral_is_no_failed_attempt(self) -> None:
        deferred = Verdict.retry_at(AT, "deferred")
        assert (deferred.state, deferred.next_attempt_at, deferred.attempts, deferred.error) == (RETRYING, AT, None, None)
        failed = Verdict.retry_at(AT, "attempt 2 failed", error="502", attempts=2, result="{}")
        assert (failed.attempts, failed.error, failed.result) == (2, "502", "{}")

    def test_dead_records_the_reason_as_note_and_error_and_may_release_the_slot(self) -> None:
        dead = Verdict.dead("gave up", attempts=3, emails=(EMAIL,), release_event_id="evt-1")
        assert (dead.state, dead.note, dead.error, dead.attempts) == (DEAD, "gave up", "gave up", 3)
        assert (dead.emails, dead.release_event_id) == ((EMAIL,), "evt-1")
        assert Verdict.dead("unmapped", attempts=1).release_event_id is None

    def test_standing_down_before_the_revel_call_releases_the_slot(self) -> None:
        assert Verdict.held("switched off", release_event_id="evt-1").release_event_id == "evt-1"
        assert Verdict.dry_run("dry run on", release_event_id="evt-1").release_event_id == "evt-1"
        assert Verdict.held("held by the policy").release_event_id is None

    def test_emails_are_kept_as_a_tuple_whatever_sequence_is_given(self) -> None:
        assert Verdict(state=DONE, note="done", emails=[EMAIL]).emails == (EMAIL,)

    def test_an_outcome_is_a_value(self) -> None:
        done = Verdict.done("no change", order_reference="tripleseat-1")
        assert done == Verdict(state=DONE, note="no change", order_reference="tripleseat-1")
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            done.state = DEAD  # type: ignore[misc]

    @pytest.mark.parametrize(
        ("outcome", "state"),
        [
            (Verdict.done("x"), DONE),
            (Verdict.held("x"), HELD),
            (Verdict.skipped("x"), SKIPPED),
            (Verdict.ignored("x"), IGNORED),
            (Verdict.rejected("x", error="bad"), REJECTED),
            (Verdict.dry_run("x"), DRY_RUN),
            (Verdict.needs_attention("x", order_reference="r", emails=(EMAIL,)), NEEDS_ATTENTION),
            (Verdict.retry_at(AT, "x"), RETRYING),
            (Verdict.dead("x", attempts=1), DEAD),
        ],
        ids=lambda value: value if isinstance(value, str) else "",
    )
    def test_every_named_verdict_is_a_state_a_claimed_delivery_may_finish_in(self, outcome: Verdict, state: str) -> None:
        assert outcome.state == state
        check_finish_state(outcome.state)  # raises for a state the store would refuse

    def test_the_store_rule_still_refuses_a_state_no_verdict_names(self) -> None:
        with pytest.raises(ValueError, match="cannot finish"):
            check_finish_state(Verdict(state=PROCESSING, note="?").state)
