"""The test harness: fakes for every port and a connector wired on them, to rehearse incidents offline.

``world = fake_world(dry_run=False)`` gives a Processor on an in-memory store with a fake Revel,
mailer, TripleSeat API and a manual clock; ``await world.deliver(payload)`` then
``await world.drain()`` runs the worker to quiescence, and ``world.connector()`` is the public
``tsrevel.Connector`` over the same fakes. Hypothesis strategies are in
``tsrevel.testing.strategies`` (needs the ``dev`` extra); loopback HTTP servers that play
Revel, SendGrid and TripleSeat are in ``tsrevel.testing.servers``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from tsrevel.adapters.fakes import Fault, FakeMailer, FakeRevel, FakeTripleSeat, FlakyStore, ManualClock
from tsrevel.adapters.memory_store import MemoryStore
from tsrevel.domain import deliveries as st
from tsrevel.domain.mapping import MappingConfig, mapping_from_dict
from tsrevel.domain.processing import IntakeResult, ProcessingSettings, Processor
from tsrevel.domain.retry import RetryPolicy
from tsrevel.domain.safety import SafetyFlags
from tsrevel.domain.signature import sign_body

if TYPE_CHECKING:
    from tsrevel import Connector

__all__ = [
    "EXAMPLE_MAPPING",
    "Fault",
    "FakeMailer",
    "FakeRevel",
    "FakeTripleSeat",
    "FakeWorld",
    "FlakyStore",
    "ManualClock",
    "MemoryStore",
    "fake_world",
    "sign_body",
]

# The mapping of examples/mapping.toml, inline so the harness works from an installed package.
EXAMPLE_MAPPING: Mapping[str, Any] = {
    "defaults": {
        "timezone": "America/Los_Angeles", "dining_option": 3,
        "revel_user": 1, "revel_station": 4, "payment_type": 236, "discount": 3358,
    },
    "locations": {
        "201": {"name": "Tropicana", "revel_establishment": 4, "dining_option": 113, "products": {"menu_item:5501": 580}},
        "202": {"name": "Harbor Room", "revel_establishment": 5, "revel_station": 9},
    },
    "sites": {"15691": {"revel_establishment": 4}},
    "products": {
        "menu_item:5501": 579,
        "OG - Glazed raised ring": 579,
        "menu_item:5502": 581,
        "Cold brew, 96 oz box": 590,
        "Assorted pastry platter": 601,
    },
    "billing": {
        "Sales Tax": "tax",
        "Gratuity": "gratuity",
        "Service Fee": "service_fee",
        "Service charge 18%": "service_fee",
        "Delivery Fee": "product:902",
    },
}


@attrs.define
class FakeWorld:
    """A Processor and every fake it talks to; drive it with deliver() and drain()."""

    processor: Processor
    store: MemoryStore
    revel: FakeRevel
    mailer: FakeMailer
    tripleseat: FakeTripleSeat
    clock: ManualClock
    secret: str | None = None
    wake: asyncio.Event | None = None  # set by the processor when work arrives; a connector's worker waits on it

    async def deliver(self, payload: Mapping[str, Any] | bytes, *, signature: str | None = None, correlation_id: str = "test-cid") -> IntakeResult:
        """Deliver a webhook as TripleSeat would: signed with the world's secret unless a signature is given."""
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        if signature is None and self.secret is not None:
            signature = sign_body(body, secret=self.secret)
        return await self.processor.accept(body, signature=signature, correlation_id=correlation_id)

    async def drain(self, *, max_steps: int = 10_000, emails: bool = True) -> int:
        """Process every delivery that is due now (and send due emails); returns the steps taken."""
        steps = 0
        while steps < max_steps and await self.processor.process_next() is not None:
            steps += 1
        while emails and steps < max_steps and await self.processor.send_next_email():
            steps += 1
        return steps

    async def settle(self, *, max_rounds: int = 100) -> None:
        """Drain, then jump the clock to each pending retry until nothing is left to do (bounded)."""
        for _ in range(max_rounds):
            await self.drain()
            pending = [d for d in await self.store.list_deliveries(limit=100_000) if d.state in st.PENDING_STATES]
            due = [e for e in await self.store.list_emails(limit=100_000) if e.state in ("pending", "retrying", "sending")]
            # A claim whose worker died holds its delivery (and its event's other deliveries) until
            # the lease runs out, so lease expiries are moments to jump to as well.
            moments = [d.next_attempt_at for d in pending if d.next_attempt_at] + [d.lease_until for d in pending if d.lease_until]
            moments += [e.next_attempt_at for e in due if e.next_attempt_at]
            if not pending and not due:
                return
            # Whatever was due and claimable has just been drained: jump to the next moment still ahead.
            ahead = [m for m in moments if m > self.clock.now()]
            if not ahead:
                self.clock.advance(1)
                continue
            self.clock.set(min(ahead))
            self.clock.advance(0.001)
        raise AssertionError(f"the world did not settle in {max_rounds} rounds")

    def connector(self) -> Connector:
        """The public ``tsrevel.Connector`` over this world's processor and fakes (signed with the world's secret)."""
        # Through the public package, as a library user would: testing/ imports no entrypoint module.
        from tsrevel import Connector, Settings

        return Connector.over(self.processor, settings=Settings(signing_secret=self.secret), wake=self.wake)

    def sign(self, body: bytes) -> dict[str, str]:
        """The headers TripleSeat would send with body: X-Signature with the world's secret (none without one)."""
        return {"X-Signature": sign_body(body, secret=self.secret)} if self.secret is not None else {}

    async def states(self) -> dict[int, str]:
        return {d.id: d.state for d in await self.store.list_deliveries(limit=100_000)}


def fake_world(
    *,
    enable_connector: bool = True,
    dry_run: bool = False,
    allowed_locations: frozenset[str] = frozenset(),
    mapping: MappingConfig | Mapping[str, Any] | None = None,
    settings: ProcessingSettings | None = None,
    secret: str | None = None,
    mapping_file: str | Path | None = None,
) -> FakeWorld:
    """A connector wired on fakes; the defaults create real (fake) orders with the example mapping."""
    clock = ManualClock()
    source = None
    if mapping_file is not None:
        from tsrevel.adapters.mapping_toml import TomlMappingFile

        source = TomlMappingFile(mapping_file)  # reload_mapping() reads it again
        config = source.load()
    elif isinstance(mapping, MappingConfig):
        config = mapping
    else:
        config = mapping_from_dict(mapping if mapping is not None else EXAMPLE_MAPPING)
    base = settings or ProcessingSettings(
        retry=RetryPolicy(max_attempts=5, base_s=1.0, cap_s=60.0, retry_after_cap_s=600.0),
        email_retry=RetryPolicy(max_attempts=5, base_s=1.0, cap_s=60.0, retry_after_cap_s=600.0),
        email_to=("ops@example.com",),
        allow_unsigned=True,  # a world on fakes: going live without a signing secret is the rehearsal's choice
    )
    if secret is not None:
        base = attrs.evolve(base, signing_secret=secret)
    store = MemoryStore()
    revel = FakeRevel(clock=clock)
    mailer = FakeMailer(clock=clock)
    tripleseat = FakeTripleSeat(clock=clock)
    from tsrevel.bootstrap import use_cases_over  # dependency_injector, only once a world is built

    use_cases = use_cases_over(
        store=store,
        revel=revel,
        mapping=config,
        boot_flags=SafetyFlags(enable_connector=enable_connector, dry_run=dry_run, allowed_locations=allowed_locations),
        settings=base,
        clock=clock,
        mailer=mailer,
        events=tripleseat,
        feed=tripleseat,
        unit_random=lambda: 0.5,
        mapping_source=source,
    )
    return FakeWorld(
        processor=use_cases.processor(), store=store, revel=revel, mailer=mailer, tripleseat=tripleseat, clock=clock, secret=secret,
        wake=use_cases.wake(),
    )
