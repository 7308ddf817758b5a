"""BodyGuard on a bare ASGI app (issue 11, item 6): the body deadline and the in-flight byte budget."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tsrevel.entrypoints.body_limits import BodiesInFlightFull, BodyBudget, BodyGuard, BodyTimeout

pytestmark = pytest.mark.anyio


def scope(content_length: int | None) -> dict[str, Any]:
    headers = [(b"content-length", str(content_length).encode())] if content_length is not None else []
    return {"type": "http", "method": "POST", "path": "/", "headers": headers}


def chunks(*parts: bytes, hang: bool = False):
    queue = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1 or hang} for i, p in enumerate(parts)]

    async def receive() -> dict[str, Any]:
        if queue:
            return queue.pop(0)
        await asyncio.Event().wait()  # a client that stops sending
        raise AssertionError("unreachable")

    return receive


class Reader:
    """An app that reads the whole body and records what it saw (or the error that stopped it)."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.body = b""
        self.error: Exception | None = None
        self.in_flight_while_reading = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            while True:
                message = await receive()
                self.body += message.get("body", b"")
                self.in_flight_while_reading = max(self.in_flight_while_reading, self.budget.in_flight)
                if not message.get("more_body"):
                    break
        except (BodyTimeout, BodiesInFlightFull) as exc:
            self.error = exc


async def no_send(message: Any) -> None:
    raise AssertionError(f"the guard answered by itself: {message}")


def guard(budget: BodyBudget, app: Any, timeout_s: float = 30.0) -> BodyGuard:
    return BodyGuard(app, timeout_s=timeout_s, budget=budget, max_body_bytes=1024 * 1024)


async def test_a_body_is_read_through_and_its_bytes_are_given_back():
    budget = BodyBudget(1000)
    app = Reader(budget)
    await guard(budget, app)(scope(6), chunks(b"abc", b"def"), no_send)
    assert (app.body, app.error, app.in_flight_while_reading, budget.in_flight) == (b"abcdef", None, 6, 0)


async def test_a_body_that_stops_coming_raises_body_timeout():
    budget = BodyBudget(1000)
    app = Reader(budget)
    await guard(budget, app, timeout_s=0.05)(scope(100), chunks(b"abc", hang=True), no_send)
    assert isinstance(app.error, BodyTimeout) and "TSREVEL_BODY_TIMEOUT_S" in str(app.error)
    assert budget.in_flight == 0


async def test_a_declared_body_over_the_budget_is_503_before_anything_is_read():
    budget = BodyBudget(1000)
    budget.take(600)
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the app must not run")

    await guard(budget, app)(scope(500), chunks(b"x" * 500), send)
    assert sent[0]["status"] == 503 and (b"retry-after", b"2") in sent[0]["headers"]
    assert b"TSREVEL_MAX_INFLIGHT_BODY_BYTES" in sent[1]["body"] and b"correlation_id" in sent[1]["body"]
    assert budget.in_flight == 600


async def test_a_body_without_content_length_is_counted_as_it_arrives():
    budget = BodyBudget(1000)
    app = Reader(budget)
    await guard(budget, app)(scope(None), chunks(b"x" * 600, b"y" * 600), no_send)
    assert isinstance(app.error, BodiesInFlightFull)
    assert budget.in_flight == 0


async def test_a_body_over_the_size_limit_reserves_nothing_it_is_refused_413_by_the_app():
    budget = BodyBudget(1000)
    seen: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(budget.in_flight)

    await guard(budget, app)(scope(50 * 1024 * 1024), chunks(b""), no_send)
    assert seen == [0] and budget.in_flight == 0
