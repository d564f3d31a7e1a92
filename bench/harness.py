"""What the benchmarks share: the system started as `sitenet run` starts it (embedded
broker, one process per service) on ports of the benchmark's own, and a gRPC client
with tokens of each role and the few calls that build a world of studies and sites.

Each benchmark picks its own ports, so two can run side by side.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from services.cli.system import System

Metadata = list[tuple[str, str]]
MILESTONE = "sitenet.events.v1.MilestoneRecorded"

# The local server of these machines (as the tests use); another can be named.
POSTGRES_ADMIN_DSN = os.environ.get("SITENET_TEST_POSTGRES_DSN",
                                    "postgresql://postgres@127.0.0.1:5432/postgres")


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


@contextmanager
def postgres_databases(services: Sequence[str], admin_dsn: str = POSTGRES_ADMIN_DSN
                       ) -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database per service (dropped afterwards): env var -> URL."""
    import asyncpg  # type: ignore[import-untyped]

    names = {s: f"sitenet_bench_{s.replace('-', '_')}_{uuid.uuid4().hex[:8]}" for s in services}

    async def each(statement: str) -> None:
        admin = await asyncpg.connect(admin_dsn)
        try:
            for name in names.values():
                await admin.execute(statement.format(name=name))
        finally:
            await admin.close()

    asyncio.run(each('CREATE DATABASE "{name}"'))
    base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    env = {"SITENET_" + {"site-registry": "REGISTRY", "startup-tracker": "TRACKER",
                         "notifications": "NOTIFICATIONS"}[s] + "_DATABASE_URL": f"{base}/{n}"
           for s, n in names.items()}
    try:
        yield env
    finally:
        asyncio.run(each('DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def running_system(ports: Mapping[str, str], prefix: str = "sitenet-bench-",
                   extra_env: Mapping[str, str] | None = None) -> Iterator[System]:
    """Broker and the three services as separate processes, on `ports` (SITENET_*_PORT),
    SQLite databases (unless `extra_env` names others) in a fresh temporary directory.
    Sets the environment of this process too, so Settings() here agrees with them."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ.update(ports)
    os.environ.update({"SITENET_DATA_DIR": str(data_dir), "SITENET_LOG_LEVEL": "WARNING"})
    os.environ.update(extra_env or {})
    os.environ.pop("SITENET_KAFKA_BOOTSTRAP", None)
    from services.cli.system import System
    from services.common.config import Settings

    system = System(Settings(), say=lambda text: print(text, file=sys.stderr))
    try:
        system.start()
        yield system
    finally:
        system.stop()


class Client:
    """Stubs of the three services on one channel each, and tokens for any role.
    Make it inside the running event loop (gRPC's aio channels bind to it)."""

    def __init__(self) -> None:
        from services.common.config import ServiceName, Settings
        from services.common.identity import Role
        from services.common.tokens import token_service
        from sitenet.notifications.v1 import notifications_pb2_grpc
        from sitenet.registry.v1 import registry_pb2_grpc
        from sitenet.startup.v1 import startup_pb2_grpc

        self.settings = Settings()
        self._tokens = token_service(self.settings)
        self._role = Role
        self.admin = self.metadata("admin", subject="bench")
        self.channels = [grpc.aio.insecure_channel(self.settings.address(s))
                         for s in ServiceName]
        self.registry = registry_pb2_grpc.SiteRegistryStub(self.channels[0])
        self.tracker = startup_pb2_grpc.StartupTrackerStub(self.channels[1])
        self.notifications = notifications_pb2_grpc.NotificationsStub(self.channels[2])

    def metadata(self, role: str, *, subject: str | None = None, org: str | None = None,
                 sites: Sequence[str] = (), ttl_s: int = 24 * 3600) -> Metadata:
        token = self._tokens.issue(self._role(role), subject=subject, org=org, sites=sites,
                                   ttl_s=ttl_s)
        return [("authorization", f"Bearer {token}")]

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    async def create_study(self, study_id: str, org: str, protocol: str,
                           title: str = "Benchmark") -> str:
        from sitenet.startup.v1 import startup_pb2

        study = await self.tracker.CreateStudy(startup_pb2.CreateStudyRequest(
            study_id=study_id, study=startup_pb2.Study(
                protocol_number=protocol, title=title, sponsor_org=org,
                phase=startup_pb2.PHASE_3, country_codes=["KR"])), metadata=self.admin)
        name: str = study.name
        return name

    async def create_site(self, site_id: str, number: int) -> str:
        from sitenet.registry.v1 import registry_pb2

        site = await self.registry.CreateSite(registry_pb2.CreateSiteRequest(
            site_id=site_id, site=registry_pb2.Site(
                display_name_en=f"Bench Hospital {number}",
                display_name_ko=f"벤치 병원 {number}",
                country_code="KR", region_code="KR-11", city="Seoul")), metadata=self.admin)
        name: str = site.name
        return name

    async def add_study_site(self, study: str, site: str) -> str:
        """Adds `site` (`sites/x`) to `study`, waiting for the tracker to learn of the site
        (it does by Kafka, a moment after the registry created it)."""
        from sitenet.startup.v1 import startup_pb2

        while True:
            try:
                added: Any = await self.tracker.AddStudySite(startup_pb2.AddStudySiteRequest(
                    parent=study, site=site), metadata=self.admin)
                name: str = added.name
                return name
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                await asyncio.sleep(0.1)


async def tap_milestones(settings: Any, seen: Callable[[Any, float], None]) -> None:
    """Calls seen(MilestoneRecorded, monotonic time) for each milestone event as it reaches
    the studies topic (until cancelled): splits the latency into the tracker's part
    (transaction, outbox relay) and the notification service's (consume, log, stream).
    Reads from the newest offset once its consumer has joined (a second or two)."""
    from aiokafka import AIOKafkaConsumer

    from services.common.topics import STUDIES
    from sitenet.events.v1 import events_pb2

    consumer = AIOKafkaConsumer(
        settings.topic(STUDIES.name), bootstrap_servers=settings.bootstrap_servers,
        group_id=f"bench.tap.{time.time_ns()}", auto_offset_reset="latest",
        fetch_max_wait_ms=20)
    await consumer.start()
    try:
        async for record in consumer:
            now = time.monotonic()
            if dict(record.headers).get("ce_type") != MILESTONE.encode():
                continue
            seen(events_pb2.MilestoneRecorded.FromString(record.value or b""), now)
    finally:
        await consumer.stop()
