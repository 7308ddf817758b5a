"""P3: the line-item fast path parses exactly as the general parsers do, or steps aside.

For every line item, ``plain_line_item`` either returns None (the general path then parses it,
accepting and refusing as before, naming the field path) or the very LineItem the general path
returns: same values, same Decimal exponents.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from tsrevel.domain.errors import PayloadError
from tsrevel.domain.line_items import general_line_item, plain_line_item

NUMBER_TEXTS = st.sampled_from(
    ["0", "1", "48", "3.25", "38.5", "0.125", "1.", ".5", ".", "", " ", "-1", "+2", "1e3", "1,000", "$5", "3.255", "0.0000001",
     "１２", "999999999999", "1000000000000", "NaN", "Infinity", "2.500", "007", " 4 ", "4\n", "0.00"]
)
NUMBERS = st.one_of(
    NUMBER_TEXTS,
    st.integers(-(10**13), 10**13),
    st.decimals(allow_nan=True, allow_infinity=True, places=None).filter(lambda d: not d.is_finite() or abs(d.adjusted()) < 20),
    st.sampled_from([Decimal("-0.0"), Decimal("38.50"), Decimal("1E+2"), Decimal("1E-9"), True, False, 1.5, None]),
    st.builds(dict, amount=NUMBER_TEXTS),
)
IDS = st.one_of(
    st.none(), st.just(""), st.integers(-(10**70), 10**70), st.sampled_from(["8803", "0042", "abc-1", " 12", "1 2", "x" * 70, "9" * 65, "²"]),
    st.sampled_from([Decimal("12"), Decimal("12.5"), 12.0, True]),
)
TEXTS = st.one_of(st.none(), st.text(max_size=8), st.integers(0, 99), st.sampled_from([Decimal("1.5"), [], {}, True]))
CATEGORIES = st.one_of(TEXTS, st.builds(dict, name=TEXTS), st.just({}), st.just([]))
FIELDS = {
    "id": IDS, "menu_item_id": IDS, "quantity": NUMBERS, "price": NUMBERS, "total_price": NUMBERS, "discount": NUMBERS,
    "display_name": TEXTS, "description": TEXTS, "section": TEXTS, "category": CATEGORIES,
}
LINE_ITEMS = st.fixed_dictionaries({}, optional=FIELDS)


def general(item: dict[str, Any]) -> Any:
    try:
        return general_line_item(item, 0, "event.documents[0].line_items[0]")
    except PayloadError as exc:
        return exc


@given(LINE_ITEMS)
@example({"quantity": "48", "price": "3.25", "total_price": "156.0", "id": 1, "menu_item_id": 5501, "category": {"name": "Donuts"}})
@example({"quantity": Decimal("4"), "price": Decimal("38.5"), "discount": Decimal("-0.0"), "menu_item_id": "0042"})
def test_the_fast_path_returns_what_the_general_path_returns_or_steps_aside(item):
    fast = plain_line_item(item, 0)
    if fast is None:
        return
    expected = general(item)
    assert not isinstance(expected, PayloadError), f"the fast path accepted what the general path refuses: {expected}"
    assert fast == expected
    for name in ("quantity", "price", "total_price", "discount"):  # equal Decimals may differ in exponent; these must not
        assert str(getattr(fast, name)) == str(getattr(expected, name)), name


def test_the_common_shapes_take_the_fast_path():
    assert plain_line_item({"id": 1, "quantity": "48", "price": "3.25", "total_price": "156.0", "category": {"name": "Donuts"},
                             "menu_item_id": 5501, "display_name": " Ring ", "section": "Breakfast"}, 0) is not None
    assert plain_line_item({"id": 2, "quantity": 4, "price": Decimal("38.5"), "menu_item_id": None}, 0) is not None


def test_anything_unusual_is_left_to_the_general_path():
    for odd in ({"quantity": "abc", "price": "1"}, {"quantity": "1", "price": "-1"}, {"quantity": "1", "price": "1.005"},
                {"quantity": "1", "price": "$1"}, {"quantity": "1", "price": "1", "id": True}):
        assert plain_line_item(odd, 0) is None, odd
