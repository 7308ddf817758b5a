"""The mapping assistant: propose a Revel product for each TripleSeat item name, as a TOML fragment to review.

It never edits the mapping in force: `tsrevel mapping suggest` prints (or writes to a new file)
a fragment a person reviews and pastes. Names are compared with rapidfuzz's token_sort_ratio
after its default processing (case, punctuation and word order do not count), on a 0-100 scale.
Below the threshold, or when two different products score within AMBIGUITY_MARGIN of each other,
nothing is proposed: a commented line says why, since a wrong product is worse than none.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import attrs
from rapidfuzz import fuzz, process, utils

from tsrevel.domain.mapping import MENU_ITEM_PREFIX, MappingConfig, normalise_name
from tsrevel.entrypoints.views import PRODUCT_PLACEHOLDER, Unmapped, toml_string

DEFAULT_MIN_SCORE = 80.0  # token_sort_ratio: a misspelt or re-cased name scores 90+, an unrelated one under 50
AMBIGUITY_MARGIN = 2.0
CANDIDATES = 3  # the proposal and the two next candidates


@attrs.frozen(kw_only=True)
class Product:
    """A Revel product as its establishment's catalog lists it."""

    product_id: int
    name: str
    establishment_id: int


@attrs.frozen(kw_only=True)
class Candidate:
    """A product for an item, and how alike their names are (0-100)."""

    product: Product
    score: float


@attrs.frozen(kw_only=True)
class ItemSeen:
    """A TripleSeat item name to find a product for, and what is known of it."""

    name: str
    menu_item_id: str | None = None
    waiting: int = 0  # deliveries it stopped (0: seen, not stopping anything)
    locations: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class Suggestion:
    item: ItemSeen
    candidates: tuple[Candidate, ...]
    proposal: Candidate | None
    why_none: str | None = None

    @property
    def key(self) -> str:
        return f"{MENU_ITEM_PREFIX}{self.item.menu_item_id}" if self.item.menu_item_id else self.item.name


def items_to_map(unmapped: Iterable[Unmapped], seen: Mapping[str, str | None], mapping: MappingConfig) -> list[ItemSeen]:
    """The unmapped items (most deliveries waiting first), then names seen in deliveries that no product map covers."""
    items: dict[str, ItemSeen] = {}
    for u in unmapped:
        if u.kind == "item" and u.name:
            items.setdefault(normalise_name(u.name), ItemSeen(name=u.name, menu_item_id=u.menu_item_id, waiting=u.count, locations=u.locations))
    maps = [mapping.products, *(v.products for v in (*mapping.locations.values(), *mapping.sites.values()))]
    for name, menu_item_id in sorted(seen.items()):
        covered = any(
            (menu_item_id is not None and menu_item_id in m.by_menu_item) or normalise_name(name) in m.by_name for m in maps
        )
        if not covered:
            items.setdefault(normalise_name(name), ItemSeen(name=name, menu_item_id=menu_item_id))
    return list(items.values())


def suggest(items: Sequence[ItemSeen], products: Sequence[Product], *, min_score: float = DEFAULT_MIN_SCORE) -> list[Suggestion]:
    """For each item, the best products by name similarity, and the one to propose (or why none)."""
    names = [p.name for p in products]
    suggestions = []
    for item in items:
        found = process.extract(item.name, names, scorer=fuzz.token_sort_ratio, processor=utils.default_process, limit=CANDIDATES)
        candidates = tuple(Candidate(product=products[index], score=float(score)) for _, score, index in found)
        proposal, why = None, None
        if not candidates:
            why = "no Revel products were read"
        elif candidates[0].score < min_score:
            why = f"no product scores {min_score:g} or more"
        elif len(candidates) > 1 and candidates[0].score - candidates[1].score < AMBIGUITY_MARGIN and (
            candidates[1].product.product_id != candidates[0].product.product_id
        ):
            why = f"two products score within {AMBIGUITY_MARGIN:g} of each other"
        else:
            proposal = candidates[0]
        suggestions.append(Suggestion(item=item, candidates=candidates, proposal=proposal, why_none=why))
    return suggestions


def _describe(c: Candidate) -> str:
    return f"{c.product.product_id} {c.product.name!r} (establishment {c.product.establishment_id}) {c.score:.1f}"


def render_toml(
    suggestions: Sequence[Suggestion], *, table: str, min_score: float, establishments: Sequence[int], now: datetime
) -> str:
    """The TOML fragment: one line per proposal with its score and the next candidates as comments."""
    lines = [
        f"# tsrevel mapping suggest, {now.isoformat(timespec='seconds')}: {len(suggestions)} item(s), "
        f"products of establishment(s) {', '.join(map(str, establishments)) or '(none)'}",
        f"# Scores are 0-100 (rapidfuzz token_sort_ratio); nothing is proposed below {min_score:g}.",
        "# Review every line, then paste it into the mapping file; this fragment changes nothing by itself.",
        f"[{table}]",
    ]
    for s in suggestions:
        about = [f"{s.item.name!r}"]
        if s.item.menu_item_id:
            about.append(f"menu_item:{s.item.menu_item_id}")
        if s.item.waiting:
            about.append(f"{s.item.waiting} deliver{'y' if s.item.waiting == 1 else 'ies'} waiting")
        if s.item.locations:
            about.append(f"seen at {', '.join(s.item.locations)}")
        lines.append("")
        lines.append("# " + ", ".join(about))
        others = s.candidates[1:] if s.proposal else s.candidates
        if s.proposal is not None:
            next_text = f"; next: {'; '.join(_describe(c) for c in others)}" if others else ""
            lines.append(f"{toml_string(s.key)} = {s.proposal.product.product_id}  # {_describe(s.proposal)}{next_text}")
        else:
            best = f" (best: {'; '.join(_describe(c) for c in others)})" if others else ""
            lines.append(f"# {s.why_none}{best}: map it by hand")
            lines.append(f"# {toml_string(s.key)} = {PRODUCT_PLACEHOLDER}")
    return "\n".join(lines) + "\n"
