"""The safety flags in force: a stored runtime override over the boot-time environment value, read before each side effect."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs

from tsrevel.domain.ports import FlagOverrides
from tsrevel.domain.safety import LiveRequirements, SafetyFlags, live_refusal

if TYPE_CHECKING:
    from tsrevel.domain.processing.processor import Processor

log = logging.getLogger("tsrevel.processing")


def resolve_flags(boot: SafetyFlags, overrides: FlagOverrides, live: LiveRequirements | None = None) -> SafetyFlags:
    """The flags in force: a stored runtime override wins over the boot-time environment value.

    A stored ``dry_run=false`` (set, say, by another replica that has a signing secret) is not
    obeyed by a service that may not go live (live_refusal): it stays in dry run.
    """
    dry_run = boot.dry_run if overrides.dry_run is None else overrides.dry_run
    if overrides.dry_run is False and live is not None and live_refusal(live) is not None:
        dry_run = True
    return attrs.evolve(
        boot,
        enable_connector=boot.enable_connector if overrides.enable_connector is None else overrides.enable_connector,
        dry_run=dry_run,
    )


async def flags_in_force(p: Processor) -> SafetyFlags:
    """The flags in force now, read from the store every time so every replica agrees."""
    overrides = await p.store.get_flags()
    flags = resolve_flags(p.boot_flags, overrides, p.live_requirements)
    if overrides.dry_run is False and flags.dry_run and not p.refused_override_logged:
        p.refused_override_logged = True  # once per process, not once per delivery
        log.warning(
            "a stored runtime override says dry_run=false, but this service stays in dry run: it needs %s",
            p.live_refused(),
        )
    return flags
