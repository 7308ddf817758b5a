"""A fast loopback Revel for P2 and P5: a bare asyncio HTTP/1.1 server, so the benchmark measures tsrevel, not the fake.

`python -m bench.fake_revel --port N` answers the two calls tsrevel makes per new order:

- ``GET /resources/Order/?establishment=&local_id=`` (a Tastypie page with the order, or empty);
- ``POST /resources/OrderAllInOne/`` (201 with the new order's id and resource_uri);

checks ``API-AUTHENTICATION`` like Revel, keeps connections alive, and counts what the
benchmark asks about at ``GET /__stats``: TCP connections accepted (those that carried an API
call), requests by route, orders, duplicate creates, and the time.monotonic() of the last
create and the last call (CLOCK_MONOTONIC is one clock for every process on the machine).
The threaded FakeRevelServer of tsrevel.testing is built for fault scripts, not for speed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 64 * 1024


class Revel:
    """The state and the counters; one instance per process."""

    def __init__(self, auth: str) -> None:
        self.auth = auth.encode()
        self.ids = itertools.count(5001)
        self.orders: dict[str, dict[str, Any]] = {}
        self.connections = 0  # accepted TCP connections that carried at least one API call
        self.all_connections = 0
        self.lookups = 0
        self.creates = 0
        self.duplicate_creates = 0
        self.unauthorized = 0
        self.other = 0
        self.create_times: list[float] = []
        self.last_call_at: float | None = None

    def stats(self, since: float | None) -> dict[str, Any]:
        after = [t for t in self.create_times if since is not None and t > since]
        return {
            "connections": self.connections,
            "all_connections": self.all_connections,
            "lookups": self.lookups,
            "creates": self.creates,
            "duplicate_creates": self.duplicate_creates,
            "orders": len(self.orders),
            "unauthorized": self.unauthorized,
            "other": self.other,
            "first_create_at": self.create_times[0] if self.create_times else None,
            "last_create_at": self.create_times[-1] if self.create_times else None,
            "last_call_at": self.last_call_at,
            "creates_since": len(after) if since is not None else None,
        }

    def handle(self, method: str, target: str, headers: dict[bytes, bytes], body: bytes) -> tuple[int, bytes]:
        parts = urlsplit(target)
        if parts.path == "/__stats":
            query = parse_qs(parts.query)
            since = float(query["since"][0]) if "since" in query else None
            return 200, json.dumps(self.stats(since)).encode()
        self.last_call_at = time.monotonic()
        if headers.get(b"api-authentication") != self.auth:
            self.unauthorized += 1
            return 401, b'{"error": "Unauthorized"}'
        if method == "GET" and parts.path == "/resources/Order/":
            self.lookups += 1
            query = parse_qs(parts.query)
            found = self.orders.get(query.get("local_id", [""])[0])
            objects = [found] if found else []
            meta = {"limit": 100, "offset": 0, "total_count": len(objects), "next": None, "previous": None}
            return 200, json.dumps({"meta": meta, "objects": objects}).encode()
        if method == "POST" and parts.path == "/resources/OrderAllInOne/":
            info = json.loads(body).get("orderInfo") or {}
            local_id = info.get("local_id")
            self.creates += 1
            self.create_times.append(time.monotonic())
            if local_id in self.orders:
                self.duplicate_creates += 1
            order_id = next(self.ids)
            order = {"id": order_id, "resource_uri": f"/resources/Order/{order_id}/", "local_id": local_id,
                     "establishment": info.get("establishment")}
            self.orders[local_id] = order
            return 201, json.dumps(order).encode()
        self.other += 1
        return 404, b'{"error": "no such route"}'


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: parse requests as they complete, answer in order."""

    def __init__(self, revel: Revel) -> None:
        self.revel = revel
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.api = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.revel.all_connections += 1

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self.transport.close()
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            headers: dict[bytes, bytes] = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower().encode()] = value.strip().encode("latin-1")
            length = int(headers.get(b"content-length", b"0"))
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            method, target, _version = head[0].split(" ", 2)
            if not target.startswith("/__") and not self.api:
                self.api = True
                self.revel.connections += 1
            status, payload = self.revel.handle(method, target, headers, body)
            close = headers.get(b"connection", b"").lower() == b"close"
            reason = {200: "OK", 201: "Created", 401: "Unauthorized", 404: "Not Found"}.get(status, "OK")
            self.transport.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
                f"{'Connection: close' if close else 'Connection: keep-alive'}\r\n\r\n".encode() + payload
            )
            if close:
                self.transport.close()
                self.transport = None


async def serve(host: str, port: int, auth: str) -> None:
    revel = Revel(auth)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(revel), host, port, backlog=1024)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--auth", required=True, help="the expected API-AUTHENTICATION value, key:secret")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.auth))


if __name__ == "__main__":
    main()
