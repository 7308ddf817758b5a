"""R24: reconcile names a missing, a duplicate and an orphan order once each, and creates nothing."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tsrevel.adapters.revel_http import HttpxRevelGateway
from tsrevel.domain.deliveries import LEDGER_CREATED, LEDGER_PENDING, LedgerEntry
from tsrevel.domain.reconcile import reconcile
from tsrevel.testing.servers import FakeRevelServer

pytestmark = pytest.mark.reliability

T0 = datetime(2026, 1, 15, 12, 0, tzinfo=timezone.utc)


def ledger_row(event_id: int, *, state: str = LEDGER_CREATED, revel_order_id: int | None = None) -> LedgerEntry:
    return LedgerEntry(
        event_id=str(event_id),
        reference=f"tripleseat-{event_id}",
        establishment_id=4,
        delivery_id=event_id,
        state=state,
        revel_order_id=revel_order_id if state == LEDGER_CREATED else None,
        created_at=T0,
    )


class TestReconcileByExample:
    def test_R24_a_missing_a_duplicate_and_an_orphan_are_each_reported_once(self):
        ledger = [ledger_row(1, revel_order_id=501), ledger_row(2, revel_order_id=502), ledger_row(3, revel_order_id=503)]
        revel = [(501, "tripleseat-1"), (502, "tripleseat-2"), (602, "tripleseat-2"), (700, "tripleseat-9"), (800, "walk-in-42")]
        report = reconcile(ledger, revel)
        assert [m.reference for m in report.missing] == ["tripleseat-3"]
        assert [(d.reference, d.order_ids) for d in report.duplicates] == [("tripleseat-2", (502, 602))]
        assert [(o.reference, o.order_id) for o in report.orphans] == [("tripleseat-9", 700)]
        assert report.problems() == [
            "duplicate: tripleseat-2 has 2 Revel orders (502, 602); the ledger points at 502",
            "missing: tripleseat-3 for event 3 is recorded as created (ledger has Revel id 503) but Revel lists no such order",
            "orphan: Revel order 700 (tripleseat-9) has no ledger row",
        ]
        assert not report.ok

    def test_a_pending_ledger_row_is_neither_missing_nor_leaves_its_order_an_orphan(self):
        # A create in flight (or lost before the commit): the next attempt looks it up first.
        report = reconcile([ledger_row(4, state=LEDGER_PENDING), ledger_row(5, state=LEDGER_PENDING)], [(900, "tripleseat-4")])
        assert report.ok and report.problems() == []

    def test_the_same_pair_listed_twice_is_one_order_not_a_duplicate(self):
        report = reconcile([ledger_row(6, revel_order_id=906)], [(906, "tripleseat-6"), (906, "tripleseat-6")])
        assert report.ok

    def test_a_duplicate_without_a_ledger_row_is_a_duplicate_only(self):
        report = reconcile([], [(1, "tripleseat-7"), (2, "tripleseat-7")])
        assert [d.reference for d in report.duplicates] == ["tripleseat-7"] and report.orphans == ()


# ---- properties: every problem exactly once -------------------------------------------------

event_ids = st.integers(1, 40)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[LedgerEntry], list[tuple[int, str]]]:
    """A ledger and a Revel order list that disagree in any way: 0..3 orders per reference, foreign orders too."""
    ledger_ids = draw(st.sets(event_ids, max_size=15))
    ledger = [ledger_row(i, state=draw(st.sampled_from([LEDGER_CREATED, LEDGER_PENDING]))) for i in sorted(ledger_ids)]
    references = [f"tripleseat-{i}" for i in draw(st.sets(event_ids, max_size=20))] + ["walk-in-1", "online-2"]
    orders: list[tuple[int, str]] = []
    next_id = 1000
    for ref in references:
        for _ in range(draw(st.integers(0, 3))):
            orders.append((next_id, ref))
            next_id += 1
    repeated = draw(st.lists(st.sampled_from(orders), max_size=3)) if orders else []  # overlapping pages
    return ledger, draw(st.permutations(orders + repeated))


@given(worlds())
def test_R24_every_problem_is_reported_exactly_once_and_only_real_problems_are(world):
    ledger, orders = world
    report = reconcile(ledger, orders)
    ids_by_ref: dict[str, set[int]] = {}
    for order_id, ref in orders:
        ids_by_ref.setdefault(ref, set()).add(order_id)
    rows = {e.reference: e for e in ledger}

    expected_duplicates = {ref for ref, ids in ids_by_ref.items() if len(ids) > 1}
    expected_missing = {ref for ref, e in rows.items() if e.state == LEDGER_CREATED and ref not in ids_by_ref}
    expected_orphans = {
        ref for ref, ids in ids_by_ref.items() if len(ids) == 1 and ref.startswith("tripleseat-") and ref not in rows
    }
    reported = [d.reference for d in report.duplicates] + [m.reference for m in report.missing] + [o.reference for o in report.orphans]
    assert len(reported) == len(set(reported)), "a reference was reported twice"
    assert {d.reference for d in report.duplicates} == expected_duplicates
    assert {m.reference for m in report.missing} == expected_missing
    assert {o.reference for o in report.orphans} == expected_orphans
    assert all(d.order_ids == tuple(sorted(ids_by_ref[d.reference])) for d in report.duplicates)
    assert len(report.problems()) == len(reported)
    assert report.ok == (not reported)


@given(worlds())
def test_R24_the_report_does_not_depend_on_the_order_revel_lists_in(world):
    ledger, orders = world
    assert reconcile(ledger, orders) == reconcile(list(reversed(ledger)), list(reversed(orders)))


# ---- against the real Revel adapter: listing only, never a write ------------------------------


@pytest.mark.integration
@pytest.mark.anyio
async def test_R24_reconcile_over_the_real_gateway_lists_and_creates_nothing():
    with FakeRevelServer() as revel:
        created_ok = revel.add_order("tripleseat-101")
        revel.add_order("tripleseat-102")
        revel.add_order("tripleseat-102")  # a duplicate someone made by hand
        orphan = revel.add_order("tripleseat-104")
        revel.add_order("walk-in-7")  # not ours: never reported
        ledger = [
            ledger_row(101, revel_order_id=created_ok),
            ledger_row(102, revel_order_id=created_ok + 1),
            ledger_row(103, revel_order_id=9999),  # recorded as created, gone from Revel
        ]
        async with httpx.AsyncClient(base_url=revel.url, timeout=5) as client:
            gateway = HttpxRevelGateway(client, api_key=revel.api_key, api_secret=revel.api_secret, min_interval_s=0)
            listed = await gateway.list_orders_by_reference_prefix(4, "tripleseat-", correlation_id="reconcile-test")
        report = reconcile(ledger, listed)
        assert [m.reference for m in report.missing] == ["tripleseat-103"]
        assert [d.reference for d in report.duplicates] == ["tripleseat-102"]
        assert [(o.reference, o.order_id) for o in report.orphans] == [("tripleseat-104", orphan)]
        assert len(report.problems()) == 3
        assert {r.method for r in revel.requests} == {"GET"}  # nothing created, nothing changed
        assert len(revel.orders) == 5


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class TestTotals:
    """Issue 12: reconcile reports an order whose Revel final_total differs from the ledger's."""

    @staticmethod
    def with_total(event_id: int, total: str | None, order_id: int) -> LedgerEntry:
        import json

        import attrs

        snapshot = json.dumps({"final_total": total} if total is not None else {"total": "1.00"})
        return attrs.evolve(ledger_row(event_id, revel_order_id=order_id), snapshot=snapshot)

    def test_a_differing_total_is_reported_once_and_old_rows_are_not_compared(self):
        from decimal import Decimal

        ledger = [self.with_total(1, "445.18", 901), self.with_total(2, "10.00", 902), self.with_total(3, None, 903)]
        orders = [(901, "tripleseat-1"), (902, "tripleseat-2"), (903, "tripleseat-3")]
        totals = {901: Decimal("400.00"), 902: Decimal("10.00"), 903: Decimal("5.00")}
        report = reconcile(ledger, orders, revel_totals=totals)
        assert report.problems() == ["total: Revel order 901 (tripleseat-1) has final_total 400.00; the ledger recorded 445.18 (-45.18 in Revel)"]
        assert not report.ok
        assert reconcile(ledger, orders).ok  # without totals, as before
