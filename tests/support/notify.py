"""Helpers for notification tests: a real webhook receiver on loopback, a stream
collector, and publishing events straight onto a topic (as a producer would)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web

from services.common.events import Envelope
from services.common.kafka import KafkaPublisher
from sitenet.notifications.v1 import notifications_pb2 as npb
from tests.support.system import RunningSystem


@dataclass
class Received:
    body: bytes
    headers: dict[str, str]


@dataclass
class WebhookReceiver:
    """Answers each POST with the next of `statuses` (the last one repeats)."""

    statuses: Sequence[int] = (200,)
    delay_s: float = 0.0
    received: list[Received] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(Received(body, dict(request.headers)))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        status = self.statuses[min(len(self.received) - 1, len(self.statuses) - 1)]
        return web.Response(status=status, text="ok" if status < 300 else "nope")


@contextlib.asynccontextmanager
async def webhook_receiver(statuses: Sequence[int] = (200,),
                           delay_s: float = 0.0) -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver(statuses=statuses, delay_s=delay_s)
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()


class Collector:
    """Reads a StreamNotifications call in the background into a list."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.items: list[npb.Notification] = []
        self.error: grpc.aio.AioRpcError | None = None
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for notification in self.call:
                self.items.append(notification)
        except grpc.aio.AioRpcError as exc:
            self.error = exc

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> list[npb.Notification]:
        deadline = time.monotonic() + timeout_s
        while len(self.items) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"got {len(self.items)} notifications, wanted {count}: "
                                     f"{[n.text_en for n in self.items]}")
            await asyncio.sleep(0.02)
        return self.items

    async def ended(self, timeout_s: float = 10.0) -> grpc.aio.AioRpcError | None:
        """Wait until the call has ended (the server closed it, or it failed); the error."""
        await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        return self.error

    async def close(self) -> None:
        self.call.cancel()
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def stream(system: RunningSystem, metadata: list[tuple[str, str]] | None = None,
           cursor: str = "", subscription: str = "", **filter_values: Any) -> Collector:
    request = npb.StreamNotificationsRequest(
        subscription=subscription, cursor=cursor,
        filter=npb.NotificationFilter(**filter_values))
    return Collector(system.notifications.StreamNotifications(
        request, metadata=metadata or system.admin))


async def publish(system: RunningSystem, events: Sequence[Envelope]) -> None:
    publisher = KafkaPublisher(system.settings.bootstrap_servers, client_id="test-publisher")
    try:
        await publisher.publish(events)
    finally:
        await publisher.close()


async def eventually(check: Any, timeout_s: float = 10.0, interval_s: float = 0.05) -> Any:
    """Await `check()` until it returns something truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout_s}s: last {value!r}")
        await asyncio.sleep(interval_s)


async def plan(system: RunningSystem, study_site: str, milestone: str, planned: str,
               status: int | None = None) -> Any:
    """Record a milestone as planned for a date: needs no prerequisites, so it can be
    repeated as often as a test likes."""
    from sitenet.startup.v1 import startup_pb2
    from tests.support.scenario import day

    return await system.tracker.RecordMilestone(
        startup_pb2.RecordMilestoneRequest(
            study_site=study_site, milestone=milestone,
            status=startup_pb2.PLANNED if status is None else status,
            planned_date=day(planned)),
        metadata=system.admin)
