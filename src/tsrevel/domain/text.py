"""Text hygiene: lone surrogates out of decoded JSON, and an operator's reason as the audit log keeps it.

A lone UTF-16 surrogate (``"\\ud800"``, half an emoji) becomes U+FFFD: JSON allows ``\\uD800`` on
its own, but such a string cannot be encoded as UTF-8, so a database, an email or a log line would
fail on it later. Replacing it once, at decoding, keeps every string the domain sees encodable; the
raw body bytes are stored unchanged. Every entrypoint (CLI, admin API, console) reads a reason
through audit_reason, so they keep the same text and refuse the same way. Performs no I/O.
"""

from __future__ import annotations

import re
from typing import Any

from tsrevel.domain.errors import PayloadError

REPLACEMENT = "\ufffd"
# A body without a \\uD800-\\uDFFF escape cannot decode to a surrogate: the common case costs one scan.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89abcdefABCDEF][0-9a-fA-F]{2}")
_SURROGATE = re.compile("[\ud800-\udfff]")
REASON_LIMIT = 500  # characters of an operator's reason the audit log keeps (the admin API's OpenAPI says so too)


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


def audit_reason(value: object, *, required: bool = True) -> str:
    """An operator's reason as the audit log keeps it: stripped, at most REASON_LIMIT characters.

    Raises PayloadError naming ``reason`` when a required one is not text or says nothing, or an
    optional one is not text; an optional blank one is "" (the caller says what stands for it).
    """
    if isinstance(value, str):
        reason = value.strip()[:REASON_LIMIT]
        if reason or not required:
            return reason
    elif not required:
        raise PayloadError("reason", value, "is not text")
    raise PayloadError("reason", value, "must say why (it goes into the audit log)")
