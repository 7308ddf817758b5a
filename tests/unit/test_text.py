"""Lone surrogates (issue 11, item 2): every decoded string can be stored, emailed and logged as UTF-8."""

from __future__ import annotations

import json
import logging

from hypothesis import given
from hypothesis import strategies as hs

from tsrevel.domain.events import decode_json
from tsrevel.entrypoints.logs import JsonFormatter, TextFormatter

# Any code point, lone surrogates included.
ANY_TEXT = hs.text(alphabet=hs.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=()), max_size=20)
JSONISH = hs.recursive(
    hs.none() | hs.booleans() | hs.integers() | ANY_TEXT,
    lambda inner: hs.lists(inner, max_size=4) | hs.dictionaries(ANY_TEXT, inner, max_size=4),
    max_leaves=20,
)


def encodable(value: object) -> bool:
    json.dumps(value, ensure_ascii=False).encode("utf-8")
    return True


class TestDecoding:
    def test_a_lone_surrogate_becomes_the_replacement_character(self):
        assert decode_json(b'{"name": "half \\ud83d emoji", "\\udfff": ["\\ud800"]}') == {"name": "half \ufffd emoji", "\ufffd": ["\ufffd"]}

    def test_a_surrogate_pair_is_one_character_and_is_kept(self):
        assert decode_json(b'{"name": "\\ud83d\\ude00"}') == {"name": "\U0001f600"}

    @given(JSONISH)
    def test_whatever_json_says_the_decoded_value_encodes_as_utf8(self, value):
        decoded = decode_json(json.dumps(value).encode())
        assert encodable(decoded)

    @given(JSONISH.filter(lambda v: encodable_or_false(v)))
    def test_text_without_lone_surrogates_is_unchanged(self, value):
        assert decode_json(json.dumps(value).encode()) == value

    def test_deep_nesting_still_decodes_without_recursion(self):
        raw = b'{"a": ' * 500 + b'"\\ud800"' + b"}" * 500
        value = decode_json(raw)
        for _ in range(500):
            value = value["a"]
        assert value == "\ufffd"


def encodable_or_false(value: object) -> bool:
    try:
        return encodable(value)
    except UnicodeEncodeError:
        return False


class TestLogLines:
    def test_a_log_line_with_a_lone_surrogate_encodes_as_utf8(self):
        record = logging.makeLogRecord({"msg": "trigger %s", "args": ("\ud800",), "levelname": "INFO", "name": "t", "correlation_id": "c1"})
        for formatter in (JsonFormatter(), TextFormatter()):
            line = formatter.format(record)
            line.encode("utf-8")
            assert "\\ud800" in line
