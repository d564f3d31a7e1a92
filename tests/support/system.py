"""The three services, started in this process on free loopback ports against a
real broker and real databases, with gRPC clients that go over the wire."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from services.common.config import Settings
from services.common.identity import Role
from services.common.rpc.tls import aio_channel, channel_credentials
from services.common.tokens import TokenService
from services.notifications.bootstrap import NotificationsApp
from services.notifications.bootstrap import build as build_notifications
from services.site_registry.bootstrap import SiteRegistryApp
from services.site_registry.bootstrap import build as build_registry
from services.startup_tracker.bootstrap import StartupTrackerApp
from services.startup_tracker.bootstrap import build as build_tracker
from sitenet.notifications.v1 import notifications_pb2_grpc
from sitenet.registry.v1 import registry_pb2_grpc
from sitenet.startup.v1 import startup_pb2_grpc
from tests.support.databases import database

TEST_SECRET = "test-secret-for-sitenet-tests-only-0123456789"


@dataclass
class RunningSystem:
    settings: Settings
    registry_app: SiteRegistryApp
    tracker_app: StartupTrackerApp
    notifications_app: NotificationsApp
    registry: registry_pb2_grpc.SiteRegistryStub
    tracker: startup_pb2_grpc.StartupTrackerStub
    notifications: notifications_pb2_grpc.NotificationsStub
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    @property
    def tokens(self) -> TokenService:
        return TokenService(TEST_SECRET, self.settings.jwt_issuer, self.settings.jwt_audience)

    def token(self, role: str | Role, *, org: str | None = None,
              sites: list[str] | tuple[str, ...] = (), subject: str | None = None) -> str:
        return self.tokens.issue(Role(role), org=org, sites=sites, subject=subject)

    def auth(self, role: str | Role = Role.ADMIN, **claims: Any) -> list[tuple[str, str]]:
        """Call metadata with a bearer token for `role` (org=..., sites=[...])."""
        return [("authorization", f"Bearer {self.token(role, **claims)}")]

    @property
    def admin(self) -> list[tuple[str, str]]:
        return self.auth(Role.ADMIN)


def _channel(port: int, settings: Settings) -> grpc.aio.Channel:
    # Over TLS when the settings say so, as the CLI does.
    return aio_channel(f"127.0.0.1:{port}", channel_credentials(settings))


@asynccontextmanager
async def running_system(backend: str, bootstrap: str, directory: Path,
                         postgres_dsn: str | None = None,
                         **overrides: Any) -> AsyncIterator[RunningSystem]:
    """Everything a test needs, isolated by its own topics, consumer groups and databases
    (on PostgreSQL: on the server of the admin DSN `postgres_dsn`, default the local one)."""
    async with AsyncExitStack() as stack:
        urls = await asyncio.gather(*(
            stack.enter_async_context(database(backend, directory, name, postgres_dsn))
            for name in ("registry", "tracker", "notifications")))
        settings = Settings(
            data_dir=directory, kafka_bootstrap=bootstrap,
            topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
            registry_port=0, tracker_port=0, notifications_port=0,
            registry_database_url=urls[0], tracker_database_url=urls[1],
            notifications_database_url=urls[2], jwt_secret=TEST_SECRET,
            relay_poll_interval_s=0.2, **overrides)
        registry_app = build_registry(settings)
        tracker_app = build_tracker(settings)
        notifications_app = build_notifications(settings)
        runtimes = [registry_app.runtime, tracker_app.runtime, notifications_app.runtime]
        try:
            await asyncio.gather(*(r.start() for r in runtimes))
            channels = [_channel(registry_app.server.port, settings),
                        _channel(tracker_app.server.port, settings),
                        _channel(notifications_app.server.port, settings)]
            system = RunningSystem(
                settings=settings, registry_app=registry_app, tracker_app=tracker_app,
                notifications_app=notifications_app,
                registry=registry_pb2_grpc.SiteRegistryStub(channels[0]),
                tracker=startup_pb2_grpc.StartupTrackerStub(channels[1]),
                notifications=notifications_pb2_grpc.NotificationsStub(channels[2]),
                channels=channels)
            yield system
            for channel in channels:
                await channel.close()
        finally:
            await asyncio.gather(*(r.stop() for r in runtimes), return_exceptions=True)
