"""Wires the site registry: settings in, a runnable service out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.common import topics
from services.common.bootstrap import assemble, outbox_relay
from services.common.config import ServiceName, Settings
from services.common.database import create_engine
from services.common.lifecycle import ServiceRuntime
from services.common.outbox import OutboxRelay
from services.common.rpc.server import RpcServer, ServiceBinding
from services.common.rpc.tls import server_credentials
from services.common.tokens import token_service
from services.site_registry.adapters import tables
from services.site_registry.adapters.event_codec import RegistryEventCodec
from services.site_registry.adapters.unit_of_work import RegistrySqlUnitOfWork
from services.site_registry.entrypoints.grpc_api import SiteRegistryServicer
from services.site_registry.service_layer.handlers import SiteRegistryService
from sitenet.registry.v1 import registry_pb2_grpc

SERVICE = ServiceName.SITE_REGISTRY
MIGRATIONS = Path(__file__).parent / "adapters" / "migrations"


@dataclass
class SiteRegistryApp:
    runtime: ServiceRuntime
    server: RpcServer
    relay: OutboxRelay
    service: SiteRegistryService


def build(settings: Settings) -> SiteRegistryApp:
    engine = create_engine(settings.database_url(SERVICE))
    relay, publisher = outbox_relay(settings, SERVICE, engine, tables.outbox,
                                    tables.outbox_relay_lease)
    codec = RegistryEventCodec(settings.topic_prefix)
    service = SiteRegistryService(
        lambda: RegistrySqlUnitOfWork(engine, tables.outbox, codec, on_commit=relay.wake))
    tokens = token_service(settings)
    server = RpcServer(
        settings.address(SERVICE),
        [ServiceBinding("sitenet.registry.v1.SiteRegistry",
                        registry_pb2_grpc.add_SiteRegistryServicer_to_server,
                        SiteRegistryServicer(service))],
        tokens,
        server_credentials(settings),
    )
    runtime = assemble(settings=settings, service=SERVICE, engine=engine, migrations=MIGRATIONS,
                       topics=[topics.SITES], server=server, relay=relay, publisher=publisher)
    return SiteRegistryApp(runtime=runtime, server=server, relay=relay, service=service)
