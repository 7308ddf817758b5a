"""A bounded asyncio load generator for counted workloads (P2, P4, P5): exactly N signed webhooks over C keep-alive connections.

wrk (P1) is the better tool for "as fast as possible for T seconds"; this one is for "these N
deliveries, and tell me as they go", with bodies built and signed on the fly (HMAC-SHA256 costs
microseconds) so that 100,000 unique bodies need no table in memory. Runs in the benchmark
process, on its own event loop; the service under test is another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.payloads import WebhookBodies

PATH = "/webhooks/tripleseat"


@dataclass
class LoadResult:
    sent: int = 0
    accepted: int = 0
    other: int = 0  # any answer but 200 "accepted" (duplicates, errors)
    failures: list[str] = field(default_factory=list)
    started_at: float = 0.0
    finished_at: float = 0.0
    latencies_s: list[float] = field(default_factory=list)

    @property
    def elapsed_s(self) -> float:
        return self.finished_at - self.started_at

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


async def post_webhooks(
    host: str,
    port: int,
    bodies: WebhookBodies,
    *,
    first: int,
    count: int,
    connections: int,
    stop: asyncio.Event | None = None,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 1000,
    record_latency: bool = False,
    deadline_s: float | None = None,
    rate: float | None = None,
) -> LoadResult:
    """POST bodies first .. first+count-1 (each signed) over `connections` connections; stops early on stop or deadline.

    With `rate`, request k is not sent before start + k/rate (a paced, open-loop load, as webhooks
    arrive in life); latencies are then measured from each request's actual send.
    """
    result = LoadResult()
    next_index = iter(range(first, first + count))
    deadline = time.monotonic() + deadline_s if deadline_s else None
    paced_from = time.monotonic()

    async def one_connection() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for n in next_index:
                if (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() > deadline):
                    return
                if rate is not None:
                    delay = paced_from + (n - first) / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                body = bodies.body(n)
                request = (
                    f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                    f"X-Signature: {bodies.signature(n)}\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode() + body
                t0 = time.perf_counter()
                writer.write(request)
                status, answer = await _read_response(reader)
                if record_latency:
                    result.latencies_s.append(time.perf_counter() - t0)
                result.sent += 1
                if status == 200 and b'"accepted"' in answer:
                    result.accepted += 1
                else:
                    result.other += 1
                    if len(result.failures) < 5:
                        result.failures.append(f"{status}: {answer[:200]!r}")
                if on_progress is not None and result.sent % progress_every == 0:
                    on_progress(result.sent)
        finally:
            writer.close()
            with contextlib.suppress(OSError):  # the server may have closed first
                await writer.wait_closed()

    result.started_at = time.monotonic()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    result.finished_at = time.monotonic()
    return result
