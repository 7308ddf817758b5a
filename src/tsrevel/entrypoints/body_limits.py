"""ASGI guard against slow and heavy clients: a deadline to send the body, a budget of body bytes in flight.

A client that dribbles its body would hold a connection (and its buffered bytes) forever, and
many clients each sending a large body at once would hold all of them in memory. This wraps the
``receive`` channel of each HTTP request: reading the body past ``timeout_s`` raises BodyTimeout
(answered 408), and a request whose body would take the bytes in flight over ``limit`` is answered
503 with ``Retry-After`` before its body is read (or raises BodiesInFlightFull when a body without
Content-Length outgrows the budget). Slow *headers* never reach an ASGI app: see docs/deployment.md.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import attrs
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from tsrevel.domain.correlation import accept_correlation_id, current_correlation_id

RETRY_AFTER_S = 2


class BodyTimeout(Exception):
    """The client did not finish sending its body in time."""


class BodiesInFlightFull(Exception):
    """Taking this body would exceed the bytes of request bodies allowed in memory at once."""


@attrs.define
class BodyBudget:
    """The bytes of request bodies the process holds at once (one event loop: no lock needed)."""

    limit: int
    in_flight: int = 0

    def take(self, size: int) -> bool:
        if size and self.in_flight + size > self.limit:
            return False
        self.in_flight += size
        return True

    def give(self, size: int) -> None:
        self.in_flight -= size


def _declared_length(scope: Scope) -> int | None:
    """Content-Length as sent (None when absent or unreadable: counted as the body arrives)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return max(0, int(value))
            except ValueError:
                return None
    return None


class BodyGuard:
    """The middleware; built by create_app with the settings' timeout and a shared BodyBudget."""

    def __init__(self, app: ASGIApp, *, timeout_s: float, budget: BodyBudget, max_body_bytes: int) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.budget = budget
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        # A body over the size limit is refused (413) without being read: reserve nothing for it.
        reserved = declared if declared is not None and declared <= self.max_body_bytes else 0
        if not self.budget.take(reserved):
            await _refuse_busy(scope, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        received = 0
        finished = declared == 0

        async def guarded_receive() -> Message:
            nonlocal received, reserved, finished
            if finished:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(f"the request body did not arrive within {self.timeout_s:g} s (TSREVEL_BODY_TIMEOUT_S)") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > reserved:  # no (or a false) Content-Length: reserve as it arrives
                    if not self.budget.take(received - reserved):
                        raise BodiesInFlightFull(_busy_text())
                    reserved = received
                finished = not message.get("more_body", False)
            else:
                finished = True  # http.disconnect
            return message

        try:
            await self.app(scope, guarded_receive, send)
        finally:
            self.budget.give(reserved)


def _busy_text() -> str:
    return f"too many request bodies in flight (TSREVEL_MAX_INFLIGHT_BODY_BYTES): retry in {RETRY_AFTER_S} s"


async def _refuse_busy(scope: Scope, send: Send) -> None:
    """503 in our shape, sent before anything is read (the app, and its error map, never see it)."""
    incoming = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"x-correlation-id"), None)
    cid = current_correlation_id.get() or accept_correlation_id(incoming)
    payload: dict[str, Any] = {"error": _busy_text(), "correlation_id": cid}
    content = json.dumps(payload).encode()
    await send({
        "type": "http.response.start",
        "status": 503,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(content)).encode()),
            (b"retry-after", str(RETRY_AFTER_S).encode()),
            (b"x-correlation-id", cid.encode()),
            (b"connection", b"close"),
        ],
    })
    await send({"type": "http.response.body", "body": content})
