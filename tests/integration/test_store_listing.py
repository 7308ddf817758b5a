"""The store's delivery listing as the console pages it: by event id and before an id, on every store."""

from __future__ import annotations

import pytest

from tests.integration.test_store_contract import add, anyio_backend, backend, store  # noqa: F401 - fixtures
from tsrevel.domain.deliveries import QUEUED

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class TestListingForTheConsole:
    async def test_event_id_picks_that_events_deliveries_newest_first(self, store):
        first = await add(store, event_id="55521609")
        await add(store, event_id="777")
        third = await add(store, event_id="55521609")
        assert [d.id for d in await store.list_deliveries(event_id="55521609")] == [third.id, first.id]
        assert await store.list_deliveries(event_id="nope") == []

    async def test_before_id_pages_backwards_and_combines_with_state_and_event(self, store):
        ids = [(await add(store, event_id="9")).id for _ in range(5)]
        page_one = await store.list_deliveries(limit=2)
        assert [d.id for d in page_one] == [ids[4], ids[3]]
        page_two = await store.list_deliveries(limit=2, before_id=page_one[-1].id)
        assert [d.id for d in page_two] == [ids[2], ids[1]]
        last = await store.list_deliveries(limit=2, before_id=ids[1], state=QUEUED, event_id="9")
        assert [d.id for d in last] == [ids[0]]
