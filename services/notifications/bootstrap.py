"""Wires the notification service: settings in, a runnable service out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

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
from services.notifications.adapters.event_codec import decode, encode_alert, facts_of
from services.notifications.adapters.unit_of_work import NotificationsSqlUnitOfWork
from services.notifications.adapters.webhook_sender import HttpxWebhookSender
from services.notifications.domain.webhooks import WebhookNetworks
from services.notifications.entrypoints.grpc_api import NotificationsServicer
from services.notifications.service_layer.handlers import IncomingEvent, NotificationsService
from services.notifications.service_layer.webhooks import RetryPolicy, WebhookWorker
from sitenet.notifications.v1 import notifications_pb2_grpc

log = structlog.get_logger(__name__)

SERVICE = ServiceName.NOTIFICATIONS
MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


@dataclass
class NotificationsApp:
    runtime: ServiceRuntime
    server: RpcServer
    consumer: EventConsumer
    service: NotificationsService
    webhooks: WebhookWorker


def build(settings: Settings) -> NotificationsApp:
    engine = create_engine(settings.database_url(SERVICE))

    def no_events(_event: object) -> list[Envelope]:
        return []

    def unit_of_work() -> NotificationsSqlUnitOfWork:
        return NotificationsSqlUnitOfWork(engine, tables.outbox, no_events)

    webhook_networks = WebhookNetworks.parse(settings.webhook_allowed_networks)
    service = NotificationsService(
        unit_of_work, encode_alert=encode_alert, webhook_networks=webhook_networks,
        blocked_after=dt.timedelta(seconds=settings.alert_blocked_after_s),
        study_wait_s=settings.subscription_study_wait_s)
    sender = HttpxWebhookSender(settings.webhook_timeout_s, webhook_networks)
    webhooks = WebhookWorker(
        unit_of_work, sender, service.deliveries_signal,
        RetryPolicy(max_attempts=settings.webhook_max_attempts,
                    base_s=settings.webhook_backoff_base_s, cap_s=settings.webhook_backoff_max_s,
                    timeout_s=settings.webhook_timeout_s),
        poll_interval_s=settings.webhook_poll_interval_s,
        concurrency=settings.webhook_concurrency)

    async def on_events(envelopes: Sequence[Envelope]) -> None:
        incoming = []
        for envelope in envelopes:
            message = decode(envelope.type, envelope.data)
            if message is None:
                continue  # a newer event type: nothing to tell yet
            incoming.append(IncomingEvent(envelope.id, envelope.subject, envelope.time,
                                          facts_of(envelope.type, message), envelope.data))
        await service.ingest_batch(incoming)

    consumer = EventConsumer(
        group_id=settings.consumer_group(SERVICE),
        bootstrap=settings.bootstrap_servers,
        data_dir=settings.data_dir,
        topics=[settings.topic(topics.SITES.name), settings.topic(topics.STUDIES.name)],
        handler=on_events,
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

    async def start_webhooks() -> None:
        webhooks.start()

    async def stop_webhooks() -> None:
        await webhooks.stop()
        await sender.close()

    # After the gRPC server: they stop first, before the database is disposed.
    runtime.add("webhook worker", start_webhooks, stop_webhooks)
    # The alerts of time passing (overdue, blocked too long).
    runtime.add_periodic("alert timer", service.check_alerts, settings.alert_check_interval_s)
    return NotificationsApp(runtime=runtime, server=server, consumer=consumer, service=service,
                            webhooks=webhooks)
