"""Reloading the mapping file while running: here on demand, and on every other replica when it sees the store's reload count grow."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from tsrevel.domain.errors import ConfigError, InvalidRequest, MappingRejected
from tsrevel.domain.mapping import MappingConfig

if TYPE_CHECKING:
    from tsrevel.domain.processing.processor import Processor

log = logging.getLogger("tsrevel.processing")

# The store's named value that counts mapping reloads: every replica re-reads its file when it grows.
MAPPING_RELOAD_VALUE = "mapping.reload"


@attrs.frozen(kw_only=True)
class MappingStatus:
    """The mapping in force in this process: which file, when it was loaded, which reload it follows."""

    file: str | None  # None: given in code (the library, tests), not read from a file
    loaded_at: datetime | None
    generation: int  # the reload it follows (0: none since the store was made)
    locations: int
    sites: int
    products: int

    def describe(self) -> str:
        source = self.file or "(given in code)"
        when = self.loaded_at.isoformat() if self.loaded_at else "at start-up"
        return f"{source}, loaded {when}: {self.locations} location(s), {self.sites} site(s), {self.products} shared product(s)"


def mapping_status(p: Processor) -> MappingStatus:
    """Which mapping is in force here: its file, when it was loaded, the reload it follows."""
    return MappingStatus(
        file=p.mapping_source.location if p.mapping_source is not None else None,
        loaded_at=p.mapping_loaded_at,
        generation=p.mapping_generation or 0,
        locations=len(p.mapping.locations),
        sites=len(p.mapping.sites),
        products=len(p.mapping.products.by_menu_item) + len(p.mapping.products.by_name),
    )


async def reload_mapping(p: Processor, *, actor: str, reason: str) -> MappingStatus:
    """Read the mapping file again: in force for the next delivery here, and on every replica after its next poll.

    A file that does not validate raises MappingRejected (file, line, problem) and the mapping
    in force stays; either way the attempt is audited. HTTP, the CLI, SIGHUP and the console
    all call this.
    """
    if p.mapping_source is None:
        raise InvalidRequest("this connector was given its mapping in code: there is no mapping file to reload")
    now, file = p.clock.now(), p.mapping_source.location
    try:
        config = p.mapping_source.load()
    except ConfigError as exc:
        await p.store.add_audit(actor=actor, action="mapping.reload", detail=f"refused, old mapping kept: {exc}"[:500], reason=reason, now=now)
        log.error("mapping reload by %s refused, the mapping loaded at %s stays in force: %s", actor, _iso(p.mapping_loaded_at), exc)
        raise MappingRejected(file, str(exc)) from None
    generation = _reload_generation(await p.store.get_value(MAPPING_RELOAD_VALUE)) + 1
    record = {"generation": generation, "actor": actor, "reason": reason, "at": now.isoformat(), "file": file}
    await p.store.put_value(MAPPING_RELOAD_VALUE, json.dumps(record), now=now)
    _adopt(p, config, generation, now)
    status = mapping_status(p)
    await p.store.add_audit(actor=actor, action="mapping.reload", detail=f"generation {generation}: {status.describe()}"[:500], reason=reason, now=now)
    log.warning("mapping reloaded by %s (%s): %s", actor, reason, status.describe())
    return status


async def follow_mapping_reload(p: Processor) -> None:
    """Before a delivery: adopt a reload asked for elsewhere (the CLI, another replica) by reading the file again."""
    if p.mapping_source is None:
        return
    generation = _reload_generation(await p.store.get_value(MAPPING_RELOAD_VALUE))
    if p.mapping_generation is None or generation <= p.mapping_generation:
        # First look (the file was read at start-up, so it is current), or nothing new.
        p.mapping_generation = max(generation, p.mapping_generation or 0)
        return
    p.mapping_generation = generation  # once per reload, even when the file is bad: a fix is a new reload
    try:
        config = p.mapping_source.load()
    except ConfigError as exc:
        log.error("mapping reload %d not followed here, the mapping loaded at %s stays in force: %s", generation, _iso(p.mapping_loaded_at), exc)
        return
    _adopt(p, config, generation, p.clock.now())
    log.warning("mapping reload %d followed: %s", generation, mapping_status(p).describe())


def _adopt(p: Processor, config: MappingConfig, generation: int, now: datetime) -> None:
    p.mapping, p.mapping_generation, p.mapping_loaded_at = config, generation, now


def _reload_generation(raw: str | None) -> int:
    """The reload count in the store's named value (0 when absent or unreadable)."""
    try:
        record = json.loads(raw) if raw else None
        return int(record["generation"]) if isinstance(record, dict) else 0
    except (ValueError, TypeError, KeyError):
        return 0


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else "start-up"
