"""Enrichment through the real app: webhooks without line items are completed from a loopback TripleSeat API.

The service runs in-process (Litestar app, worker, SQLite file) with the real HttpxTripleSeatSource
and the store-backed token store; only Revel and the mailer are fakes. OAuth 2 refresh-token
rotation is checked across a restart of the app on the same database.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from dependency_injector import providers
from litestar.testing import TestClient

from tests.helpers import definite, random_event_id
from tests.integration.conftest import SIGNING_SECRET, AppHarness, make_settings, wait_for
from tsrevel.adapters.fakes import FakeMailer, FakeRevel, ManualClock
from tsrevel.adapters.memory_store import MemoryStore
from tsrevel.adapters.sqlite_store import SqliteStore
from tsrevel.adapters.tripleseat_api import REFRESH_TOKEN_VALUE, HttpxTripleSeatSource, StoreTokenStore
from tsrevel.domain.errors import GatewayError
from tsrevel.domain.signature import sign_body
from tsrevel.entrypoints.container import build_container
from tsrevel.entrypoints.http import create_app
from tsrevel.testing.servers import FakeTripleSeatServer, ServerFault

pytestmark = pytest.mark.integration

CLIENT_ID = "ts-app-enrich"
CLIENT_SECRET = "ts-secret-enrich-5f1e"
SEED = "ts-refresh-seed-from-authorization-9a7c"
EVENTS = "/v1/events/"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def tripleseat() -> Iterator[FakeTripleSeatServer]:
    with FakeTripleSeatServer(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=SEED) as server:
        yield server


def with_and_without_items(event_id: int | None = None, **changes: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the full event as the API serves it, a webhook for it that carries no documents)."""
    full = definite(event_id, **changes)
    bare = copy.deepcopy(full)
    del bare["event"]["documents"]
    return full["event"], bare


@contextmanager
def service(tmp_path: Path, tripleseat: FakeTripleSeatServer, **changes: Any) -> Iterator[AppHarness]:
    """The app with the real TripleSeat adapter pointed at the loopback server; stopped on exit."""
    settings = make_settings(
        tmp_path,
        tripleseat_api_url=tripleseat.url,
        tripleseat_client_id=CLIENT_ID,
        tripleseat_client_secret=CLIENT_SECRET,
        # The catch-up poll (tests/integration/test_catchup.py) would add TripleSeat requests of its own.
        **{"catchup_interval_s": 0.0, **changes},
    )
    container = build_container(settings)
    revel, mailer = FakeRevel(), FakeMailer()
    container.revel.override(providers.Object(revel))
    container.mailer.override(providers.Object(mailer))
    with TestClient(create_app(container, configure_logs=False)) as client:
        yield AppHarness(client=client, revel=revel, mailer=mailer, settings=settings)


def post(app: AppHarness, payload: dict[str, Any]) -> int:
    raw = json.dumps(payload).encode()
    response = app.client.post("/webhooks/tripleseat", content=raw, headers={"X-Signature": sign_body(raw, secret=SIGNING_SECRET)})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    return response.json()["delivery_id"]


def event_gets(server: FakeTripleSeatServer) -> list:
    return [r for r in server.requests if r.path.startswith(EVENTS)]


def token_requests(server: FakeTripleSeatServer) -> list:
    return [r for r in server.requests if r.path == "/oauth2/token"]


class TestEnrichment:
    def test_a_webhook_without_documents_is_ordered_with_the_fetched_events_items(self, tmp_path, tripleseat):
        full, bare = with_and_without_items()
        tripleseat.events[str(full["id"])] = full
        with service(tmp_path, tripleseat) as app:
            delivery = app.wait_state(post(app, bare), "done")
            assert [line.product_id for line in app.revel.created[0].items] == [580, 590, 601]
            assert str(app.revel.created[0].total) == "438.00"
            assert "fetched the event's line items from the TripleSeat API" in [t["note"] for t in delivery["timeline"]]
        (get,) = event_gets(tripleseat)
        assert get.path == f"/v1/events/{full['id']}.json" and get.param("show_financial") == "true"
        assert get.header("Authorization") == f"Bearer {tripleseat.tokens_issued[0]}"
        assert get.header("X-Correlation-ID") == delivery["correlation_id"]

    def test_a_webhook_with_its_items_makes_no_api_call(self, tmp_path, tripleseat):
        full, _ = with_and_without_items()
        with service(tmp_path, tripleseat) as app:
            app.wait_state(post(app, {"webhook_trigger_type": "CREATE_EVENT", "event": full}), "done")
        assert tripleseat.requests == []

    def test_an_html_answer_is_a_credentials_failure_dead_at_once_and_ops_are_emailed(self, tmp_path, tripleseat):
        full, bare = with_and_without_items()
        tripleseat.events[str(full["id"])] = full
        tripleseat.script(ServerFault.html(path=EVENTS))
        with service(tmp_path, tripleseat) as app:
            delivery = app.wait_state(post(app, bare), "dead")
            assert delivery["attempts"] == 1
            assert "credentials error: TripleSeat answered HTML: authentication failed" in delivery["last_error"]
            (email,) = wait_for(lambda: app.mailer.sent, what="the failure email")
            assert email.kind == "failure" and "authentication failed" in email.text
            assert f"tsrevel replay {delivery['id']}" in email.text
            assert app.revel.calls == []

    def test_a_429_is_retried_no_earlier_than_its_retry_after(self, tmp_path, tripleseat):
        full, bare = with_and_without_items()
        tripleseat.events[str(full["id"])] = full
        tripleseat.script(ServerFault.rate_limited(1, path=EVENTS))
        with service(tmp_path, tripleseat) as app:
            before = datetime.now(timezone.utc)
            delivery_id = post(app, bare)
            retrying = app.wait_state(delivery_id, "retrying", "done")
            if retrying["state"] == "retrying":  # seen between the two attempts: the stored schedule honours it
                assert datetime.fromisoformat(retrying["next_attempt_at"]) >= before + timedelta(seconds=1)
                assert "TripleSeat rate limit" in retrying["last_error"]
            app.wait_state(delivery_id, "done", timeout_s=15)
            assert len(app.revel.created) == 1
        first, second = event_gets(tripleseat)
        assert second.at - first.at >= 1.0, "the second fetch came before Retry-After allowed it"

    def test_a_429_with_a_long_retry_after_is_stored_as_the_next_attempt(self, tmp_path, tripleseat):
        full, bare = with_and_without_items()
        tripleseat.events[str(full["id"])] = full
        tripleseat.script(ServerFault.rate_limited(120, path=EVENTS))
        with service(tmp_path, tripleseat) as app:
            before = datetime.now(timezone.utc)
            delivery = app.wait_state(post(app, bare), "retrying")
            assert datetime.fromisoformat(delivery["next_attempt_at"]) >= before + timedelta(seconds=120)
            assert delivery["attempts"] == 1
        assert len(event_gets(tripleseat)) == 1 and tripleseat.pending_faults == []


class TestRefreshTokenRotation:
    def test_the_rotated_refresh_token_is_persisted_and_used_after_a_restart(self, tmp_path, tripleseat, caplog):
        caplog.set_level(logging.DEBUG)
        first_full, first_bare = with_and_without_items()
        second_full, second_bare = with_and_without_items()
        tripleseat.events.update({str(first_full["id"]): first_full, str(second_full["id"]): second_full})

        with service(tmp_path, tripleseat, tripleseat_refresh_token=SEED) as app:
            app.wait_state(post(app, first_bare), "done")
        (grant,) = token_requests(tripleseat)
        assert grant.form["grant_type"] == "refresh_token" and grant.form["refresh_token"] == SEED
        assert tripleseat.retired_refresh_tokens == [SEED]
        (rotated,) = tripleseat.valid_refresh_tokens

        stored = stored_value(tmp_path / "tsrevel.db")
        assert stored is not None and json.loads(stored)["refresh_token"] == rotated
        assert SEED not in stored  # the seed itself is not kept, only which seed the token descends from

        # A restart on the same database: the seed in the environment is retired, the stored token is not.
        with service(tmp_path, tripleseat, tripleseat_refresh_token=SEED) as app:
            app.wait_state(post(app, second_bare), "done")
            assert len(app.revel.created) == 1
        grants = token_requests(tripleseat)
        assert [g.form["refresh_token"] for g in grants] == [SEED, rotated]
        assert tripleseat.retired_refresh_tokens == [SEED, rotated]
        assert json.loads(stored_value(tmp_path / "tsrevel.db") or "{}")["refresh_token"] in tripleseat.valid_refresh_tokens

        secrets = [SEED, rotated, CLIENT_SECRET, *tripleseat.valid_refresh_tokens, *tripleseat.tokens_issued]
        for record in caplog.records:
            text = record.getMessage()
            assert not any(secret in text for secret in secrets), text

    def test_a_retired_refresh_token_is_a_credentials_failure_that_says_what_to_do(self, tmp_path, tripleseat):
        full, bare = with_and_without_items()
        tripleseat.events[str(full["id"])] = full
        with service(tmp_path, tripleseat, tripleseat_refresh_token="ts-refresh-already-used") as app:
            delivery = app.wait_state(post(app, bare), "dead")
        assert "TripleSeat refused the refresh token" in delivery["last_error"]
        assert "TRIPLESEAT_REFRESH_TOKEN" in delivery["last_error"]
        assert "ts-refresh-already-used" not in json.dumps(delivery)
        assert event_gets(tripleseat) == []


def stored_value(path: Path) -> str | None:
    import asyncio

    async def read() -> str | None:
        store = SqliteStore(path)
        try:
            await store.migrate()
            return await store.get_value(REFRESH_TOKEN_VALUE)
        finally:
            await store.close()

    return asyncio.run(read())


@pytest.fixture
async def client(tripleseat: FakeTripleSeatServer):
    async with httpx.AsyncClient(base_url=tripleseat.url, timeout=5.0, trust_env=False) as c:
        yield c


def source(client: httpx.AsyncClient, tokens: StoreTokenStore | None, seed: str = SEED) -> HttpxTripleSeatSource:
    return HttpxTripleSeatSource(client, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=seed, token_store=tokens)


@pytest.mark.anyio
class TestTokenStoreAtTheAdapter:
    async def test_a_replica_that_lost_the_rotation_race_takes_the_newest_token_from_the_store(self, client, tripleseat):
        full, _ = with_and_without_items(random_event_id())
        tripleseat.events[str(full["id"])] = full
        tokens = StoreTokenStore(MemoryStore(), ManualClock())
        one, two = source(client, tokens), source(client, tokens)
        await one.fetch_event(str(full["id"]), correlation_id="c1")  # rotates SEED -> r1, stored
        await two.fetch_event(str(full["id"]), correlation_id="c2")  # reads r1 from the store before asking
        assert [g.form["refresh_token"] for g in token_requests(tripleseat)] == [SEED, "ts-refresh-1"]

        one._token = None  # make `one` refresh again with what it holds in memory (r1, retired by `two`)
        await one.fetch_event(str(full["id"]), correlation_id="c3")
        refreshes = [g.form["refresh_token"] for g in token_requests(tripleseat)]
        assert refreshes == [SEED, "ts-refresh-1", "ts-refresh-1", "ts-refresh-2"]  # refused once, then the stored one

    async def test_a_new_seed_in_the_environment_wins_over_the_token_stored_for_the_old_one(self, client, tripleseat):
        full, _ = with_and_without_items(random_event_id())
        tripleseat.events[str(full["id"])] = full
        store = MemoryStore()
        tokens = StoreTokenStore(store, ManualClock())
        await tokens.save(json.dumps({"seed": "another-seed-fingerprint", "refresh_token": "ts-refresh-of-old-grant"}))
        await source(client, tokens).fetch_event(str(full["id"]), correlation_id="c")
        assert [g.form["refresh_token"] for g in token_requests(tripleseat)] == [SEED]
        assert json.loads(await store.get_value(REFRESH_TOKEN_VALUE) or "{}")["refresh_token"] in tripleseat.valid_refresh_tokens

    async def test_without_a_token_store_the_rotation_is_kept_in_memory(self, client, tripleseat):
        full, _ = with_and_without_items(random_event_id())
        tripleseat.events[str(full["id"])] = full
        ts = source(client, None)
        await ts.fetch_event(str(full["id"]), correlation_id="c")
        ts._token = None
        await ts.fetch_event(str(full["id"]), correlation_id="c")
        assert [g.form["refresh_token"] for g in token_requests(tripleseat)] == [SEED, "ts-refresh-1"]

    async def test_a_store_that_cannot_save_does_not_fail_the_fetch(self, client, tripleseat, caplog):
        full, _ = with_and_without_items(random_event_id())
        tripleseat.events[str(full["id"])] = full

        class BrokenSave:
            async def load(self) -> str | None:
                return None

            async def save(self, value: str) -> None:
                raise OSError("disk full")

        event = await source(client, BrokenSave()).fetch_event(str(full["id"]), correlation_id="c")  # type: ignore[arg-type]
        assert event.line_items
        messages = [r.getMessage() for r in caplog.records if r.name == "tsrevel.tripleseat"]
        assert any("could not store the rotated TripleSeat refresh token (OSError)" in m for m in messages)
        assert not any("ts-refresh-1" in m for m in messages)

    async def test_a_store_that_cannot_be_read_is_a_transient_failure(self, client, tripleseat):
        class BrokenLoad:
            async def load(self) -> str | None:
                raise ConnectionError("database down")

            async def save(self, value: str) -> None:
                raise AssertionError("not reached")

        with pytest.raises(GatewayError) as caught:
            await source(client, BrokenLoad()).fetch_event("1", correlation_id="c")  # type: ignore[arg-type]
        assert caught.value.is_transient and token_requests(tripleseat) == []


class TestRefreshTokenSetting:
    BASE = {"TRIPLESEAT_CLIENT_ID": CLIENT_ID, "TRIPLESEAT_CLIENT_SECRET": CLIENT_SECRET}

    def test_it_is_read_as_a_secret_and_never_shown(self):
        from tsrevel.entrypoints.settings import SECRET_FIELDS, Settings

        settings = Settings.from_env({**self.BASE, "TRIPLESEAT_REFRESH_TOKEN": SEED})
        assert settings.tripleseat_refresh_token == SEED and "tripleseat_refresh_token" in SECRET_FIELDS
        assert SEED not in repr(settings) and SEED not in repr(settings.describe())
        assert ("TRIPLESEAT_REFRESH_TOKEN", "(set, redacted)") in settings.describe()

    def test_it_needs_the_client_id_and_secret(self):
        from tsrevel.domain.errors import ConfigError
        from tsrevel.entrypoints.settings import Settings

        with pytest.raises(ConfigError, match="^TRIPLESEAT_REFRESH_TOKEN: needs TRIPLESEAT_CLIENT_ID"):
            Settings.from_env({"TRIPLESEAT_REFRESH_TOKEN": SEED})
