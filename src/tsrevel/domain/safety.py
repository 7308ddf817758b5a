"""The operators' levers as data, and decide(): the pure, total choice of what to do with a delivery."""

from __future__ import annotations

import attrs

from tsrevel.domain.events import WebhookEnvelope

# Triggers that may carry a new or changed event worth an order (DESIGN.md §1).
ORDER_TRIGGERS = frozenset(
    {
        "CREATE_EVENT",
        "UPDATE_EVENT",
        "STATUS_CHANGE_EVENT",
        "CHANGE_EVENT_GUEST_COUNTS",
        "CHANGE_EVENT_DATETIME",
        "REASSIGN_EVENT_LOCATION",
        "REASSIGN_EVENT_AREAS",
        "REASSIGN_EVENT_OWNERSHIP",
        "REASSIGN_EVENT_CONTACT",
        "REASSIGN_EVENT_ACCOUNT",
    }
)
WITHDRAW_TRIGGERS = frozenset({"DELETE_EVENT"})
WITHDRAW_STATUSES = frozenset({"LOST"})
KNOWN_STATUSES = ("PROSPECT", "TENTATIVE", "DEFINITE", "CLOSED", "LOST", "WAITLIST")


@attrs.frozen
class SafetyFlags:
    """The kill switch, dry run and location allow-list in force for one decision."""

    enable_connector: bool = True
    dry_run: bool = True
    allowed_locations: frozenset[str] = frozenset()

    def location_allowed(self, location_id: str | None, site_id: str | None = None) -> bool:
        """An empty allow-list admits every location; otherwise the location id must be listed, or,
        for an event that carries no location id, its site as ``site:<id>``."""
        if not self.allowed_locations:
            return True
        if location_id is not None:
            return location_id in self.allowed_locations
        return site_id is not None and f"{SITE_PREFIX}{site_id}" in self.allowed_locations


SITE_PREFIX = "site:"


def unknown_allowed_entries(allowed: frozenset[str], locations: frozenset[str], sites: frozenset[str]) -> list[str]:
    """ALLOWED_LOCATIONS entries that name no location or site of the mapping file, sorted (warned at start)."""
    known = set(locations) | {f"{SITE_PREFIX}{s}" for s in sites}
    return sorted(set(allowed) - known)


@attrs.frozen
class OrderPolicy:
    """Which triggers and event statuses make an order (``ORDER_ON_STATUSES``)."""

    order_on_statuses: frozenset[str] = frozenset({"DEFINITE"})
    order_triggers: frozenset[str] = ORDER_TRIGGERS


@attrs.frozen
class Hold:
    """Kill switch off: keep the delivery, do nothing, replay later."""

    reason: str = "ENABLE_CONNECTOR is false: held for replay"


@attrs.frozen
class Skip:
    """Location not allowed: no side effect, replayable once allowed."""

    reason: str


@attrs.frozen
class Ignore:
    """A trigger or status that makes no order; final."""

    reason: str


@attrs.frozen
class Withdraw:
    """The event was deleted or lost: an existing order must be voided by a person."""

    reason: str


@attrs.frozen
class Process:
    """Make (or, when dry_run, only rehearse) the event's order."""

    dry_run: bool


Decision = Hold | Skip | Ignore | Withdraw | Process


def decide(envelope: WebhookEnvelope, flags: SafetyFlags, policy: OrderPolicy = OrderPolicy()) -> Decision:
    """Choose what to do with a parsed delivery; total: every input yields exactly one decision."""
    if not flags.enable_connector:
        return Hold()
    event = envelope.event
    if event is None:
        kind = envelope.object_key or "no object"
        return Ignore(f"{envelope.trigger_type} carries {kind}, not an event: no order")
    trigger = envelope.trigger_type
    withdrawing = trigger in WITHDRAW_TRIGGERS or (
        trigger in policy.order_triggers and event.status in WITHDRAW_STATUSES
    )
    if not withdrawing and trigger not in policy.order_triggers:
        return Ignore(f"trigger {trigger} makes no order")
    if not withdrawing and event.status not in policy.order_on_statuses:
        wanted = ", ".join(sorted(policy.order_on_statuses)) or "none"
        return Ignore(f"status {event.status or '(none)'} makes no order (ORDER_ON_STATUSES: {wanted})")
    if not flags.location_allowed(event.location_id, event.site_id):
        where = f"location {event.location_id}" if event.location_id else f"site {event.site_id or '(none)'} (no location id)"
        return Skip(f"{where} is not in ALLOWED_LOCATIONS ({', '.join(sorted(flags.allowed_locations))})")
    if withdrawing:
        return Withdraw(f"event {event.id} {'deleted' if trigger in WITHDRAW_TRIGGERS else 'marked LOST'}")
    return Process(dry_run=flags.dry_run)
