"""Fixtures for integration tests: the app on a real SQLite file with fake Revel and SendGrid at the edge."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from dependency_injector import providers
from litestar.testing import TestClient

from tsrevel.adapters.fakes import FakeMailer, FakeRevel
from tsrevel.entrypoints.container import build_container
from tsrevel.entrypoints.http import create_app
from tsrevel.entrypoints.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "admin-token-for-tests-0123456789"
SIGNING_SECRET = "tripleseat-signing-secret-for-tests"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def wait_for(condition: Callable[[], Any], *, timeout_s: float = 10.0, what: str = "condition") -> Any:
    """Poll until condition() is truthy (bounded); fail saying what was expected."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last value: {last!r}")


@attrs.define
class AppHarness:
    client: TestClient
    revel: FakeRevel
    mailer: FakeMailer
    settings: Settings

    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def delivery(self, delivery_id: int) -> dict[str, Any]:
        response = self.client.get(f"/admin/deliveries/{delivery_id}", headers=self.admin())
        assert response.status_code == 200, response.text
        return response.json()

    def wait_state(self, delivery_id: int, *states: str, timeout_s: float = 10.0) -> dict[str, Any]:
        return wait_for(
            lambda: (d if (d := self.delivery(delivery_id))["state"] in states else None),
            timeout_s=timeout_s,
            what=f"delivery {delivery_id} to reach {states}",
        )


def make_settings(tmp_path: Path, **changes: Any) -> Settings:
    base = Settings(
        database_url=f"sqlite:///{tmp_path / 'tsrevel.db'}",
        mapping_file=str(ROOT / "examples" / "mapping.toml"),
        admin_token=ADMIN_TOKEN,
        signing_secret=SIGNING_SECRET,
        dry_run=False,
        revel_base_url="http://revel.invalid",
        revel_api_key="revel-key",
        revel_api_secret="revel-secret",
        email_to=("ops@example.com",),
        poll_interval_s=0.05,
        log_format="text",
    )
    return attrs.evolve(base, **changes)


@pytest.fixture
def app_factory(tmp_path: Path) -> Iterator[Callable[..., AppHarness]]:
    """Start the real app (lifespan, worker, SQLite file) with fake Revel and mailer; stops them after."""
    stack: list[TestClient] = []

    def start(**changes: Any) -> AppHarness:
        settings = make_settings(tmp_path, **changes)
        container = build_container(settings)
        revel, mailer = FakeRevel(), FakeMailer()
        container.revel.override(providers.Object(revel))
        container.mailer.override(providers.Object(mailer))
        client = TestClient(create_app(container, configure_logs=False))
        client.__enter__()
        stack.append(client)
        return AppHarness(client=client, revel=revel, mailer=mailer, settings=settings)

    yield start
    for client in reversed(stack):
        client.__exit__(None, None, None)
