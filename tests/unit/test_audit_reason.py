"""One rule for an operator's reason (domain/text.py), whichever entrypoint it came through."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from tsrevel.domain.errors import PayloadError
from tsrevel.domain.text import REASON_LIMIT, audit_reason

MUST_SAY_WHY = "must say why (it goes into the audit log)"


class TestAuditReason:
    def test_a_reason_is_kept_without_its_surrounding_blanks(self):
        assert audit_reason("  INC-7: Revel answers 500  \n") == "INC-7: Revel answers 500"

    def test_a_long_reason_is_cut_at_the_limit(self):
        assert REASON_LIMIT == 500
        assert audit_reason("x" * 600) == "x" * 500

    @pytest.mark.parametrize("blank", ["", "   ", "\n\t "])
    def test_a_required_reason_that_says_nothing_is_refused(self, blank):
        with pytest.raises(PayloadError) as refused:
            audit_reason(blank)
        assert (refused.value.path, refused.value.problem) == ("reason", MUST_SAY_WHY)

    @pytest.mark.parametrize("value", [None, 7, ["why"], {"why": "x"}, True])
    def test_a_required_reason_that_is_not_text_is_refused_as_saying_nothing(self, value):
        with pytest.raises(PayloadError) as refused:
            audit_reason(value)
        assert (refused.value.path, refused.value.problem) == ("reason", MUST_SAY_WHY)

    def test_an_optional_blank_reason_is_empty(self):
        assert audit_reason("  ", required=False) == ""

    @pytest.mark.parametrize("value", [None, 7, ["why"], False])
    def test_an_optional_reason_that_is_not_text_is_refused(self, value):
        with pytest.raises(PayloadError) as refused:
            audit_reason(value, required=False)
        assert (refused.value.path, refused.value.problem) == ("reason", "is not text")

    @given(hs.text(max_size=800))
    def test_any_text_comes_out_stripped_within_the_limit_and_from_the_text(self, text):
        try:
            reason = audit_reason(text)
        except PayloadError:
            assert not text.strip()
            return
        assert reason and len(reason) <= REASON_LIMIT
        assert text.strip().startswith(reason)
        assert reason == reason.lstrip()
        assert audit_reason(text, required=False) == reason
