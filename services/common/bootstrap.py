"""Wiring shared by the three services: database, outbox relay, topics, consumer, gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.config import ServiceName, Settings
from services.common.database import migrate_async
from services.common.kafka import KafkaPublisher, ensure_topics
from services.common.lifecycle import ServiceRuntime
from services.common.metrics import MetricsEndpoint
from services.common.outbox import OutboxRelay
from services.common.rpc.server import RpcServer
from services.common.stream import EventConsumer
from services.common.topics import TopicSpec


def outbox_relay(settings: Settings, service: ServiceName, engine: AsyncEngine, outbox: Table,
                 lease: Table) -> tuple[OutboxRelay, KafkaPublisher]:
    publisher = KafkaPublisher(settings.bootstrap_servers, client_id=f"sitenet-{service.value}")
    relay = OutboxRelay(engine, outbox, lease, publisher,
                        poll_interval_s=settings.relay_poll_interval_s, service=service.value)
    return relay, publisher


def assemble(
    *,
    settings: Settings,
    service: ServiceName,
    engine: AsyncEngine,
    migrations: Path,
    topics: Sequence[TopicSpec],
    server: RpcServer,
    relay: OutboxRelay | None = None,
    publisher: KafkaPublisher | None = None,
    consumer: EventConsumer | None = None,
) -> ServiceRuntime:
    """The service's parts in start order; they stop in reverse."""
    runtime = ServiceRuntime(service.value)
    url = settings.database_url(service)

    async def no_op() -> None:
        return None

    if settings.metrics_port:  # first up, last down: scrapes see the whole start and stop
        metrics = MetricsEndpoint(settings.metrics_host or settings.host, settings.metrics_port)
        runtime.add(f"metrics on {metrics.host}:{metrics.port}", metrics.start, metrics.stop)

    runtime.add("database", lambda: migrate_async(url, migrations), engine.dispose)
    runtime.add(
        "topics",
        lambda: asyncio.to_thread(ensure_topics, settings.bootstrap_servers, topics,
                                  settings.topic_prefix,
                                  replication_factor=settings.topic_replication_factor),
        no_op,
    )
    if relay is not None:
        async def start_relay() -> None:
            relay.start()

        async def stop_relay() -> None:
            await relay.stop()
            if publisher is not None:
                await publisher.close()

        runtime.add("outbox relay", start_relay, stop_relay)
    if consumer is not None:
        runtime.add("event consumer", consumer.start, consumer.stop)
    runtime.add(f"gRPC on {server.address}", server.start, server.stop)
    return runtime
