"""Running one service process: start its parts in order, stop them in reverse on
SIGINT or SIGTERM (drain RPCs, flush the outbox, leave the consumer group).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger(__name__)


@dataclass
class Part:
    name: str
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]


class ServiceRuntime:
    STOP_TIMEOUT_S = 8.0

    def __init__(self, name: str) -> None:
        self.name = name
        self._parts: list[Part] = []
        self._started: list[Part] = []
        self._stopping = asyncio.Event()

    def add(self, name: str, start: Callable[[], Awaitable[None]],
            stop: Callable[[], Awaitable[None]]) -> None:
        self._parts.append(Part(name, start, stop))

    def add_periodic(self, name: str, action: Callable[[], Awaitable[object]],
                     interval_s: float) -> None:
        """A part that runs `action` every `interval_s`; a failed round (the database
        away, say) is logged and tried again at the next tick."""
        task: asyncio.Task[None] | None = None

        async def loop() -> None:
            while True:
                try:
                    await action()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("periodic task failed; retrying at the next tick", part=name)
                await asyncio.sleep(interval_s)

        async def start() -> None:
            nonlocal task
            task = asyncio.create_task(loop(), name=name)

        async def stop() -> None:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        self.add(name, start, stop)

    async def start(self) -> None:
        for part in self._parts:
            await part.start()
            self._started.append(part)
            log.info("started", part=part.name)

    async def stop(self) -> None:
        while self._started:
            part = self._started.pop()
            try:
                # A part whose peer is gone (broker stopped first, say) must not hold up the rest.
                await asyncio.wait_for(part.stop(), timeout=self.STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("gave up waiting for a part to stop", part=part.name)
            except Exception:  # keep stopping the rest
                log.exception("failed to stop cleanly", part=part.name)

    def request_stop(self) -> None:
        self._stopping.set()

    async def run_until_signalled(self, ready: Callable[[], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.start()
            if ready:
                ready()
            await self._stopping.wait()
        finally:
            log.info("stopping")
            await self.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(Exception):
                    loop.remove_signal_handler(sig)
