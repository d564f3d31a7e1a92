"""Wakes waiting streams when the log grows, without a queue per client: each
stream reads the log at its own pace, so a slow client holds up no one else."""

from __future__ import annotations

import asyncio
import contextlib


class LogSignal:
    def __init__(self) -> None:
        self.version = 0
        self._event = asyncio.Event()

    def notify(self) -> None:
        self.version += 1
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait(self, seen_version: int, timeout_s: float) -> None:
        """Return when the log has grown since `seen_version`, or after `timeout_s`."""
        if self.version != seen_version:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout_s)
