"""The invoice arithmetic: where each TripleSeat billing detail lands in Revel, and whether the numbers add up; no I/O.

TripleSeat's invoice, as we read it (docs/configuration.md, "Money"):
lines (Σ quantity × price, each rounded half up to the cent) − discount + taxes + fees = grand total,
and what remains due = grand total − Σ counted payments. ``balance`` checks the first, exactly;
an order is never written with a total that does not match.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import attrs

TAX = "tax"
GRATUITY = "gratuity"
SERVICE_FEE = "service_fee"
PRODUCT_PREFIX = "product:"
KINDS = (TAX, GRATUITY, SERVICE_FEE)
SKIPPED = "skipped"  # an unmapped billing detail left out under UNMAPPED_ITEMS=skip
ZERO = Decimal("0.00")


@attrs.frozen
class BillingTarget:
    """Where a billing detail goes: an orderInfo field (tax, gratuity, service_fee) or an order line of a product."""

    kind: str
    product_id: int | None = None

    @classmethod
    def parse(cls, text: str) -> BillingTarget | None:
        """'tax', 'gratuity', 'service_fee' or 'product:<id>' (case and space ignored); None when it is none of them."""
        value = "".join(text.split()).lower()
        if value in KINDS:
            return cls(value)
        if value.startswith(PRODUCT_PREFIX):
            digits = value[len(PRODUCT_PREFIX) :]
            if digits.isascii() and digits.isdigit():
                return cls("product", int(digits))
        return None

    def __str__(self) -> str:
        return f"{PRODUCT_PREFIX}{self.product_id}" if self.kind == "product" else self.kind


@attrs.frozen(kw_only=True)
class BillingLine:
    """One TripleSeat billing detail and where it landed (``kind`` tax/gratuity/service_fee/product/skipped)."""

    name: str
    amount: Decimal
    kind: str
    product_id: int | None = None

    @property
    def label(self) -> str:
        """How the arithmetic names it: tax, gratuity, fee (service fees and fee lines), or its own name when skipped."""
        if self.kind in (TAX, GRATUITY):
            return self.kind
        if self.kind == SKIPPED:
            return f"{self.name} (not in [billing])"
        return "fee"


@attrs.frozen(kw_only=True)
class Balance:
    """TripleSeat's numbers for one event, side by side: the parts and the grand total they must make."""

    lines: Decimal
    discount: Decimal = ZERO
    charges: tuple[BillingLine, ...] = ()
    grand_total: Decimal | None = None

    @property
    def computed(self) -> Decimal:
        """lines − discount + every billing detail (mapped or skipped)."""
        return self.lines - self.discount + sum((c.amount for c in self.charges), ZERO)

    @property
    def unexplained(self) -> Decimal:
        """grand total − computed; 0 when TripleSeat sent no grand total."""
        return ZERO if self.grand_total is None else self.grand_total - self.computed

    @property
    def ok(self) -> bool:
        return self.unexplained == 0

    def describe(self) -> str:
        """The arithmetic written out: 'lines 420.00 − discount 20.00 + tax 35.18 + fee 10.00 = 445.18; ...'."""
        terms = [f"lines {self.lines}"]
        if self.discount:
            terms.append(f"− discount {self.discount}")
        by_label: dict[str, Decimal] = {}
        for charge in self.charges:
            by_label[charge.label] = by_label.get(charge.label, ZERO) + charge.amount
        terms.extend(f"+ {label} {amount}" for label, amount in by_label.items() if amount)
        text = " ".join(terms) + f" = {self.computed}"
        if self.grand_total is None:
            return text + " (TripleSeat sent no grand total)"
        if self.ok:
            return text + f" = TripleSeat grand total {self.grand_total}"
        return text + f"; TripleSeat grand total {self.grand_total}: {self.unexplained} unexplained"


def balance(lines: Iterable[Decimal], discount: Decimal, charges: Iterable[BillingLine], grand_total: Decimal | None) -> Balance:
    """The invariant's inputs, summed: Σ line totals − discount + Σ charges must equal grand_total exactly."""
    return Balance(lines=sum(lines, ZERO), discount=discount, charges=tuple(charges), grand_total=grand_total)


def remaining_due(total: Decimal, payments: Iterable[Decimal]) -> Decimal:
    """What is still owed: total − Σ counted payments."""
    return total - sum(payments, ZERO)


def toml_line(name: str) -> str:
    """The [billing] line an operator adds for an unmapped billing detail, with our best guess of its kind."""
    lowered = name.casefold()
    if "tax" in lowered:
        kind = TAX
    elif "gratuity" in lowered or "tip" in lowered.split():
        kind = GRATUITY
    else:
        kind = SERVICE_FEE
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" = "{kind}"'
