"""Numbers in TripleSeat's JSON (amounts, quantities, counts): read as Decimal, never through float, money quantised once."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from tsrevel.domain.errors import PayloadError

MAX_AMOUNT = Decimal("1e12")  # built once, not on every amount parsed
CENT = Decimal("0.01")
# A quantity has at most this many decimal places (2.5 hours, 0.125 kg); 1E-999999999 is no quantity.
QUANTITY_PLACES = 6
# Commas only as thousands separators: "38,50" (a decimal comma) must not become 3850.
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")


def cents(value: Decimal) -> Decimal:
    """An amount rounded half up to the cent: the one rounding rule, used for a line's quantity x price."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def as_decimal(value: object, path: str) -> Decimal | None:
    """Parse a number sent as a number or a string, never through float; refuses non-finite and absurd values."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise PayloadError(path, value, "is not a number")
    if isinstance(value, (int, Decimal)):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        text = value.strip()
        if text.startswith("$"):
            text = text[1:]
        if "," in text:
            if not _THOUSANDS.fullmatch(text):
                raise PayloadError(path, value, "is not a number")
            text = text.replace(",", "")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise PayloadError(path, value, "is not a number") from None
    else:
        raise PayloadError(path, value, "is not a number")
    if not number.is_finite():
        raise PayloadError(path, value, "is not a finite number")
    if number.copy_abs() >= MAX_AMOUNT:  # copy_abs: abs() overflows on 1e999999999
        raise PayloadError(path, value, "is too large to be an amount")
    if decimal_places(number) > 12:  # 1E-999999999: its digits would not even fit in memory when printed
        raise PayloadError(path, value, "has an absurd exponent (more than 12 decimal places)")
    return number


def decimal_places(number: Decimal) -> int:
    """Decimal places that carry a digit: 3.2500 -> 2, 1E-9 -> 9, 0E-999 -> 0; read off the tuple, no arithmetic."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite: checked by the callers
    if exponent >= 0:
        return 0
    trailing = 0
    for digit in reversed(digits):
        if digit:
            return max(0, -(exponent + trailing))
        trailing += 1
    return 0  # all zeros


def as_money(value: object, path: str) -> Decimal | None:
    """An amount of money, quantised to the cent here, once: non-negative, and no digit beyond the cent."""
    number = as_decimal(value, path)
    if number is None:
        return None
    if number < 0:
        raise PayloadError(path, value, "is negative; an amount of money must be 0 or more")
    if decimal_places(number) > 2:
        raise PayloadError(path, value, "has more than 2 decimals; money is exact to the cent")
    return number.quantize(CENT)


def _required_decimal(value: object, path: str) -> Decimal:
    number = as_decimal(value, path)
    if number is None:
        raise PayloadError(path, value, "is missing; a number is required")
    return number


def as_required_money(value: object, path: str) -> Decimal:
    number = as_money(value, path)
    if number is None:
        raise PayloadError(path, value, "is missing; a number is required")
    return number


def as_quantity(value: object, path: str) -> Decimal:
    number = _required_decimal(value, path)
    if decimal_places(number) > QUANTITY_PLACES:
        raise PayloadError(path, value, f"has more than {QUANTITY_PLACES} decimal places; not a quantity")
    return number


def as_count(value: object, path: str) -> int | None:
    number = as_decimal(value, path)
    if number is None:
        return None
    if number != number.to_integral_value() or number < 0:
        raise PayloadError(path, value, "is not a whole, non-negative count")
    return int(number)

