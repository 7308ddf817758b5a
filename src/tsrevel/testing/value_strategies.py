"""Hypothesis strategies for single values as TripleSeat writes them: ids, money, quantities, unknown keys; needs the dev extra."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

def wire_ids(ids: st.SearchStrategy[int] = st.integers(1, 99_999_999)) -> st.SearchStrategy[int | str]:
    """An id as TripleSeat sends it: an integer or the same digits as a string."""
    return st.tuples(ids, st.booleans()).map(lambda pair: str(pair[0]) if pair[1] else pair[0])


def _money_form(cents: int, form: int) -> int | str | float:
    units, rest = divmod(cents, 100)
    forms: list[int | str | float] = [f"{units}.{rest:02d}", cents / 100]  # repr(cents / 100) is exact here
    if rest == 0:
        forms += [units, f"{units}.0", str(units)]
    elif rest % 10 == 0:
        forms.append(f"{units}.{rest // 10}")
    return forms[form % len(forms)]


def money(min_cents: int = 0, max_cents: int = 2_500_000) -> st.SearchStrategy[int | str | float]:
    """An amount as sent: int, Decimal-like string ("16586.0", "3.25") or a float whose repr is exact."""
    return st.builds(_money_form, st.integers(min_cents, max_cents), st.integers(0, 4))


def _quantity_form(whole: int, half: bool, form: int) -> int | str | float:
    if half:
        return (whole + 0.5, f"{whole}.5")[form % 2]
    return (whole, str(whole), f"{whole}.0", float(whole))[form % 4]


def quantities() -> st.SearchStrategy[int | str | float]:
    """A line quantity: mostly whole (48, "48", "12.0", 4.0), sometimes a half (2.5, "0.5")."""
    halves = st.integers(0, 3).map(lambda n: n == 0)
    return st.builds(_quantity_form, st.integers(0, 400), halves, st.integers(0, 3)).filter(
        lambda q: q not in (0, "0", "0.0", 0.0)
    )


def as_decimal(value: int | str | float) -> Decimal:
    """The exact Decimal a wire amount stands for (what the parser must produce)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    return Decimal(str(value).replace("$", "").replace(",", "").strip())


_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.text(max_size=20),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: float(repr(f))),
)
# Every extra key starts with "x_", so it can never shadow a field TripleSeat documents.
_UNKNOWN_KEYS = st.dictionaries(
    st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=14).map("x_".__add__),
    _JSON_SCALARS | st.lists(_JSON_SCALARS, max_size=3),
    max_size=3,
)


def unknown_keys() -> st.SearchStrategy[dict[str, Any]]:
    """Extra ``x_...`` keys TripleSeat may add one day; the parser must ignore them."""
    return _UNKNOWN_KEYS
