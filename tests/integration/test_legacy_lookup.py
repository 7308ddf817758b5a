"""The legacy lookup over real HTTP: HttpxRevelGateway wrapped in LegacyLookup against the loopback Revel.

A legacy local_id has a space (``Triple Seat 123``) and a template may hold ``& # + % /``: each must
reach Revel's query as exactly that text, or the lookup misses the order and the event is ordered twice.
httpx writes a space as ``+`` (form encoding, which Django/Tastypie decode as a space, as the previous
connector's ``requests`` did) and percent-encodes ``+ & # % /``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tsrevel.adapters.revel_http import HttpxRevelGateway
from tsrevel.domain.legacy import LegacyLookup, LegacyReferences
from tsrevel.testing.servers import FakeRevelServer

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

KEY, SECRET = "legacy-key", "legacy-secret"


@pytest.fixture
def revel() -> Iterator[FakeRevelServer]:
    with FakeRevelServer(api_key=KEY, api_secret=SECRET) as server:
        yield server


@pytest.fixture
async def gateway(revel: FakeRevelServer) -> AsyncIterator[HttpxRevelGateway]:
    async with httpx.AsyncClient(base_url=revel.url, timeout=5.0, trust_env=False) as client:
        yield HttpxRevelGateway(client, api_key=KEY, api_secret=SECRET, min_interval_s=0)


@pytest.mark.parametrize(
    "template",
    ["Triple Seat {event_id}", "TS #{event_id} & co+", "legacy/{event_id}?x=1", "100% {event_id}", "{event_id}"],
)
async def test_a_legacy_order_is_found_whatever_its_template_holds(revel: FakeRevelServer, gateway: HttpxRevelGateway, template: str) -> None:
    legacy_id = template.replace("{event_id}", "123")
    order_id = revel.add_order(legacy_id, establishment_id=4)
    revel.add_order(template.replace("{event_id}", "1234"), establishment_id=4)  # a near miss must not match
    lookup = LegacyLookup(gateway, LegacyReferences((template,)))
    found = await lookup.find_order(4, "tripleseat-123", correlation_id="cid-legacy")
    assert found is not None
    assert (found.order_id, found.local_id) == (order_id, legacy_id)
    asked = [r.query["local_id"] for r in revel.requests]
    assert asked == [["tripleseat-123"], [legacy_id]]


async def test_the_space_travels_encoded_not_raw(revel: FakeRevelServer, gateway: HttpxRevelGateway) -> None:
    revel.add_order("Triple Seat 123", establishment_id=4)
    lookup = LegacyLookup(gateway, LegacyReferences.parse("Triple Seat {event_id}"))
    request = gateway._client.build_request("GET", "/resources/Order/", params={"local_id": "Triple Seat 123"})
    assert b" " not in request.url.raw_path and b"local_id=Triple+Seat+123" in request.url.raw_path
    assert await lookup.find_order(4, "tripleseat-123", correlation_id="cid") is not None


async def test_an_order_in_another_establishment_is_found_only_among_the_mapped_ones(revel: FakeRevelServer, gateway: HttpxRevelGateway) -> None:
    order_id = revel.add_order("Triple Seat 123", establishment_id=5)
    refs = LegacyReferences.parse("Triple Seat {event_id}")
    assert await LegacyLookup(gateway, refs).find_order(4, "tripleseat-123", correlation_id="cid") is None
    assert await LegacyLookup(gateway, refs, establishments=[4, 6]).find_order(4, "tripleseat-123", correlation_id="cid") is None
    found = await LegacyLookup(gateway, refs, establishments=[4, 5]).find_order(4, "tripleseat-123", correlation_id="cid")
    assert found is not None and (found.order_id, found.local_id, found.establishment_id) == (order_id, "Triple Seat 123", 5)
    assert revel.requests[-1].query["establishment"] == ["5"]
