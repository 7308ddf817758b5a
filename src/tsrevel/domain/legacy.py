"""The previous connector's order references (REVEL_LEGACY_LOCAL_IDS): templates, and a lookup that also tries them.

Orders the replaced connector made carry ``local_id = "Triple Seat <event id>"``, not tsrevel's
``tripleseat-<event id>``. ``LegacyReferences`` renders and recognises such references;
``LegacyLookup`` wraps an OrderGateway so that the find-before-create lookup finds them too,
which is what keeps the switch-over from ordering an event a second time. Performs no I/O of
its own: every Revel call goes through the wrapped port.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

from tsrevel.domain.errors import ConfigError
from tsrevel.domain.ids import ORDER_REFERENCE_PREFIX
from tsrevel.domain.orders import OrderRef, RevelOrder
from tsrevel.domain.ports import OrderGateway

PLACEHOLDER = "{event_id}"
_BRACED = re.compile(r"\{[^{}]*\}|[{}]")


def check_template(template: str) -> str:
    """The template, if it holds ``{event_id}`` and no other brace; else ConfigError naming it."""
    if PLACEHOLDER not in template:
        raise ConfigError(f"REVEL_LEGACY_LOCAL_IDS: {template!r} has no {PLACEHOLDER}")
    others = [m for m in _BRACED.findall(template) if m != PLACEHOLDER]
    if others:
        raise ConfigError(
            f"REVEL_LEGACY_LOCAL_IDS: {template!r} has {others[0]!r}; only {PLACEHOLDER} may stand in braces"
        )
    return template


@attrs.frozen
class LegacyReferences:
    """The local_id templates of earlier connectors, in the order they are tried."""

    templates: tuple[str, ...] = attrs.field(default=(), converter=tuple)

    def __attrs_post_init__(self) -> None:
        for template in self.templates:
            check_template(template)

    @classmethod
    def parse(cls, text: str | None) -> LegacyReferences:
        """Comma-separated templates (``Triple Seat {event_id}``), surrounding space trimmed, duplicates dropped."""
        parts = [p.strip() for p in (text or "").split(",")]
        return cls(tuple(dict.fromkeys(p for p in parts if p)))

    def __bool__(self) -> bool:
        return bool(self.templates)

    def for_event(self, event_id: str) -> tuple[str, ...]:
        """Every legacy local_id the event's order may carry."""
        return tuple(t.replace(PLACEHOLDER, event_id) for t in self.templates)

    def event_id_of(self, local_id: str) -> str | None:
        """The event id a legacy local_id names, or None when no template matches it."""
        for pattern in self._patterns():
            match = pattern.fullmatch(local_id)
            if match:
                return match.group(1)
        return None

    def prefixes(self) -> tuple[str, ...]:
        """What each template's references start with (for listing them in Revel); may hold ``""``."""
        return tuple(dict.fromkeys(t.split(PLACEHOLDER, 1)[0] for t in self.templates))

    def _patterns(self) -> Iterable[re.Pattern[str]]:
        for template in self.templates:
            before, _, after = template.partition(PLACEHOLDER)
            rest = re.escape(after).replace(re.escape(PLACEHOLDER), r"\1")
            yield re.compile(re.escape(before) + r"([0-9A-Za-z_-]+)" + rest)


def event_id_of_reference(reference: str) -> str | None:
    """The event id in tsrevel's own reference ``tripleseat-<id>``, or None."""
    if reference.startswith(ORDER_REFERENCE_PREFIX):
        event_id = reference[len(ORDER_REFERENCE_PREFIX) :]
        return event_id or None
    return None


class LegacyLookup:
    """OrderGateway that, when tsrevel's own reference is not in Revel, looks for each legacy one.

    A legacy reference names one event wherever it is, and the previous connector may have chosen
    another establishment than the mapping file does (it looked events up by site first): so after
    the order's own establishment, the other mapped ``establishments`` are searched too. A legacy
    match is the event's order: the returned OrderRef names the local_id (and, when it is not the
    order's, the establishment) it was found under, so the ledger and the email can say so; no
    create follows.
    """

    def __init__(self, inner: OrderGateway, legacy: LegacyReferences, *, establishments: Iterable[int] = ()) -> None:
        self.inner = inner
        self.legacy = legacy
        self.establishments = tuple(sorted(set(establishments)))

    async def find_order(self, establishment_id: int, reference: str, *, correlation_id: str) -> OrderRef | None:
        found = await self.inner.find_order(establishment_id, reference, correlation_id=correlation_id)
        event_id = event_id_of_reference(reference)
        if found is not None or event_id is None:
            return found
        where = (establishment_id, *(e for e in self.establishments if e != establishment_id))
        for establishment in where:
            for legacy_id in self.legacy.for_event(event_id):
                found = await self.inner.find_order(establishment, legacy_id, correlation_id=correlation_id)
                if found is not None:
                    elsewhere = establishment if establishment != establishment_id else None
                    return attrs.evolve(found, local_id=legacy_id, establishment_id=elsewhere)
        return None

    async def create_order(self, order: RevelOrder, *, correlation_id: str) -> OrderRef:
        return await self.inner.create_order(order, correlation_id=correlation_id)


def with_legacy_lookup(gateway: OrderGateway, legacy: LegacyReferences, *, establishments: Iterable[int] = ()) -> OrderGateway:
    """The gateway itself when no legacy template is set, else wrapped in LegacyLookup."""
    return LegacyLookup(gateway, legacy, establishments=establishments) if legacy else gateway
