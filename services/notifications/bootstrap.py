"""Wires the notification service: settings in, a runnable service out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.common import topics
from services.common.bootstrap import assemble
from services.common.config import ServiceName, Settings
from services.common.database import create_engine
from services.common.events import Envelope
from services.common.lifecycle import ServiceRuntime
from services.common.rpc.server import RpcServer, ServiceBinding
from services.common.rpc.tls import server_credentials
from services.common.stream import EventConsumer
from services.common.tokens import token_service
from services.notifications.adapters import tables
from services.notifications.adapters.event_codec import decode, facts_of
from services.notifications.adapters.unit_of_work import NotificationsSqlUnitOfWork
from services.notifications.entrypoints.grpc_api import NotificationsServicer
from services.notifications.service_layer.handlers import NotificationsService
from sitenet.notifications.v1 import notifications_pb2_grpc

SERVICE = ServiceName.NOTIFICATIONS
MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


@dataclass
class NotificationsApp:
    runtime: ServiceRuntime
    server: RpcServer
    consumer: EventConsumer
    service: NotificationsService


def build(settings: Settings) -> NotificationsApp:
    engine = create_engine(settings.database_url(SERVICE))

    def no_events(_event: object) -> list[Envelope]:
        return []

    service = NotificationsService(
        lambda: NotificationsSqlUnitOfWork(engine, tables.outbox, no_events))

    async def on_event(envelope: Envelope) -> None:
        message = decode(envelope.type, envelope.data)
        if message is None:
            return  # a newer event type: nothing to tell yet
        await service.ingest(envelope.id, envelope.subject, envelope.time,
                             facts_of(envelope.type, message), envelope.data)

    consumer = EventConsumer(
        group_id=settings.consumer_group(SERVICE),
        bootstrap=settings.bootstrap_servers,
        data_dir=settings.data_dir,
        topics=[settings.topic(topics.SITES.name), settings.topic(topics.STUDIES.name)],
        handler=on_event,
        session_timeout_s=settings.kafka_session_timeout_s,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    tokens = token_service(settings)
    server = RpcServer(
        settings.address(SERVICE),
        [ServiceBinding("sitenet.notifications.v1.Notifications",
                        notifications_pb2_grpc.add_NotificationsServicer_to_server,
                        NotificationsServicer(service))],
        tokens,
        server_credentials(settings),
    )
    runtime = assemble(settings=settings, service=SERVICE, engine=engine, migrations=MIGRATIONS,
                       topics=[topics.SITES, topics.STUDIES], server=server, consumer=consumer)
    return NotificationsApp(runtime=runtime, server=server, consumer=consumer, service=service)
