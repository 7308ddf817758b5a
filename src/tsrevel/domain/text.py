"""Text hygiene for decoded JSON: a lone UTF-16 surrogate (``"\\ud800"``, half an emoji) becomes U+FFFD.

JSON allows ``\\uD800`` on its own, but such a string cannot be encoded as UTF-8, so a database,
an email or a log line would fail on it later. Replacing it once, at decoding, keeps every
string the domain sees encodable; the raw body bytes are stored unchanged. Performs no I/O.
"""

from __future__ import annotations

import re
from typing import Any

REPLACEMENT = "\ufffd"
# A body without a \\uD800-\\uDFFF escape cannot decode to a surrogate: the common case costs one scan.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def may_hold_surrogates(raw: bytes) -> bool:
    """True when raw JSON has a \\uD800-\\uDFFF escape (a pair or a lone half)."""
    return _ESCAPED_SURROGATE.search(raw) is not None


def replace_surrogates(text: str) -> str:
    """text with each lone surrogate replaced by U+FFFD (a decoded pair is one character, not a surrogate)."""
    return _SURROGATE.sub(REPLACEMENT, text)


def without_lone_surrogates(value: Any) -> Any:
    """value (decoded JSON) with every string, keys included, free of lone surrogates; in place, no recursion."""
    if isinstance(value, str):
        return replace_surrogates(value)
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key in list(node):
                item = node[key]
                if isinstance(item, str):
                    item = replace_surrogates(item)
                elif isinstance(item, (dict, list)):
                    stack.append(item)
                if isinstance(key, str) and _SURROGATE.search(key):
                    del node[key]
                    node[replace_surrogates(key)] = item
                else:
                    node[key] = item
        elif isinstance(node, list):
            for index, item in enumerate(node):
                if isinstance(item, str):
                    node[index] = replace_surrogates(item)
                elif isinstance(item, (dict, list)):
                    stack.append(item)
    return value
