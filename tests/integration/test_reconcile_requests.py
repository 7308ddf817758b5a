"""P8: reconcile pages Revel's orders by order, not by day: two years holding 100 orders cost a handful of requests.

Counting requests at the loopback fake Revel is not a timing assertion; the benchmark row is
bench/p8_reconcile.py.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import httpx
import pytest

from tests.integration.test_cli import cli, env, revel_server  # noqa: F401 - fixtures shared with the CLI tests
from tsrevel.adapters.revel_http import HttpxRevelGateway
from tsrevel.testing.servers import FakeRevelServer

pytestmark = pytest.mark.integration

FIRST_DAY = date(2024, 1, 1)
LAST_DAY = date(2025, 12, 31)
ORDERS = 100
MAX_REQUESTS = 10


def spread_orders(revel: FakeRevelServer, count: int = ORDERS) -> set[str]:
    """count tripleseat-* orders spread over the two years, alternating the two establishments; their references."""
    span = (LAST_DAY - FIRST_DAY).days
    refs = set()
    for n in range(count):
        day = FIRST_DAY + timedelta(days=n * span // (count - 1))
        ref = f"tripleseat-{80_000_000 + n}"
        revel.add_order(ref, establishment_id=4 if n % 2 else 5, created_date=f"{day.isoformat()}T{n % 24:02d}:30:00")
        refs.add(ref)
    return refs


def order_listings(revel: FakeRevelServer) -> list:
    return [r for r in revel.requests if r.method == "GET" and r.path == "/resources/Order/"]


class TestReconcileOverTwoYears:
    def test_100_orders_over_two_years_take_at_most_10_requests_and_every_order_is_read(self, env, revel_server):
        refs = spread_orders(revel_server)
        before = len(revel_server.requests)

        result = cli(env, "reconcile", "--from", FIRST_DAY.isoformat(), "--to", LAST_DAY.isoformat(), "--json", "-")

        assert result.exit_code == 1, result.output  # the ledger is empty: every order is an orphan
        report = json.loads(result.stdout)
        assert {o["reference"] for o in report["orphans"]} == refs
        sent = revel_server.requests[before:]
        assert len(sent) <= MAX_REQUESTS, [r.path for r in sent]
        listings = order_listings(revel_server)
        assert len(listings) == 2  # one per establishment (4 and 5) and prefix
        for listing in listings:  # the whole range, with a day of margin either side (Revel's local clock)
            assert listing.param("created_date__gte").startswith("2023-12-31")
            assert listing.param("created_date__lte").startswith("2026-01-01")
            assert listing.param("local_id__startswith") == "tripleseat-"
            assert int(listing.param("limit")) >= 200

    def test_chunk_days_still_cuts_the_range_into_windows(self, env, revel_server):
        spread_orders(revel_server, count=10)
        result = cli(env, "reconcile", "--from", "2025-01-01", "--to", "2025-01-10", "--chunk-days", "7", "--json", "-")
        assert result.exit_code in (0, 1), result.output
        # 12 days with the margins: windows of 7 and 5 days, per establishment
        assert len(order_listings(revel_server)) == 2 * 2


@pytest.mark.anyio
async def test_a_listing_longer_than_a_page_follows_meta_next_and_reads_every_order():
    with FakeRevelServer() as revel:
        refs = {f"tripleseat-{n}" for n in range(100)}
        for ref in sorted(refs):
            revel.add_order(ref, created_date="2025-06-01T12:00:00")
        async with httpx.AsyncClient(base_url=revel.url, timeout=5) as client:
            gateway = HttpxRevelGateway(client, api_key=revel.api_key, api_secret=revel.api_secret, min_interval_s=0,
                                        listing_page_limit=30)
            listed = await gateway.list_orders_by_reference_prefix(
                4, "tripleseat-", datetime(2024, 1, 1), datetime(2026, 1, 1), correlation_id="p8-test"
            )
        assert {local_id for _, local_id in listed} == refs and len(listed) == 100
        assert len(order_listings(revel)) == 4  # 30 + 30 + 30 + 10


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
