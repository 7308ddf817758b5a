"""HttpxRevelGateway against a loopback Revel over real HTTP: wire format, pagination and every error class."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from email.utils import format_datetime

import attrs
import httpx
import pytest

from tsrevel.adapters.revel_http import HttpxRevelGateway, encode_json, order_uuid
from tsrevel.domain.errors import GatewayError
from tsrevel.domain.orders import OrderLine, OrderRef, RevelOrder
from tsrevel.testing.servers import FakeRevelServer, ServerFault

pytestmark = pytest.mark.integration

API_KEY = "rk_live_9f8e7d6c5b4a"
API_SECRET = "rs_live_0a1b2c3d4e5f"
CREATE = "/resources/OrderAllInOne/"
ORDERS = "/resources/Order/"

ORDER = RevelOrder(
    event_id="55521609",
    location_id="201",
    location_name="Tropicana",
    establishment_id=4,
    local_id="tripleseat-55521609",
    dining_option=113,
    call_name="Jon Ponder",
    notes="TripleSeat event 55521609",
    pickup_time=datetime(2025, 12, 28, 18, 0),
    items=(
        OrderLine(product_id=579, quantity=Decimal("12"), price=Decimal("2.75"), special_request="glazed"),
        OrderLine(product_id=590, quantity=Decimal("1.5"), price=Decimal("0.10")),
        OrderLine(product_id=601, quantity=Decimal("2.00"), price=Decimal("1234567.89")),
    ),
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def revel() -> Iterator[FakeRevelServer]:
    with FakeRevelServer(
        api_key=API_KEY,
        api_secret=API_SECRET,
        establishments=[(4, "Tropicana"), (5, "Harbor Room"), (6, "Pier")],
        products={4: [(579, "OG - Glazed raised ring"), (590, "Cold brew, 96 oz box"), (601, "Pastry platter")], 5: [(700, "Tea")]},
        page_size=2,
    ) as server:
        yield server


@pytest.fixture
async def client(revel: FakeRevelServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=revel.url, timeout=5.0, trust_env=False) as c:
        yield c


@pytest.fixture
def gateway(client: httpx.AsyncClient) -> HttpxRevelGateway:
    return HttpxRevelGateway(client, api_key=API_KEY, api_secret=API_SECRET, min_interval_s=0)


async def failure(awaitable) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await awaitable
    error = caught.value
    assert API_KEY not in str(error) and API_SECRET not in str(error), str(error)
    return error


class TestCreateOrder:
    @pytest.mark.anyio
    async def test_the_wire_body_carries_uris_references_and_exact_money(self, gateway, revel):
        ref = await gateway.create_order(ORDER, correlation_id="corr-create")

        assert ref == OrderRef(5001, "/resources/Order/5001/")
        [request] = revel.requests
        assert (request.method, request.path) == ("POST", CREATE)
        body = request.json
        assert body["orderInfo"] == {
            "establishment": "/enterprise/Establishment/4/",
            "local_id": "tripleseat-55521609",
            "uuid": order_uuid("tripleseat-55521609"),
            "dining_option": 113,
            "call_name": "Jon Ponder",
            "notes": "TripleSeat event 55521609",
            "pickup_time": "2025-12-28T18:00:00",
            "web_order": True,
        }
        assert body["items"] == [
            {"product": "/resources/Product/579/", "quantity": 12, "price": Decimal("2.75"), "special_request": "glazed"},
            {"product": "/resources/Product/590/", "quantity": Decimal("1.5"), "price": Decimal("0.10"), "special_request": ""},
            {"product": "/resources/Product/601/", "quantity": 2, "price": Decimal("1234567.89"), "special_request": ""},
        ]
        assert body["history"] == [] and body["payments"] == []
        # Money reaches Revel digit for digit: no float ever touched it.
        assert b'"price":0.10' in request.body and b'"price":1234567.89' in request.body
        assert b'"quantity":12,' in request.body and b'"quantity":1.5,' in request.body
        assert [o["local_id"] for o in revel.orders] == ["tripleseat-55521609"]

    @pytest.mark.anyio
    async def test_every_request_carries_auth_json_headers_and_the_correlation_id(self, gateway, revel):
        await gateway.find_order(4, ORDER.local_id, correlation_id="corr-R18")
        await gateway.create_order(ORDER, correlation_id="corr-R18")
        for request in revel.requests:
            assert request.header("API-AUTHENTICATION") == f"{API_KEY}:{API_SECRET}"
            assert request.header("Content-Type") == "application/json"
            assert request.header("Accept") == "application/json"
            assert request.header("X-Correlation-ID") == "corr-R18"

    @pytest.mark.anyio
    async def test_pickup_time_is_left_out_when_there_is_none(self, gateway, revel):
        await gateway.create_order(attrs.evolve(ORDER, pickup_time=None), correlation_id="c")
        assert "pickup_time" not in revel.requests[0].json["orderInfo"]

    @pytest.mark.anyio
    async def test_the_order_id_is_read_from_the_location_header_when_the_body_is_empty(self, gateway, revel):
        revel.create_answer = "location"
        ref = await gateway.create_order(ORDER, correlation_id="c")
        assert ref == OrderRef(5001, "/resources/Order/5001/")

    @pytest.mark.anyio
    async def test_a_retried_create_sends_the_same_uuid(self, gateway, revel):
        revel.script(ServerFault.status(503, path=CREATE))
        first = await failure(gateway.create_order(ORDER, correlation_id="c"))
        assert first.is_transient and first.failure.outcome_unknown
        await gateway.create_order(ORDER, correlation_id="c")
        uuids = {r.json["orderInfo"]["uuid"] for r in revel.requests if r.path == CREATE}
        assert uuids == {order_uuid(ORDER.local_id)} and len(revel.requests) == 2
        assert len(revel.orders) == 1

    @pytest.mark.anyio
    async def test_an_answer_without_an_order_id_leaves_the_outcome_unknown(self, gateway, revel):
        revel.script(ServerFault.status(201, body="<html>created</html>", headers={"Content-Type": "text/html"}))
        error = await failure(gateway.create_order(ORDER, correlation_id="c"))
        assert error.is_transient and error.failure.outcome_unknown

    def test_floats_are_refused_by_the_encoder(self):
        with pytest.raises(TypeError):
            encode_json({"price": 2.75})
        assert encode_json({"price": Decimal("1E+2"), "q": [Decimal("0.000")]}) == '{"price":100,"q":[0.000]}'


class TestFindOrder:
    @pytest.mark.anyio
    async def test_nothing_is_found_before_the_create_and_the_order_after_it(self, gateway, revel):
        assert await gateway.find_order(4, ORDER.local_id, correlation_id="c") is None
        ref = await gateway.create_order(ORDER, correlation_id="c")
        assert await gateway.find_order(4, ORDER.local_id, correlation_id="c") == ref
        lookup = revel.requests[0]
        assert (lookup.method, lookup.path) == ("GET", ORDERS)
        assert (lookup.param("establishment"), lookup.param("local_id")) == ("4", ORDER.local_id)
        assert lookup.param("limit") is not None

    @pytest.mark.anyio
    async def test_only_an_exact_local_id_match_counts(self, gateway, revel):
        revel.add_order("tripleseat-555216090")
        assert await gateway.find_order(4, "tripleseat-55521609", correlation_id="c") is None

    @pytest.mark.anyio
    async def test_an_order_of_another_establishment_is_not_found(self, gateway, revel):
        revel.add_order(ORDER.local_id, establishment_id=5)
        assert await gateway.find_order(4, ORDER.local_id, correlation_id="c") is None

    @pytest.mark.anyio
    async def test_the_first_of_duplicate_orders_is_returned(self, gateway, revel):
        first = revel.add_order(ORDER.local_id)
        revel.add_order(ORDER.local_id)
        assert await gateway.find_order(4, ORDER.local_id, correlation_id="c") == OrderRef(first, f"/resources/Order/{first}/")

    @pytest.mark.anyio
    async def test_pages_are_followed_until_the_order_is_found(self, client, revel):
        # A far side that ignores the local_id filter: the match is on page three.
        page = {"meta": {"next": f"{ORDERS}?offset=1"}, "objects": [{"id": 1, "local_id": "tripleseat-1"}]}
        last = {"meta": {"next": None}, "objects": [{"id": 9, "local_id": ORDER.local_id, "resource_uri": "/resources/Order/9/"}]}
        revel.script(ServerFault.status(200, body=page, times=2), ServerFault.status(200, body=last))
        gateway = HttpxRevelGateway(client, api_key=API_KEY, api_secret=API_SECRET, min_interval_s=0)
        assert await gateway.find_order(4, ORDER.local_id, correlation_id="c") == OrderRef(9, "/resources/Order/9/")
        assert len(revel.requests) == 3

    @pytest.mark.anyio
    async def test_more_pages_than_the_bound_is_an_error_not_a_not_found(self, client, revel):
        page = {"meta": {"next": f"{ORDERS}?offset=1"}, "objects": []}
        revel.script(ServerFault.status(200, body=page, times=3))
        gateway = HttpxRevelGateway(client, api_key=API_KEY, api_secret=API_SECRET, min_interval_s=0, max_pages=3)
        error = await failure(gateway.find_order(4, ORDER.local_id, correlation_id="c"))
        assert error.failure.kind == "permanent" and "more than 3 pages" in str(error)

    @pytest.mark.anyio
    async def test_a_next_link_to_another_host_is_not_followed(self, gateway, revel):
        page = {"meta": {"next": "https://collector.example/resources/Order/?offset=1"}, "objects": []}
        revel.script(ServerFault.status(200, body=page))
        error = await failure(gateway.find_order(4, ORDER.local_id, correlation_id="c"))
        assert error.failure.kind == "permanent" and "another host" in str(error)
        assert len(revel.requests) == 1

    @pytest.mark.anyio
    @pytest.mark.parametrize("next_url", ["http://[::1/resources/Order/", "http://127.0.0.1:notaport/x", 42])
    async def test_a_malformed_next_link_is_an_error_not_a_crash(self, gateway, revel, next_url):
        revel.script(ServerFault.status(200, body={"meta": {"next": next_url}, "objects": []}))
        error = await failure(gateway.find_order(4, ORDER.local_id, correlation_id="c"))
        assert error.is_transient

    @pytest.mark.anyio
    async def test_a_non_json_answer_to_a_lookup_is_transient(self, gateway, revel):
        revel.script(ServerFault.status(200, body="<html>maintenance</html>", headers={"Content-Type": "text/html"}))
        error = await failure(gateway.find_order(4, ORDER.local_id, correlation_id="c"))
        assert error.is_transient and not error.failure.outcome_unknown


class TestListings:
    @pytest.mark.anyio
    async def test_establishments_are_read_across_pages(self, client, revel):
        gateway = HttpxRevelGateway(client, api_key=API_KEY, api_secret=API_SECRET, min_interval_s=0, page_limit=2)
        assert await gateway.list_establishments() == [(4, "Tropicana"), (5, "Harbor Room"), (6, "Pier")]
        assert [r.param("offset") for r in revel.requests] == [None, "2"]
        assert all(r.header("X-Correlation-ID") for r in revel.requests)

    @pytest.mark.anyio
    async def test_products_are_those_of_the_establishment(self, client, revel):
        gateway = HttpxRevelGateway(client, api_key=API_KEY, api_secret=API_SECRET, min_interval_s=0, page_limit=2)
        products = await gateway.list_products(4, correlation_id="corr-check")
        assert products == [(579, "OG - Glazed raised ring"), (590, "Cold brew, 96 oz box"), (601, "Pastry platter")]
        assert {r.param("establishment") for r in revel.requests} == {"4"}
        assert {r.header("X-Correlation-ID") for r in revel.requests} == {"corr-check"}

    @pytest.mark.anyio
    async def test_orders_are_listed_by_reference_prefix_and_creation_window(self, client, revel):
        ids = [revel.add_order(f"tripleseat-{n}", created_date=f"2026-01-0{n}T12:00:00") for n in range(1, 6)]
        revel.add_order("manual-1", created_date="2026-01-02T12:00:00")
        gateway = HttpxRevelGateway(client, api_key=API_KEY, api_secret=API_SECRET, min_interval_s=0, page_limit=2)
        everything = await gateway.list_orders_by_reference_prefix(4, "tripleseat-")
        assert everything == [(i, f"tripleseat-{n}") for n, i in zip(range(1, 6), ids)]
        window = await gateway.list_orders_by_reference_prefix(
            4, "tripleseat-", created_from=datetime(2026, 1, 2), created_to=datetime(2026, 1, 3, 23, 59)
        )
        assert window == [(ids[1], "tripleseat-2"), (ids[2], "tripleseat-3")]
        assert revel.requests[-1].param("created_date__gte") == "2026-01-02T00:00:00"


class TestErrors:
    @pytest.mark.anyio
    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    async def test_server_errors_are_transient_and_leave_a_create_in_doubt(self, gateway, revel, status):
        revel.script(ServerFault.status(status), ServerFault.status(status))
        lookup = await failure(gateway.find_order(4, ORDER.local_id, correlation_id="c"))
        create = await failure(gateway.create_order(ORDER, correlation_id="c"))
        assert (lookup.failure.kind, lookup.failure.status, lookup.failure.outcome_unknown) == ("transient", status, False)
        assert (create.failure.kind, create.failure.status, create.failure.outcome_unknown) == ("transient", status, True)

    @pytest.mark.anyio
    async def test_429_with_seconds_sets_retry_after_without_capping_it(self, gateway, revel):
        revel.script(ServerFault.rate_limited(86400))
        before = datetime.now(timezone.utc)
        error = await failure(gateway.create_order(ORDER, correlation_id="c"))
        after = datetime.now(timezone.utc)
        assert error.is_transient and error.failure.status == 429 and not error.failure.outcome_unknown
        assert before + timedelta(seconds=86400) <= error.failure.retry_after <= after + timedelta(seconds=86400)
        assert revel.orders == []

    @pytest.mark.anyio
    async def test_429_with_an_http_date_sets_that_moment(self, gateway, revel):
        moment = datetime(2031, 10, 21, 7, 28, tzinfo=timezone.utc)
        revel.script(ServerFault.rate_limited(format_datetime(moment, usegmt=True)))
        error = await failure(gateway.find_order(4, ORDER.local_id, correlation_id="c"))
        assert error.failure.retry_after == moment

    @pytest.mark.anyio
    async def test_429_without_a_readable_retry_after_is_still_transient(self, gateway, revel):
        revel.script(ServerFault.rate_limited("soon"))
        error = await failure(gateway.find_order(4, ORDER.local_id, correlation_id="c"))
        assert error.is_transient and error.failure.retry_after is None

    @pytest.mark.anyio
    @pytest.mark.parametrize("status", [400, 404, 422])
    async def test_client_errors_are_permanent_with_an_excerpt_of_the_body(self, gateway, revel, status):
        revel.script(ServerFault.status(status, body={"error": "dining_option 113 does not exist"}))
        error = await failure(gateway.create_order(ORDER, correlation_id="c"))
        assert (error.failure.kind, error.failure.status) == ("permanent", status)
        assert "dining_option 113 does not exist" in str(error)

    @pytest.mark.anyio
    async def test_a_long_error_body_is_cut_to_a_short_excerpt(self, gateway, revel):
        revel.script(ServerFault.status(422, body="x" * 5000))
        error = await failure(gateway.create_order(ORDER, correlation_id="c"))
        assert "x" * 290 in str(error) and "x" * 301 not in str(error)

    @pytest.mark.anyio
    @pytest.mark.parametrize("status", [401, 403])
    async def test_refused_keys_are_a_credentials_error(self, gateway, revel, status):
        revel.script(ServerFault.status(status))
        error = await failure(gateway.find_order(4, ORDER.local_id, correlation_id="c"))
        assert (error.failure.kind, error.failure.status) == ("credentials", status)

    @pytest.mark.anyio
    async def test_a_wrong_secret_is_refused_by_revel_and_never_repeated_in_the_error(self, client, revel):
        gateway = HttpxRevelGateway(client, api_key=API_KEY, api_secret="rs_live_wrong_secret", min_interval_s=0)
        with pytest.raises(GatewayError) as caught:
            await gateway.create_order(ORDER, correlation_id="c")
        assert caught.value.failure.kind == "credentials"
        assert "rs_live_wrong_secret" not in str(caught.value) and API_KEY not in str(caught.value)
        assert revel.orders == []

    @pytest.mark.anyio
    async def test_a_far_side_echoing_the_auth_header_is_scrubbed(self, gateway, revel):
        revel.script(ServerFault.status(400, body=f"bad header API-AUTHENTICATION: {API_KEY}:{API_SECRET}"))
        error = await failure(gateway.create_order(ORDER, correlation_id="c"))
        assert "***" in str(error)

    @pytest.mark.anyio
    async def test_a_timeout_is_transient_and_leaves_a_create_in_doubt(self, revel):
        revel.script(ServerFault.hang(30), ServerFault.hang(30))
        async with httpx.AsyncClient(base_url=revel.url, timeout=0.3, trust_env=False) as short:
            gateway = HttpxRevelGateway(short, api_key=API_KEY, api_secret=API_SECRET, min_interval_s=0)
            lookup = await failure(gateway.find_order(4, ORDER.local_id, correlation_id="c"))
            create = await failure(gateway.create_order(ORDER, correlation_id="c"))
        assert lookup.is_transient and not lookup.failure.outcome_unknown
        assert create.is_transient and create.failure.outcome_unknown
        assert "timed out" in str(create)

    @pytest.mark.anyio
    async def test_revel_storing_the_order_then_stalling_is_found_by_the_next_lookup(self, revel):
        revel.script(ServerFault.create_then_stall(30, path=CREATE))
        async with httpx.AsyncClient(base_url=revel.url, timeout=0.3, trust_env=False) as short:
            gateway = HttpxRevelGateway(short, api_key=API_KEY, api_secret=API_SECRET, min_interval_s=0)
            error = await failure(gateway.create_order(ORDER, correlation_id="c"))
            assert error.failure.outcome_unknown
            found = await gateway.find_order(4, ORDER.local_id, correlation_id="c")
        assert found is not None and [o["id"] for o in revel.orders] == [found.order_id]

    @pytest.mark.anyio
    async def test_a_reset_connection_is_transient_and_leaves_a_create_in_doubt(self, gateway, revel):
        revel.script(ServerFault.reset(), ServerFault.reset())
        lookup = await failure(gateway.find_order(4, ORDER.local_id, correlation_id="c"))
        create = await failure(gateway.create_order(ORDER, correlation_id="c"))
        assert lookup.is_transient and not lookup.failure.outcome_unknown
        assert create.is_transient and create.failure.outcome_unknown
        assert await gateway.find_order(4, ORDER.local_id, correlation_id="c") is None  # the next connection works

    @pytest.mark.anyio
    async def test_a_refused_connection_is_transient_and_certainly_not_an_order(self):
        with FakeRevelServer() as gone:
            url = gone.url
        async with httpx.AsyncClient(base_url=url, timeout=2.0, trust_env=False) as dead:
            gateway = HttpxRevelGateway(dead, api_key=API_KEY, api_secret=API_SECRET, min_interval_s=0)
            error = await failure(gateway.create_order(ORDER, correlation_id="c"))
        assert error.is_transient and not error.failure.outcome_unknown

    @pytest.mark.anyio
    async def test_secrets_never_reach_the_logs(self, gateway, revel, caplog):
        caplog.set_level(logging.DEBUG)
        revel.script(ServerFault.status(500), ServerFault.reset())
        for _ in range(2):
            await failure(gateway.create_order(ORDER, correlation_id="c"))
        await gateway.create_order(ORDER, correlation_id="c")
        await gateway.find_order(4, ORDER.local_id, correlation_id="c")
        assert caplog.records, "expected httpx/httpcore to log something at DEBUG"
        assert API_KEY not in caplog.text and API_SECRET not in caplog.text


class TestRateLimit:
    @pytest.mark.anyio
    async def test_request_starts_are_spaced_by_the_minimum_interval(self, client, revel):
        gateway = HttpxRevelGateway(client, api_key=API_KEY, api_secret=API_SECRET, min_interval_s=0.05)
        started = time.monotonic()
        for n in range(5):
            await gateway.find_order(4, f"tripleseat-{n}", correlation_id="c")
        assert time.monotonic() - started >= 0.2  # a lower bound: 4 gaps of at least 0.05 s
        assert len(revel.requests) == 5

    @pytest.mark.anyio
    async def test_concurrent_callers_share_one_pace(self, client, revel):
        gateway = HttpxRevelGateway(client, api_key=API_KEY, api_secret=API_SECRET, min_interval_s=0.05)
        started = time.monotonic()
        await asyncio.gather(*(gateway.find_order(4, f"tripleseat-{n}", correlation_id="c") for n in range(5)))
        assert time.monotonic() - started >= 0.2
        assert sorted(r.param("local_id") for r in revel.requests) == [f"tripleseat-{n}" for n in range(5)]


class TestCallDeadline:
    """Issue 11 item 7: REVEL_TIMEOUT_S bounds each read; TSREVEL_CALL_DEADLINE_S bounds the whole call."""

    @pytest.mark.anyio
    async def test_an_answer_trickled_byte_by_byte_ends_at_the_deadline_as_a_transient_failure(self, revel):
        revel.add_order(ORDER.local_id)  # a real answer to trickle: the order's page
        revel.script(ServerFault.trickle(0.2), ServerFault.trickle(0.2))
        # Each byte comes well within the 5 s read timeout; the answer as a whole would take minutes.
        async with httpx.AsyncClient(base_url=revel.url, timeout=5.0, trust_env=False) as patient:
            gateway = HttpxRevelGateway(patient, api_key=API_KEY, api_secret=API_SECRET, min_interval_s=0, deadline_s=1.0)
            lookup = await failure(gateway.find_order(4, ORDER.local_id, correlation_id="c"))
            create = await failure(gateway.create_order(ORDER, correlation_id="c"))
        assert lookup.is_transient and not lookup.failure.outcome_unknown
        assert "no complete answer within 1 s (TSREVEL_CALL_DEADLINE_S)" in str(lookup)
        assert create.is_transient and create.failure.outcome_unknown  # Revel may have kept it: looked up next time
