"""Wires the start-up tracker: settings in, a runnable service out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import structlog

from services.common import topics
from services.common.bootstrap import assemble, outbox_relay
from services.common.config import ServiceName, Settings
from services.common.database import create_engine
from services.common.events import Envelope
from services.common.lifecycle import ServiceRuntime
from services.common.outbox import OutboxRelay
from services.common.rpc.server import RpcServer, ServiceBinding
from services.common.rpc.tls import server_credentials
from services.common.stream import EventConsumer, one_at_a_time
from services.common.tokens import token_service
from services.startup_tracker.adapters import tables
from services.startup_tracker.adapters.event_codec import TrackerEventCodec, site_replica_from
from services.startup_tracker.adapters.unit_of_work import TrackerSqlUnitOfWork
from services.startup_tracker.entrypoints.grpc_api import StartupTrackerServicer
from services.startup_tracker.service_layer.handlers import StartupTrackerService
from sitenet.startup.v1 import startup_pb2_grpc

SERVICE = ServiceName.STARTUP_TRACKER
log = structlog.get_logger(__name__)
MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


@dataclass
class StartupTrackerApp:
    runtime: ServiceRuntime
    server: RpcServer
    relay: OutboxRelay
    consumer: EventConsumer
    service: StartupTrackerService


def build(settings: Settings) -> StartupTrackerApp:
    engine = create_engine(settings.database_url(SERVICE))
    relay, publisher = outbox_relay(settings, SERVICE, engine, tables.outbox,
                                    tables.outbox_relay_lease)
    codec = TrackerEventCodec(settings.topic_prefix)
    service = StartupTrackerService(
        lambda: TrackerSqlUnitOfWork(engine, tables.outbox, codec, on_commit=relay.wake))

    async def on_registry_event(envelope: Envelope) -> None:
        replica = site_replica_from(envelope.type, envelope.data)
        if replica is not None:
            await service.apply_site(envelope.id, envelope.type, replica)

    consumer = EventConsumer(
        group_id=settings.consumer_group(SERVICE),
        bootstrap=settings.bootstrap_servers,
        data_dir=settings.data_dir,
        topics=[settings.topic(topics.SITES.name)],
        handler=one_at_a_time(on_registry_event),
        session_timeout_s=settings.kafka_session_timeout_s,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )
    tokens = token_service(settings)
    server = RpcServer(
        settings.address(SERVICE),
        [ServiceBinding("sitenet.startup.v1.StartupTracker",
                        startup_pb2_grpc.add_StartupTrackerServicer_to_server,
                        StartupTrackerServicer(service))],
        tokens,
        server_credentials(settings),
    )
    # The tracker creates the topic it writes, and the registry's (it reads it from the start).
    runtime = assemble(settings=settings, service=SERVICE, engine=engine, migrations=MIGRATIONS,
                       topics=[topics.STUDIES, topics.SITES], server=server, relay=relay,
                       publisher=publisher, consumer=consumer)
    # Document reminders, and the greenlight withdrawn when a required document expires
    # (each reminder once).
    runtime.add_periodic(
        "document-check",
        lambda: service.check_documents(settings.document_expiry_warning_days,
                                        settings.document_outstanding_days),
        settings.document_check_interval_s)
    return StartupTrackerApp(runtime=runtime, server=server, relay=relay, consumer=consumer,
                             service=service)
