"""HttpxTripleSeatSource against a loopback TripleSeat: OAuth 2 client credentials, the event fetch, every error class."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest

from tsrevel.adapters.tripleseat_api import HttpxTripleSeatSource
from tsrevel.domain.errors import GatewayError, PayloadError
from tsrevel.testing.servers import FakeTripleSeatServer, ServerFault

pytestmark = pytest.mark.integration

CLIENT_ID = "ts-app-4411"
CLIENT_SECRET = "ts-secret-7c1d9e2f"
EVENTS = "/v1/events/"
EVENT = {
    "id": 55521609,
    "name": "Jon Ponder",
    "status": "DEFINITE",
    "location_id": 201,
    "event_start": "12/28/2025 6:00 PM",
    "documents": [
        {
            "line_items": [
                {"id": 1, "quantity": "12", "price": "2.75", "display_name": "OG - Glazed raised ring", "menu_item_id": 5501},
                {"id": 2, "quantity": 1, "price": 48.1, "display_name": "Cold brew, 96 oz box"},
            ],
            "financials": {"grand_total": "81.10"},
        }
    ],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def tripleseat() -> Iterator[FakeTripleSeatServer]:
    with FakeTripleSeatServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, events={"55521609": EVENT}) as server:
        yield server


@pytest.fixture
async def client(tripleseat: FakeTripleSeatServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=tripleseat.url, timeout=5.0, trust_env=False) as c:
        yield c


@pytest.fixture
def source(client: httpx.AsyncClient) -> HttpxTripleSeatSource:
    return HttpxTripleSeatSource(client, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


async def failure(awaitable, *tokens: str) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await awaitable
    for secret in (CLIENT_SECRET, *tokens):
        assert secret not in str(caught.value), str(caught.value)
    return caught.value


def event_gets(server: FakeTripleSeatServer) -> list:
    return [r for r in server.requests if r.path.startswith(EVENTS)]


class TestFetch:
    @pytest.mark.anyio
    async def test_the_event_comes_with_its_line_items_as_exact_decimals(self, source, tripleseat):
        event = await source.fetch_event("55521609", correlation_id="corr-fetch")

        assert event.id == "55521609" and event.status == "DEFINITE" and event.has_financials
        assert [(i.quantity, i.price) for i in event.line_items] == [(Decimal("12"), Decimal("2.75")), (Decimal("1"), Decimal("48.1"))]
        assert event.grand_total == Decimal("81.10")
        token_request, get = tripleseat.requests
        assert (token_request.method, token_request.path) == ("POST", "/oauth2/token")
        assert token_request.form == {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        assert (get.method, get.path, get.param("show_financial")) == ("GET", "/v1/events/55521609.json", "true")
        assert get.header("Authorization") == f"Bearer {tripleseat.tokens_issued[0]}"
        assert get.header("X-Correlation-ID") == "corr-fetch"

    @pytest.mark.anyio
    async def test_an_event_wrapped_in_an_event_key_is_unwrapped(self, source, tripleseat):
        tripleseat.wrap_event = True
        assert (await source.fetch_event("55521609", correlation_id="c")).name == "Jon Ponder"

    @pytest.mark.anyio
    async def test_the_token_is_reused_until_shortly_before_it_expires(self, source, tripleseat):
        for _ in range(3):
            await source.fetch_event("55521609", correlation_id="c")
        assert len(tripleseat.tokens_issued) == 1

    @pytest.mark.anyio
    async def test_an_expiring_token_is_renewed_before_use(self, source, tripleseat):
        tripleseat.expires_in = 1  # renewed after at most half its life
        await source.fetch_event("55521609", correlation_id="c")
        await asyncio.sleep(0.6)
        await source.fetch_event("55521609", correlation_id="c")
        assert len(tripleseat.tokens_issued) == 2
        assert [g.header("Authorization") for g in event_gets(tripleseat)] == [f"Bearer {t}" for t in tripleseat.tokens_issued]

    @pytest.mark.anyio
    async def test_concurrent_fetches_share_one_token_request(self, source, tripleseat):
        await asyncio.gather(*(source.fetch_event("55521609", correlation_id="c") for _ in range(5)))
        assert len(tripleseat.tokens_issued) == 1 and len(event_gets(tripleseat)) == 5

    @pytest.mark.anyio
    async def test_a_refused_token_is_renewed_once_and_the_fetch_retried(self, source, tripleseat):
        await source.fetch_event("55521609", correlation_id="c")
        tripleseat.revoke_tokens()
        event = await source.fetch_event("55521609", correlation_id="c")
        assert event.id == "55521609"
        assert len(tripleseat.tokens_issued) == 2 and len(event_gets(tripleseat)) == 3

    @pytest.mark.anyio
    async def test_a_second_401_after_renewal_is_a_credentials_error(self, source, tripleseat):
        tripleseat.script(ServerFault.status(401, path=EVENTS, times=2))
        error = await failure(source.fetch_event("55521609", correlation_id="c"), *tripleseat.tokens_issued)
        assert (error.failure.kind, error.failure.status) == ("credentials", 401)
        assert len(tripleseat.tokens_issued) == 2 and len(event_gets(tripleseat)) == 2

    @pytest.mark.anyio
    async def test_an_event_without_an_id_is_a_payload_error(self, source, tripleseat):
        tripleseat.events["7"] = {"name": "no id"}
        with pytest.raises(PayloadError) as caught:
            await source.fetch_event("7", correlation_id="c")
        assert caught.value.path == "event.id"


class TestErrors:
    @pytest.mark.anyio
    async def test_an_html_answer_means_authentication_failed(self, source, tripleseat):
        tripleseat.script(ServerFault.html(path=EVENTS))
        error = await failure(source.fetch_event("55521609", correlation_id="c"))
        assert error.failure.kind == "credentials"
        assert str(error) == "TripleSeat answered HTML: authentication failed"

    @pytest.mark.anyio
    async def test_a_redirect_to_a_sign_in_page_means_authentication_failed(self, source, tripleseat):
        tripleseat.script(ServerFault.status(302, headers={"Location": "/login"}, body="", path=EVENTS))
        error = await failure(source.fetch_event("55521609", correlation_id="c"))
        assert (error.failure.kind, error.failure.status) == ("credentials", 302)

    @pytest.mark.anyio
    async def test_a_wrong_client_secret_is_a_credentials_error(self, client, tripleseat):
        source = HttpxTripleSeatSource(client, client_id=CLIENT_ID, client_secret="ts-secret-wrong")
        error = await failure(source.fetch_event("55521609", correlation_id="c"), "ts-secret-wrong")
        assert error.failure.kind == "credentials" and event_gets(tripleseat) == []

    @pytest.mark.anyio
    async def test_an_unknown_event_is_permanent(self, source, tripleseat):
        error = await failure(source.fetch_event("404404", correlation_id="c"))
        assert (error.failure.kind, error.failure.status) == ("permanent", 404)

    @pytest.mark.anyio
    async def test_429_sets_retry_after(self, source, tripleseat):
        tripleseat.script(ServerFault.rate_limited(30, path=EVENTS))
        before = datetime.now(timezone.utc)
        error = await failure(source.fetch_event("55521609", correlation_id="c"))
        assert error.is_transient and error.failure.retry_after >= before + timedelta(seconds=30)

    @pytest.mark.anyio
    @pytest.mark.parametrize("status", [500, 502, 503, 504])
    async def test_server_errors_are_transient(self, source, tripleseat, status):
        tripleseat.script(ServerFault.status(status, path=EVENTS))
        error = await failure(source.fetch_event("55521609", correlation_id="c"))
        assert (error.failure.kind, error.failure.status) == ("transient", status)

    @pytest.mark.anyio
    async def test_a_failing_token_endpoint_is_transient(self, source, tripleseat):
        tripleseat.script(ServerFault.status(503, path="/oauth2/token"))
        error = await failure(source.fetch_event("55521609", correlation_id="c"))
        assert error.is_transient
        assert (await source.fetch_event("55521609", correlation_id="c")).id == "55521609"

    @pytest.mark.anyio
    async def test_a_timeout_is_transient(self, tripleseat):
        tripleseat.script(ServerFault.hang(30, path=EVENTS))
        async with httpx.AsyncClient(base_url=tripleseat.url, timeout=0.3, trust_env=False) as short:
            source = HttpxTripleSeatSource(short, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
            error = await failure(source.fetch_event("55521609", correlation_id="c"), *tripleseat.tokens_issued)
        assert error.is_transient and "timed out" in str(error)

    @pytest.mark.anyio
    async def test_an_answer_trickled_byte_by_byte_ends_at_the_call_deadline(self, client, tripleseat):
        """Issue 11 item 7: each byte within the read timeout, the whole fetch bounded by TSREVEL_CALL_DEADLINE_S."""
        tripleseat.script(ServerFault.trickle(0.2, path=EVENTS))
        source = HttpxTripleSeatSource(client, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, deadline_s=1.0)
        error = await failure(source.fetch_event("55521609", correlation_id="c"), *tripleseat.tokens_issued)
        assert error.is_transient and "no complete answer within 1 s" in str(error)

    @pytest.mark.anyio
    async def test_a_reset_connection_is_transient(self, source, tripleseat):
        tripleseat.script(ServerFault.reset(path=EVENTS))
        error = await failure(source.fetch_event("55521609", correlation_id="c"), *tripleseat.tokens_issued)
        assert error.is_transient
