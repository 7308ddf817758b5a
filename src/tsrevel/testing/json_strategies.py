"""Hypothesis strategies for arbitrary and tricky JSON, and valid webhooks with one value spoiled: "never crash" properties."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from tsrevel.testing.payload_strategies import webhook_payloads

# Values that broke (or could break) parsers of this kind: edge numbers, odd digits, extreme dates.
TRICKY_JSON_SCALARS = (
    float("nan"),
    float("inf"),
    float("-inf"),
    Decimal("1E+999999999"),
    Decimal("-1E-999999999"),
    Decimal("1E+5000"),
    Decimal("-0.0"),
    2**63,
    -1,
    "",
    " ",
    "NaN",
    "-Infinity",
    "1e999999999999999999999",
    "²",
    "٣",
    "38,50",
    "$1,200.50",
    "$",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
    "01/01/0001 12:00 AM",
    "12/31/9999 11:59 PM",
    "2025-12-29T02:00:00",
    "\ud800",
    "\x00",
)


@functools.lru_cache(maxsize=None)
def json_scalars(*, decoded: bool = True) -> st.SearchStrategy[Any]:
    """Any JSON scalar, often a tricky one: as ``decode_json`` returns it (decoded), else ``json.dumps``-able."""
    if decoded:
        fractions = st.decimals(allow_nan=False, allow_infinity=False)
        tricky = TRICKY_JSON_SCALARS
    else:
        fractions = st.floats(allow_nan=False, allow_infinity=False)
        tricky = tuple(v for v in TRICKY_JSON_SCALARS if not isinstance(v, Decimal))
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers() if decoded else st.integers(-(10**30), 10**30),
        fractions,
        st.sampled_from(tricky),
        st.sampled_from(tricky),
        st.text(),
        st.builds("{}.{}".format, st.integers(-(10**20), 10**20), st.integers(0, 9999)),  # numeric text
    )


@functools.lru_cache(maxsize=None)
def json_values(*, decoded: bool = True, max_leaves: int = 30) -> st.SearchStrategy[Any]:
    """Any JSON value (see json_scalars), nested in arrays and objects."""
    return st.recursive(
        json_scalars(decoded=decoded),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
        max_leaves=max_leaves,
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterable[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield prefix + (key,)
            yield from _paths(child, prefix + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield prefix + (index,)
            yield from _paths(child, prefix + (index,))


_WEBHOOK_PAYLOADS = webhook_payloads()


@st.composite
def mutated_payloads(
    draw: st.DrawFn, payloads: st.SearchStrategy[dict[str, Any]] | None = None, *, decoded: bool = False
) -> dict[str, Any]:
    """A valid webhook body with one value anywhere in it replaced by an arbitrary JSON value (see json_values)."""
    payload = copy.deepcopy(draw(payloads if payloads is not None else _WEBHOOK_PAYLOADS))
    paths = list(_paths(payload))
    path = paths[draw(st.integers(0, len(paths) - 1))]
    parent = payload
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = draw(json_scalars(decoded=decoded) | json_values(decoded=decoded, max_leaves=8))
    return payload

