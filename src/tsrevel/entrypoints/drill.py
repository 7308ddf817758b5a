"""`tsrevel drill`: rehearse the runbook's four incidents on the fakes harness and check the invariants.

Everything runs in memory on ``tsrevel.testing.fake_world`` (an in-memory store, a fake Revel and
mailer, a manual clock): no network, no database, no waiting. Each scenario breaks something,
pulls the lever the runbook prescribes through the same use cases the CLI calls, and checks:
no duplicate order, no loss (every delivery finished, every event ordered once), and no side
effect while the connector was held.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from tsrevel.domain import deliveries as st
from tsrevel.domain.errors import GatewayError, SignatureError
from tsrevel.domain.ids import order_reference
from tsrevel.domain.mapping import mapping_from_dict
from tsrevel.domain.orders import OrderRef, RevelOrder
from tsrevel.domain.ports import EMAIL_SENT, EmailMessage
from tsrevel.domain.reconcile import reconcile
from tsrevel.testing import EXAMPLE_MAPPING, FakeMailer, FakeRevel, FakeWorld, fake_world

ACTOR = "drill"
EVERYTHING = 100_000
COLD_BREW = 590  # the Revel product "Cold brew, 96 oz box" maps to in the example mapping


@attrs.frozen
class Invariant:
    name: str
    ok: bool
    evidence: str


@attrs.frozen
class ScenarioResult:
    key: str
    title: str
    failure: str  # what went wrong
    levers: tuple[str, ...]  # what the operator did, as the runbook's commands
    invariants: tuple[Invariant, ...]

    @property
    def ok(self) -> bool:
        return all(i.ok for i in self.invariants)


# ---- breakable edges: composition around the fakes, so a drill can take Revel or SendGrid down ----


class BreakableRevel:
    """An OrderGateway in front of FakeRevel: every call fails with ``failure(what)`` while it is set."""

    def __init__(self, inner: FakeRevel) -> None:
        self.inner = inner
        self.failure: Callable[[str], BaseException] | None = None
        self.calls = 0  # every call that reached Revel's door, refused or not

    async def find_order(self, establishment_id: int, reference: str, *, correlation_id: str) -> OrderRef | None:
        self._door(f"Revel lookup of {reference}")
        return await self.inner.find_order(establishment_id, reference, correlation_id=correlation_id)

    async def create_order(self, order: RevelOrder, *, correlation_id: str) -> OrderRef:
        self._door(f"Revel create of {order.local_id}")
        return await self.inner.create_order(order, correlation_id=correlation_id)

    def _door(self, what: str) -> None:
        self.calls += 1
        if self.failure is not None:
            raise self.failure(what)


class BreakableMailer:
    """A Mailer in front of FakeMailer: every send fails with ``failure(what)`` while it is set."""

    def __init__(self, inner: FakeMailer) -> None:
        self.inner = inner
        self.failure: Callable[[str], BaseException] | None = None
        self.calls = 0

    async def send(self, message: EmailMessage, *, outbox_id: int) -> None:
        self.calls += 1
        if self.failure is not None:
            raise self.failure(f"SendGrid send of {message.kind}")
        await self.inner.send(message, outbox_id=outbox_id)


def revel_down(what: str) -> BaseException:
    return GatewayError.transient(f"{what}: HTTP 503 Service Unavailable (drill)", status=503)


def sendgrid_down(what: str) -> BaseException:
    return GatewayError.transient(f"{what}: HTTP 503 (drill)", status=503)


def keys_refused(what: str) -> BaseException:
    return GatewayError.credentials(f"{what}: HTTP 401 Unauthorized: API-AUTHENTICATION invalid (drill)", status=401)


def a_bug(what: str) -> BaseException:
    return RuntimeError(f"{what}: 'NoneType' object is not subscriptable (drill: a bug in the deployed code)")


# ---- one rehearsal ----------------------------------------------------------------------------


def event_payload(event_id: int, *, revision: int = 1, status: str = "DEFINITE") -> dict[str, Any]:
    """A DEFINITE catering event at location 201 with two mapped items; a new revision is a new body."""
    return {
        "webhook_trigger_type": "UPDATE_EVENT" if revision > 1 else "STATUS_CHANGE_EVENT",
        "event": {
            "id": event_id,
            "name": f"Drill event {event_id}",
            "status": status,
            "site_id": 15691,
            "location_id": "201",
            "guest_count": 20,
            "event_start": "12/28/2025 6:00 PM",
            "event_end": "12/28/2025 8:00 PM",
            "updated_at": f"12/27/2025 {revision}:00 PM",
            "documents": [
                {
                    "line_items": [
                        {"id": 1, "quantity": "24", "price": "3.25", "display_name": "OG - Glazed raised ring", "menu_item_id": 5501},
                        {"id": 2, "quantity": 2, "price": "38.50", "display_name": "Cold brew, 96 oz box", "menu_item_id": None},
                    ]
                }
            ],
        },
    }


@attrs.define
class Rehearsal:
    """A fake world with breakable edges, and the bookkeeping the invariants need."""

    world: FakeWorld
    revel: BreakableRevel
    mailer: BreakableMailer
    levers: list[str] = attrs.Factory(list)
    invariants: list[Invariant] = attrs.Factory(list)
    events: set[str] = attrs.Factory(set)  # every event that must end with exactly one order
    voided: Counter[str] = attrs.Factory(Counter)  # orders removed from Revel by hand, per reference
    audited: int = 0  # operator actions taken, each must be in the audit log
    _held_at: int | None = None

    @classmethod
    def start(cls, **world_options: Any) -> Rehearsal:
        world = fake_world(**world_options)
        revel, mailer = BreakableRevel(world.revel), BreakableMailer(world.mailer)
        world.processor.revel = revel
        world.processor.mailer = mailer
        return cls(world=world, revel=revel, mailer=mailer)

    @property
    def side_effects(self) -> int:
        return self.revel.calls + self.mailer.calls

    async def deliver(self, event_id: int, *, revision: int = 1) -> int:
        self.events.add(str(event_id))
        result = await self.world.deliver(event_payload(event_id, revision=revision))
        return result.delivery_id

    async def switch_off(self, reason: str) -> None:
        await self.world.processor.set_flags(enable_connector=False, dry_run=None, actor=ACTOR, reason=reason)
        self.audited += 1
        self._held_at = self.side_effects
        self.levers.append(f'tsrevel flags set --disable-connector --reason "{reason}"')

    async def switch_on(self, reason: str, *, dry_run: bool | None = None) -> None:
        await self.world.processor.set_flags(enable_connector=True, dry_run=dry_run, actor=ACTOR, reason=reason)
        self.audited += 1
        if self._held_at is not None:
            during = self.side_effects - self._held_at
            self.invariants.append(
                Invariant("no side effect while held", during == 0, f"{during} call(s) to Revel or SendGrid while the connector was off")
            )
            self._held_at = None
        extra = "" if dry_run is None else (" --dry-run" if dry_run else " --no-dry-run")
        self.levers.append(f'tsrevel flags set --enable-connector{extra} --reason "{reason}"')

    async def set_dry_run(self, value: bool, reason: str) -> None:
        await self.world.processor.set_flags(enable_connector=None, dry_run=value, actor=ACTOR, reason=reason)
        self.audited += 1
        self.levers.append(f'tsrevel flags set {"--dry-run" if value else "--no-dry-run"} --reason "{reason}"')

    async def replay(self, state: str, reason: str) -> int:
        count = await self.world.processor.replay_state(state, actor=ACTOR, reason=reason)
        self.audited += 1
        self.levers.append(f'tsrevel replay --state {state} --reason "{reason}"   # {count} re-queued')
        return count

    async def states(self) -> Counter[str]:
        return Counter((await self.world.states()).values())

    def live_orders(self) -> Counter[str]:
        """Orders Revel holds per reference: every create, minus the ones voided by hand."""
        created = Counter(o.local_id for o in self.world.revel.created)
        return created - self.voided

    def void_in_revel(self, event_id: str) -> None:
        """What a Revel admin does in a manual clean-up: remove the order from Revel."""
        ref = order_reference(event_id)
        self.world.revel.orders.pop(ref, None)
        self.world.revel.refs.pop(ref, None)
        self.voided[ref] += 1
        self.levers.append(f"(Revel admin voids {ref} in Revel)")

    async def reconcile_problems(self) -> list[str]:
        ledger = await self.world.store.list_orders(limit=EVERYTHING)
        orders = [(ref.order_id, local_id) for local_id, ref in self.world.revel.refs.items()]
        return reconcile(ledger, orders).problems()

    async def resume(self, reason: str, *states: str) -> None:
        """The connector back on, what each state holds replayed (in this order), and the world settled."""
        await self.switch_on(reason)
        for state in states:
            await self.replay(state, reason)
        await self.world.settle()

    async def finish(self, key: str, title: str, failure: str) -> ScenarioResult:
        """The invariants every scenario ends with, and the scenario's result."""
        self.invariants.append(no_duplicate(self.live_orders()))
        self.invariants.append(await no_loss(self.world, self.events, self.live_orders()))
        audit = await self.world.store.list_audit(limit=EVERYTHING)
        ours = [a for a in audit if a.actor == ACTOR]
        self.invariants.append(
            Invariant("every lever is in the audit log", len(ours) == self.audited, f"{len(ours)} audit entries for {self.audited} operator actions, each with actor and reason")
        )
        return ScenarioResult(key, title, failure, tuple(self.levers), tuple(self.invariants))


def no_duplicate(live: Mapping[str, int]) -> Invariant:
    """No reference has more than one live order in Revel."""
    dupes = sorted(ref for ref, n in live.items() if n > 1)
    evidence = f"{sum(live.values())} live order(s) in Revel for {len(live)} event(s)"
    return Invariant("no duplicate order", not dupes, evidence + (f"; duplicated: {', '.join(dupes)}" if dupes else ""))


async def no_loss(world: FakeWorld, events: set[str], live: Mapping[str, int]) -> Invariant:
    """Every delivery finished (nothing pending, held or dead is left) and every event has its order."""
    states = Counter((await world.states()).values())
    unfinished = {s: n for s, n in states.items() if s in st.PENDING_STATES or s in st.REPLAYABLE_STATES}
    unordered = sorted(e for e in events if live.get(order_reference(e), 0) != 1)
    shown = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    ok = not unfinished and not unordered
    evidence = f"{sum(states.values())} deliveries: {shown}; {len(events) - len(unordered)}/{len(events)} events ordered"
    if unfinished:
        evidence += f"; unfinished: {unfinished}"
    if unordered:
        evidence += f"; without exactly one order: {', '.join(unordered)}"
    return Invariant("no loss", ok, evidence)


# ---- the four scenarios of the runbook -----------------------------------------------------------


async def runtime_errors() -> ScenarioResult:
    r = Rehearsal.start()
    r.revel.failure = a_bug
    first = await r.deliver(7001)
    await r.world.settle()
    dead = (await r.world.store.get_delivery(first)).state
    failure = f"a bug in the deployed code raised on every Revel call: delivery {first} went {dead} (ops emailed), the queue kept moving"
    await r.switch_off("runtime errors: stop processing until the fix is out")
    for event_id in (7002, 7003):
        await r.deliver(event_id)
    await r.world.settle()
    held = (await r.states())[st.HELD]
    r.levers.append(f"(while held: {held} new deliveries stored and answered 200, none processed)")
    r.revel.failure = None
    r.levers.append("(fix deployed)")
    await r.resume("fix deployed", st.HELD, st.DEAD)
    return await r.finish("runtime-errors", "Critical runtime errors", failure)


async def data_integrity() -> ScenarioResult:
    wrong = copy.deepcopy(dict(EXAMPLE_MAPPING))
    wrong["products"] = {**wrong["products"], "Cold brew, 96 oz box": 999}
    r = Rehearsal.start(mapping=wrong)
    await r.deliver(7101)
    await r.world.settle()
    bad = [line.product_id for line in r.world.revel.orders[order_reference("7101")].items]
    failure = f"a mapping change sent cold brew to the wrong product: order {order_reference('7101')} has products {bad}"
    await r.switch_off("data integrity: wrong product in orders")
    await r.deliver(7102)
    await r.world.settle()
    r.world.processor.mapping = mapping_from_dict(EXAMPLE_MAPPING)
    r.levers.append("(mapping file fixed and deployed; tsrevel check-mapping)")
    # Rehearse the fix with DRY_RUN before writing anything.
    creates_before = sum(1 for c in r.world.revel.calls if c.startswith("create"))
    await r.switch_on("mapping fixed: rehearse in dry run first", dry_run=True)
    await r.replay(st.HELD, "rehearse the fix")
    await r.world.settle()
    creates_during = sum(1 for c in r.world.revel.calls if c.startswith("create")) - creates_before
    rehearsed = [d for d in await r.world.store.list_deliveries(state=st.DRY_RUN, limit=EVERYTHING)]
    products = sorted({item["product_id"] for d in rehearsed for item in json.loads(d.result or "{}").get("items", [])})
    r.invariants.append(
        Invariant("dry run writes nothing to Revel", creates_during == 0, f"{creates_during} create(s) during the dry run; {len(rehearsed)} delivery rehearsed with products {products}")
    )
    # Clean up the bad order, and prove the ledger and Revel agree again.
    r.void_in_revel("7101")
    before = await r.reconcile_problems()
    r.levers.append(f"tsrevel reconcile --from 2025-12-27 --to 2025-12-28   # {len(before)} problem(s): {'; '.join(before)}")
    await r.world.processor.forget("7101", actor=ACTOR, reason="bad order voided in Revel")
    r.audited += 1
    r.levers.append('tsrevel forget 7101 --yes --reason "bad order voided in Revel"')
    await r.set_dry_run(False, "fix verified in dry run")
    await r.replay(st.DRY_RUN, "fix verified in dry run")
    await r.deliver(7101, revision=2)  # TripleSeat re-sends the event once it is touched again
    r.levers.append("(the venue re-saves event 7101 in TripleSeat: a new webhook)")
    await r.world.settle()
    after = await r.reconcile_problems()
    r.invariants.append(Invariant("reconcile finds the problem, then none", len(before) == 1 and not after, f"before clean-up: {before}; after: {after or 'clean'}"))
    wrong_left = sorted(ref for ref, order in r.world.revel.orders.items() if COLD_BREW not in {line.product_id for line in order.items})
    r.invariants.append(Invariant("every live order has the right products", not wrong_left, f"orders without product {COLD_BREW}: {wrong_left or 'none'}"))
    return await r.finish("data-integrity", "Data integrity", failure)


async def third_party_failure() -> ScenarioResult:
    r = Rehearsal.start()
    r.revel.failure = revel_down
    r.mailer.failure = sendgrid_down
    for event_id in (7201, 7202):
        await r.deliver(event_id)
    await r.world.drain()
    retrying = (await r.states())[st.RETRYING]
    failure = f"Revel and SendGrid answer 503: {retrying} deliveries retrying with backoff"
    await r.switch_off("Revel outage")
    await r.deliver(7203)
    await r.world.settle()  # the retries come due while the switch is off: they are held, not sent
    held = (await r.states())[st.HELD]
    r.levers.append(f"(retries that came due while off were held: {held} held)")
    r.revel.failure = None
    r.mailer.failure = None
    r.levers.append("(Revel and SendGrid recover: their status pages say so)")
    await r.resume("Revel recovered", st.HELD)
    emails = await r.world.store.list_emails(limit=EVERYTHING)
    unsent = [e.id for e in emails if e.state != EMAIL_SENT]
    r.invariants.append(Invariant("every email sent once SendGrid is back", not unsent and bool(emails), f"{len(emails)} email(s), not sent: {unsent or 'none'}"))
    return await r.finish("third-party-failure", "Third-party API failure", failure)


async def security_incident() -> ScenarioResult:
    old_secret, new_secret = "drill-signing-secret-old", "drill-signing-secret-new"
    r = Rehearsal.start(secret=old_secret)
    r.revel.failure = keys_refused  # the Revel key was rotated at Revel, not yet in tsrevel
    first = await r.deliver(7301)
    await r.world.settle()
    delivery = await r.world.store.get_delivery(first)
    told = [m for m in r.world.mailer.sent if m.kind == "failure" and m.delivery_id == first]
    r.invariants.append(
        Invariant("refused keys: dead after one attempt, ops emailed", delivery.state == st.DEAD and delivery.attempts == 1 and bool(told),
                  f"delivery {first} {delivery.state} after {delivery.attempts} attempt(s); {len(told)} failure email(s) to ops")
    )
    stored = len(await r.world.store.list_deliveries(limit=EVERYTHING))
    forged = 0
    for attempt in range(3):
        try:
            await r.world.deliver(event_payload(7399, revision=attempt + 1), signature="0" * 64)
        except SignatureError:
            forged += 1
    after = len(await r.world.store.list_deliveries(limit=EVERYTHING))
    r.invariants.append(Invariant("bad signatures: 401, nothing stored", forged == 3 and after == stored, f"{forged}/3 forged webhooks refused; deliveries stored {stored} -> {after}"))
    failure = f"Revel answers 401 (keys rotated) and forged webhooks arrive: delivery {first} dead, {forged} forgeries refused"
    await r.switch_off("security incident: rotating credentials")
    await r.deliver(7302)
    await r.world.settle()
    r.revel.failure = None
    r.world.processor.settings = attrs.evolve(r.world.processor.settings, signing_secret=new_secret)
    r.world.secret = new_secret
    r.levers.append("(new REVEL_API_KEY/REVEL_API_SECRET and TRIPLESEAT_SIGNING_SECRET deployed; service restarted)")
    stale = await _refused(lambda: r.world.deliver(event_payload(7303), signature=_sign(event_payload(7303), old_secret)))
    r.invariants.append(Invariant("the old signing secret is refused after rotation", stale, "a webhook signed with the old secret: " + ("401" if stale else "accepted")))
    await r.resume("credentials rotated", st.DEAD, st.HELD)
    return await r.finish("security-incident", "Security incident", failure)


def _sign(payload: Mapping[str, Any], secret: str) -> str:
    from tsrevel.domain.signature import sign_body

    return sign_body(json.dumps(payload).encode(), secret=secret)


async def _refused(call: Callable[[], Awaitable[object]]) -> bool:
    try:
        await call()
    except SignatureError:
        return True
    return False


SCENARIOS: dict[str, Callable[[], Awaitable[ScenarioResult]]] = {
    "runtime-errors": runtime_errors,
    "data-integrity": data_integrity,
    "third-party-failure": third_party_failure,
    "security-incident": security_incident,
}


async def run_drill(keys: list[str] | None = None, *, on_result: Callable[[ScenarioResult], None] | None = None) -> list[ScenarioResult]:
    """Run the chosen scenarios (all by default), each on a fresh world."""
    results = []
    for key in keys or list(SCENARIOS):
        result = await SCENARIOS[key]()
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
