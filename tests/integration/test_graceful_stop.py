"""Stopping a service the way SIGTERM does (ServiceRuntime.stop): open streams end,
committed events are published, and the consumer leaves its group (sends
LeaveGroup, so Kafka rebalances at once instead of after the session timeout), all
well within the pod's grace period.

Leaving is checked at the client, where the stop path reaches aiokafka's leave step
for the group's member. The embedded broker (Tansu 0.6) numbers the first group
generation 0, where Apache Kafka starts at 1, and aiokafka sends LeaveGroup only
for a generation above 0; so against Tansu the request itself is skipped (and Tansu
keeps listing the member), while against Kafka it is sent."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.consumer.group_coordinator import GroupCoordinator

from services.common.config import ServiceName
from sitenet.notifications.v1 import notifications_pb2
from tests.support.scenario import create_site
from tests.support.system import running_system


async def test_stop_drains_streams_flushes_outbox_and_leaves_the_group(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    leaves: list[tuple[str, str]] = []  # (group, member id) of each leave, from any thread
    original = GroupCoordinator._maybe_leave_group

    async def leave(self: GroupCoordinator) -> None:
        leaves.append((self.group_id, self.member_id))
        await original(self)

    monkeypatch.setattr(GroupCoordinator, "_maybe_leave_group", leave)

    async with running_system("sqlite", kafka_bootstrap, tmp_path) as system:
        await create_site(system)
        group = system.settings.consumer_group(ServiceName.NOTIFICATIONS)
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap,
                                    client_id="graceful-test")
        await admin.start()
        try:
            members: list[object] = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not members:
                members = await _members(admin, group)
                await asyncio.sleep(0.2)
            assert members, "the notifications consumer joined its group"

            stream = system.notifications.StreamNotifications(
                notifications_pb2.StreamNotificationsRequest(), metadata=system.admin)
            ended: asyncio.Future[grpc.StatusCode | None] = (
                asyncio.get_running_loop().create_future())

            async def follow() -> None:
                try:
                    async for _ in stream:
                        pass
                    ended.set_result(None)
                except grpc.aio.AioRpcError as error:
                    ended.set_result(error.code())

            follower = asyncio.create_task(follow())
            await asyncio.sleep(0.3)

            # An event committed just before the stop still goes out.
            await create_site(system)
            app = system.notifications_app
            started = time.monotonic()
            await asyncio.wait_for(app.runtime.stop(), timeout=40)
            took = time.monotonic() - started
            await asyncio.wait_for(follower, timeout=10)
            assert ended.done(), "the open stream ended when the server stopped"
            # Within the Deployment's terminationGracePeriodSeconds (45) after preStop (5).
            assert took < 30, f"stopping took {took:.1f}s"
            print(f"notifications stopped in {took:.1f}s")

            registry = system.registry_app
            await registry.runtime.stop()
            assert await registry.relay.backlog() == 0, "the registry's relay flushed on stop"

            assert [g for g, member in leaves if g == group and member], (
                f"the notifications consumer left its group on stop: {leaves}")
        finally:
            await admin.close()


async def _members(admin: AIOKafkaAdminClient, group: str) -> list[object]:
    responses = await admin.describe_consumer_groups([group])
    members: list[object] = []
    for response in responses:
        for described in response.groups:
            if described[1] == group:  # (error_code, group_id, state, protocol_type, ...)
                members += list(described[5])
    return members

