"""Fixtures for end-to-end tests: the service as a subprocess on a real port, fakes at the network edge."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from tsrevel.domain.signature import sign_body
from tsrevel.testing.servers import FakeRevelServer, FakeSendGridServer

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "e2e-admin-token-0123456789abcdef"
SIGNING_SECRET = "e2e-signing-secret"
SENDGRID_KEY = "SG.e2e-sendgrid-key"
REVEL_KEY, REVEL_SECRET = "e2e-revel-key", "e2e-revel-secret"
PRODUCTS = {4: [(579, "OG - Glazed raised ring"), (580, "Ring (Tropicana)"), (590, "Cold brew"), (601, "Pastry platter")],
            5: [(601, "Pastry platter")]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except httpx.TransportError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last: {last!r}")


@attrs.define
class Service:
    """A running `python -m tsrevel serve` process."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def signed_post(self, raw: bytes, *, path: str = "/webhooks/tripleseat") -> httpx.Response:
        headers = {"X-Signature": sign_body(raw, secret=SIGNING_SECRET), "Content-Type": "application/json"}
        return httpx.post(self.url + path, content=raw, headers=headers, timeout=10)

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10, **kwargs)

    def delivery(self, delivery_id: int) -> dict[str, Any]:
        return self.admin("GET", f"/admin/deliveries/{delivery_id}").json()

    def wait_state(self, delivery_id: int, *states: str, timeout_s: float = 15.0) -> dict[str, Any]:
        return wait_until(
            lambda: (d if (d := self.delivery(delivery_id)).get("state") in states else None),
            timeout_s=timeout_s, what=f"delivery {delivery_id} in {states}",
        )

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text().splitlines():
            if raw.startswith("{"):
                lines.append(json.loads(raw))
        return lines

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        return self.process.returncode


@pytest.fixture
def fake_revel() -> Iterator[FakeRevelServer]:
    server = FakeRevelServer(api_key=REVEL_KEY, api_secret=REVEL_SECRET, establishments=[(4, "Tropicana"), (5, "Harbor Room")], products=PRODUCTS)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_sendgrid() -> Iterator[FakeSendGridServer]:
    server = FakeSendGridServer(api_key=SENDGRID_KEY)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def service_env(tmp_path: Path, fake_revel: FakeRevelServer, fake_sendgrid: FakeSendGridServer) -> dict[str, str]:
    """The environment of a production-like service (DRY_RUN=false) wired to the loopback fakes."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TSREVEL_", "REVEL_", "SENDGRID_", "TRIPLESEAT_", "EMAIL_"))}
    env.update(
        ENABLE_CONNECTOR="true",
        DRY_RUN="false",
        TSREVEL_DATABASE_URL=f"sqlite:///{tmp_path / 'tsrevel.db'}",
        TSREVEL_MAPPING_FILE=str(ROOT / "examples" / "mapping.toml"),
        TSREVEL_ADMIN_TOKEN=ADMIN_TOKEN,
        TRIPLESEAT_SIGNING_SECRET=SIGNING_SECRET,
        REVEL_BASE_URL=fake_revel.url,
        REVEL_API_KEY=REVEL_KEY,
        REVEL_API_SECRET=REVEL_SECRET,
        REVEL_MIN_INTERVAL_S="0",
        SENDGRID_API_KEY=SENDGRID_KEY,
        SENDGRID_API_HOST=fake_sendgrid.url,
        EMAIL_FROM="tsrevel@example.com",
        EMAIL_TO="ops@example.com",
        TSREVEL_POLL_INTERVAL_S="0.1",
        TSREVEL_RETRY_BASE_S="0.05",
        TSREVEL_RETRY_CAP_S="0.5",
        LOG_FORMAT="json",
    )
    return env


@pytest.fixture
def start_service(tmp_path: Path) -> Iterator[Callable[..., Service]]:
    """Start `python -m tsrevel serve` with an environment; every started process is stopped after."""
    started: list[Service] = []

    def start(env: dict[str, str], *, wait_ready: bool = True) -> Service:
        port = free_port()
        log_path = tmp_path / f"service-{len(started)}.log"
        log_file = open(log_path, "wb")  # noqa: SIM115 - closed when the process ends
        process = subprocess.Popen(
            [sys.executable, "-m", "tsrevel", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
        )
        service = Service(process=process, url=f"http://127.0.0.1:{port}", log_path=log_path)
        started.append(service)
        if wait_ready:
            wait_until(
                lambda: process.poll() is not None or httpx.get(service.url + "/ready", timeout=2).status_code == 200,
                timeout_s=30, what="/ready to answer 200",
            )
            assert process.poll() is None, log_path.read_text()[-3000:]
        return service

    yield start
    for service in started:
        service.stop()
