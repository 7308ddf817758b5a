"""Fixtures for the R1-R24 checks: the real app (in-process or as a service) with the loopback fakes at the edge.

Two harnesses, both with the real SQLite store, the real Revel and SendGrid adapters and the
real worker; only the network edge is faked (FakeRevelServer / FakeSendGridServer on 127.0.0.1):

- ``start_service(env)`` (from tests/e2e): ``python -m tsrevel serve`` as a subprocess, for
  crashes, restarts, concurrency and log checks;
- ``real_app(**settings)``: the same app in this process through Litestar's TestClient, which
  starts in a fraction of the time; ``stop()`` runs the lifespan's shutdown, and a second
  ``real_app`` on the same database is a restart.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
from litestar.testing import TestClient

# The e2e fixtures, shared rather than copied: the servers, the service environment and launcher.
from tests.e2e.conftest import (  # noqa: F401 - fixtures are found by name
    ADMIN_TOKEN,
    REVEL_KEY,
    REVEL_SECRET,
    ROOT,
    SENDGRID_KEY,
    SIGNING_SECRET,
    fake_revel,
    fake_sendgrid,
    service_env,
    start_service,
    wait_until,
)
from tsrevel.adapters.sqlite_store import SqliteStore
from tsrevel.domain.signature import sign_body
from tsrevel.entrypoints.container import build_container
from tsrevel.entrypoints.http import create_app
from tsrevel.entrypoints.settings import Settings
from tsrevel.testing.servers import FakeRevelServer, FakeSendGridServer

CREATE_PATH = "/resources/OrderAllInOne/"
ORDERS_PATH = "/resources/Order/"
MAIL_PATH = "/v3/mail/send"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def signed_headers(raw: bytes) -> dict[str, str]:
    return {"X-Signature": sign_body(raw, secret=SIGNING_SECRET), "Content-Type": "application/json"}


@attrs.define
class RealApp:
    """The app in-process: real store, adapters and worker; drive it over HTTP like TripleSeat and an operator."""

    client: TestClient
    settings: Settings
    db_path: Path
    stopped: bool = False

    def signed_post(self, raw: bytes, *, path: str = "/webhooks/tripleseat") -> httpx.Response:
        return self.client.post(path, content=raw, headers=signed_headers(raw))

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, **kwargs)

    def delivery(self, delivery_id: int) -> dict[str, Any]:
        response = self.admin("GET", f"/admin/deliveries/{delivery_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait_state(self, delivery_id: int, *states: str, timeout_s: float = 20.0) -> dict[str, Any]:
        return wait_until(
            lambda: (d if (d := self.delivery(delivery_id))["state"] in states else None),
            timeout_s=timeout_s, what=f"delivery {delivery_id} in {states}",
        )

    def set_flags(self, **flags: bool) -> None:
        response = self.admin("PUT", "/admin/flags", json={**flags, "reason": "reliability test"})
        assert response.status_code == 200, response.text

    def stop(self) -> None:
        """Shut down as on SIGTERM: the worker finishes or releases its item, resources close."""
        if not self.stopped:
            self.stopped = True
            self.client.__exit__(None, None, None)


@pytest.fixture
def real_app(tmp_path: Path, fake_revel: FakeRevelServer, fake_sendgrid: FakeSendGridServer) -> Iterator[Callable[..., RealApp]]:  # noqa: F811 - the fixtures imported above
    """Start the app in-process, DRY_RUN=false, wired to the loopback fakes; every app is stopped after."""
    apps: list[RealApp] = []

    def start(**changes: Any) -> RealApp:
        settings = attrs.evolve(production_settings(tmp_path, revel_url=fake_revel.url, sendgrid_url=fake_sendgrid.url), **changes)
        client = TestClient(create_app(build_container(settings), configure_logs=False), raise_server_exceptions=False)
        client.__enter__()
        app = RealApp(client=client, settings=settings, db_path=Path(settings.database_url.removeprefix("sqlite:///")))
        apps.append(app)
        return app

    yield start
    for app in reversed(apps):
        app.stop()


def production_settings(tmp_path: Path, *, revel_url: str, sendgrid_url: str | None) -> Settings:
    """What service_env says, as Settings: production flags, fast retries, the loopback fakes."""
    return Settings(
        enable_connector=True,
        dry_run=False,
        database_url=f"sqlite:///{tmp_path / 'tsrevel.db'}",
        mapping_file=str(ROOT / "examples" / "mapping.toml"),
        admin_token=ADMIN_TOKEN,
        signing_secret=SIGNING_SECRET,
        revel_base_url=revel_url,
        revel_api_key=REVEL_KEY,
        revel_api_secret=REVEL_SECRET,
        revel_min_interval_s=0.0,
        sendgrid_api_key=SENDGRID_KEY if sendgrid_url else None,
        sendgrid_api_host=sendgrid_url or "https://api.sendgrid.com",
        email_from="tsrevel@example.com" if sendgrid_url else None,
        email_to=("ops@example.com",),
        poll_interval_s=0.05,
        retry_base_s=0.05,
        retry_cap_s=0.5,
        log_format="text",
    )


# ---- reading what happened -------------------------------------------------------------------


def creates(revel: FakeRevelServer) -> list[Any]:
    """Every create request Revel saw (answered or not)."""
    return [r for r in revel.requests if r.method == "POST" and r.path == CREATE_PATH]


def orders_by_local_id(revel: FakeRevelServer) -> dict[str, int]:
    counts: dict[str, int] = {}
    for order in revel.orders:
        counts[order["local_id"]] = counts.get(order["local_id"], 0) + 1
    return counts


def wall(monotonic_at: float) -> float:
    """A RecordedRequest.at (monotonic) as a unix time; good to a few microseconds over a test's span."""
    return time.time() - time.monotonic() + monotonic_at


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text)


def query_db(db_path: Path, sql: str, *args: Any) -> list[sqlite3.Row]:
    """Read the service's SQLite file directly (WAL allows a reader beside the service)."""
    conn = sqlite3.connect(db_path, timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def with_store(db_path: Path, use: Callable[[SqliteStore], Any]) -> Any:
    """Run ``await use(store)`` on a second SqliteStore over the same file (what another process would do)."""

    async def run() -> Any:
        store = SqliteStore(db_path)
        try:
            return await use(store)
        finally:
            await store.close()

    return asyncio.run(run())
