"""Background loops that drain the delivery queue and the email outbox through the Processor."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from tsrevel.domain.catchup import scheduled_poll
from tsrevel.domain.errors import StoreUnavailable
from tsrevel.domain.processing import Processor
from tsrevel.entrypoints.settings import Settings

log = logging.getLogger("tsrevel.worker")


class Worker:
    """N delivery loops and one email loop; woken early by intake, otherwise polling the store.

    Polling is what makes the store the source of truth: work stored by another process (a CLI
    replay, another replica, a restart after a crash) is found within one poll interval.
    """

    def __init__(
        self,
        processor: Processor,
        *,
        loops: int,
        poll_interval_s: float,
        wake: asyncio.Event,
        catch_up: Callable[[], Awaitable[object]] | None = None,
        catch_up_interval_s: float = 0.0,
    ) -> None:
        self._processor = processor
        self._catch_up = catch_up  # one pass of the catch-up poll (domain/catchup.py: scheduled_poll)
        self._catch_up_interval_s = catch_up_interval_s
        self._loops = loops
        self._poll = poll_interval_s
        self._wake = wake
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def running(self) -> bool:
        return bool(self._tasks) and not self._stopping.is_set() and all(not t.done() for t in self._tasks)

    def start(self) -> None:
        self._stopping.clear()
        self._tasks = [
            asyncio.create_task(self._run(self._deliveries_step, f"deliveries-{i}"), name=f"tsrevel-deliveries-{i}")
            for i in range(self._loops)
        ]
        self._tasks.append(asyncio.create_task(self._run(self._email_step, "emails"), name="tsrevel-emails"))
        if self._catch_up is not None and self._catch_up_interval_s > 0:
            self._tasks.append(asyncio.create_task(self._catch_up_loop(), name="tsrevel-catchup"))
            log.info("catch-up poll every %gs", self._catch_up_interval_s)
        log.info("worker started: %d delivery loop(s), 1 email loop", self._loops)

    async def stop(self, *, grace_s: float = 10.0) -> None:
        """Let each loop finish the item in hand, then stop; cancel whatever is still running after grace_s."""
        self._stopping.set()
        self._wake.set()
        if not self._tasks:
            return
        done, pending = await asyncio.wait(self._tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        if pending:
            # A cancelled item keeps its lease; the next start takes it over and looks Revel up before creating.
            await asyncio.gather(*pending, return_exceptions=True)
            log.warning("worker stopped with %d loop(s) cancelled mid-item", len(pending))
        self._tasks = []
        log.info("worker stopped")

    async def _deliveries_step(self) -> bool:
        return await self._processor.process_next() is not None

    async def _email_step(self) -> bool:
        return await self._processor.send_next_email()

    async def _run(self, step, name: str) -> None:  # noqa: ANN001 - an async () -> bool
        while not self._stopping.is_set():
            try:
                busy = await step()
            except asyncio.CancelledError:
                raise
            except StoreUnavailable:  # the store logs the outage once, at its start and its end
                busy = False
            except Exception:  # a store outage must not kill the loop: log, back off, try again
                log.exception("%s loop: unexpected error; retrying after %.1fs", name, self._poll)
                busy = False
                await self._sleep()
            if not busy:
                await self._sleep()

    async def _catch_up_loop(self) -> None:
        """One catch-up pass at start, then one per interval; a failed pass is logged and the next one tries again."""
        assert self._catch_up is not None
        while not self._stopping.is_set():
            try:
                await self._catch_up()
            except asyncio.CancelledError:
                raise
            except Exception:  # the TripleSeat API or the store is down: the next interval tries again
                log.exception("catch-up poll failed; next try in %gs", self._catch_up_interval_s)
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self._catch_up_interval_s)
            except TimeoutError:
                pass

    async def _sleep(self) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=self._poll)
        except TimeoutError:
            return
        if not self._stopping.is_set():
            self._wake.clear()


def catch_up_options(processor: Processor, settings: Settings) -> dict[str, Any]:
    """The Worker's catch-up arguments: a scheduled poll when TSREVEL_CATCHUP_INTERVAL_S > 0 and the TripleSeat API is configured."""
    if not settings.catchup_enabled or processor.feed is None:
        return {}
    holder = f"{socket.gethostname()}:{os.getpid()}"
    poll = functools.partial(
        scheduled_poll, processor, holder=holder, interval_s=settings.catchup_interval_s, lookback_h=settings.catchup_lookback_h
    )
    return {"catch_up": poll, "catch_up_interval_s": settings.catchup_interval_s}
