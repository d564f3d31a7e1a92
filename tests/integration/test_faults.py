"""Faults: the broker stopped while milestones are recorded, the tracker killed with SIGKILL
mid-write and mid-relay, and the database's connections cut under load. Each scenario
prints its counts (sent, acknowledged, stored, published, delivered):

    .venv/bin/pytest -s tests/integration/test_faults.py

SITENET_FAULT_OUTAGE_S sets how long the broker stays down (5 s here; 30 s is the
issue's figure: SITENET_FAULT_OUTAGE_S=30).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import grpc
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from services.common import topics
from services.common.broker import EmbeddedBroker
from services.common.config import Settings
from services.common.identity import Role
from services.common.kafka import ensure_topics
from services.common.rpc.tls import aio_channel
from services.common.tokens import TokenService
from services.site_registry.bootstrap import build as build_registry
from sitenet.registry.v1 import registry_pb2 as rpb
from sitenet.registry.v1 import registry_pb2_grpc
from sitenet.startup.v1 import startup_pb2 as spb
from sitenet.startup.v1 import startup_pb2_grpc
from tests.conftest import free_port
from tests.support.databases import POSTGRES_ADMIN_DSN
from tests.support.faults import Counts, milestone_events
from tests.support.scenario import add_study_site, create_site, create_study, day, eventually
from tests.support.system import TEST_SECRET, running_system

OUTAGE_S = float(os.environ.get("SITENET_FAULT_OUTAGE_S", "5"))
ROOT = Path(__file__).resolve().parents[2]


def _milestone(study_site: str, reason: str) -> spb.RecordMilestoneRequest:
    # The same milestone again and again, each time with its own reason: every write is a
    # change with its own history entry and its own event.
    return spb.RecordMilestoneRequest(study_site=study_site, milestone="site-selected",
                                      status=spb.DONE, actual_date=day("2026-01-05"),
                                      note=reason, reason=reason)


# --- a. the broker stopped while milestones keep being recorded ---------------------------

async def test_milestones_recorded_while_the_broker_is_down_are_delivered_once(
        tmp_path: Path) -> None:
    broker = EmbeddedBroker("127.0.0.1", free_port(), tmp_path / "broker.log")
    broker.start()
    try:
        async with running_system("sqlite", broker.bootstrap, tmp_path) as system:
            site = await create_site(system)
            study = await create_study(system)
            ss = await add_study_site(system, study.name, site.name)
            relay = system.tracker_app.relay
            published_before = relay.published_total

            async def drained() -> bool:
                return await relay.backlog() == 0

            await eventually(drained)
            counts = Counts()
            broker.stop()
            stop_at = time.monotonic() + OUTAGE_S
            while time.monotonic() < stop_at:  # the writes go on, and succeed
                reason = f"down-{counts.sent}"
                counts.sent += 1
                await system.tracker.RecordMilestone(_milestone(ss.name, reason),
                                                     metadata=system.admin, timeout=10)
                counts.acknowledged.append(reason)
                await asyncio.sleep(0.05)
            assert await relay.backlog() == len(counts.acknowledged)  # held in the outbox

            # Back (empty: memory storage; a persistent broker would still have its topics).
            broker.start()
            await asyncio.to_thread(ensure_topics, broker.bootstrap, topics.CATALOG,
                                    system.settings.topic_prefix)
            for i in range(5):  # and writes after it returned
                reason = f"after-{i}"
                counts.sent += 1
                await system.tracker.RecordMilestone(_milestone(ss.name, reason),
                                                     metadata=system.admin)
                counts.acknowledged.append(reason)
            await eventually(drained, timeout_s=60)

            history = await system.tracker.ListMilestoneHistory(
                spb.ListMilestoneHistoryRequest(parent=ss.name, page_size=1000),
                metadata=system.admin)
            stored = [json.loads(e.after_json)["note"] for e in history.entries
                      if e.milestone != "study-site"]
            events = await asyncio.to_thread(
                milestone_events, broker.bootstrap,
                system.settings.topic(topics.STUDIES.name), f"{study.name}/",
                len(counts.acknowledged))
            ids = {i for i, _ in events}
            counts.report("broker-outage", outage_s=int(OUTAGE_S), stored=len(stored),
                          published=relay.published_total - published_before,
                          delivered=len(events), distinct=len(ids))
            assert counts.acknowledged and stored == counts.acknowledged
            assert sorted(r for _, r in events) == sorted(counts.acknowledged)  # none lost
            assert len(ids) == len(events)  # none published twice
    finally:
        broker.stop()


# --- b. the tracker killed with SIGKILL mid-write and mid-relay ---------------------------

def _tracker_env(settings: Settings, port: int, database: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITENET_")}
    env.update({
        "SITENET_DATA_DIR": str(database.parent),
        "SITENET_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "SITENET_TOPIC_PREFIX": settings.topic_prefix,
        "SITENET_TRACKER_PORT": str(port),
        "SITENET_TRACKER_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
        "SITENET_JWT_SECRET": TEST_SECRET,
        "SITENET_RELAY_POLL_INTERVAL_S": "0.2",
        "SITENET_LOG_LEVEL": "WARNING",
    })
    return env


def _start_tracker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "serve", "startup-tracker"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


async def _ready(stub: startup_pb2_grpc.StartupTrackerStub, auth: list[tuple[str, str]],
                 timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await stub.ListStudies(spb.ListStudiesRequest(page_size=1), metadata=auth,
                                   timeout=2)
            return
        except grpc.aio.AioRpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _add_when_replicated(stub: startup_pb2_grpc.StartupTrackerStub,
                               auth: list[tuple[str, str]], study: str, site: str) -> str:
    deadline = time.monotonic() + 30
    while True:
        try:
            return (await stub.AddStudySite(spb.AddStudySiteRequest(parent=study, site=site),
                                            metadata=auth)).name
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_a_tracker_killed_mid_write_loses_nothing_acknowledged(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, kafka_bootstrap=kafka_bootstrap,
                        topic_prefix=f"t{os.urandom(5).hex()}.", registry_port=0,
                        registry_database_url=f"sqlite+aiosqlite:///{tmp_path / 'reg.db'}",
                        jwt_secret=TEST_SECRET, relay_poll_interval_s=0.2)
    registry = build_registry(settings)
    await registry.runtime.start()
    port = free_port()
    database = tmp_path / "tracker.db"
    env = _tracker_env(settings, port, database)
    log = tmp_path / "tracker.log"
    process = _start_tracker(env, log)
    channel = aio_channel(f"127.0.0.1:{port}", None)
    stub = startup_pb2_grpc.StartupTrackerStub(channel)
    auth = [("authorization", "Bearer " + TokenService(TEST_SECRET, "sitenet", "sitenet")
             .issue(Role.ADMIN, subject="writer"))]
    try:
        await _ready(stub, auth)
        registry_stub = registry_pb2_grpc.SiteRegistryStub(
            aio_channel(f"127.0.0.1:{registry.server.port}", None))
        study = (await stub.CreateStudy(spb.CreateStudyRequest(study_id="killed", study=spb.Study(
            protocol_number="K-1", title="Killed", sponsor_org="acme", phase=spb.PHASE_2,
            country_codes=["KR"])), metadata=auth)).name
        study_sites = []
        for n in range(3):
            site = await registry_stub.CreateSite(rpb.CreateSiteRequest(
                site_id=f"kill-{n}", site=rpb.Site(display_name_en=f"Kill {n}",
                                                   country_code="KR", region_code="KR-11",
                                                   city="Seoul")), metadata=auth)
            study_sites.append(await _add_when_replicated(stub, auth, study, site.name))

        counts = Counts()
        stop = asyncio.Event()

        async def writer(ss: str, w: int) -> None:
            i = 0
            while not stop.is_set():
                reason = f"w{w}-{i}"
                i += 1
                counts.sent += 1
                try:
                    await stub.RecordMilestone(_milestone(ss, reason), metadata=auth,
                                               timeout=5)
                except grpc.aio.AioRpcError as error:
                    assert error.code() in (grpc.StatusCode.UNAVAILABLE,
                                            grpc.StatusCode.DEADLINE_EXCEEDED,
                                            grpc.StatusCode.CANCELLED), error
                    counts.failed += 1
                    return  # the service is gone
                counts.acknowledged.append(reason)

        writers = [asyncio.create_task(writer(ss, w)) for w, ss in enumerate(study_sites)]
        await asyncio.sleep(2.0)  # writes and relaying under way
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        stop.set()
        await asyncio.gather(*writers)
        assert len(counts.acknowledged) > 10

        # Restart on the same database.
        process = _start_tracker(env, log)
        await _ready(stub, auth)
        stored: list[str] = []
        for ss in study_sites:
            history = await stub.ListMilestoneHistory(
                spb.ListMilestoneHistoryRequest(parent=ss, page_size=1000), metadata=auth)
            stored += [e.reason for e in history.entries if e.milestone != "study-site"]
        assert set(counts.acknowledged) <= set(stored)  # nothing acknowledged is missing
        assert len(stored) == len(set(stored))
        assert len(stored) - len(counts.acknowledged) <= len(study_sites)  # in flight at kill

        engine = create_async_engine(f"sqlite+aiosqlite:///{database}")

        async def drained() -> bool:
            async with engine.connect() as conn:
                left = (await conn.execute(text(
                    "SELECT count(*) FROM outbox WHERE published_at IS NULL"))).scalar_one()
            return int(left) == 0

        await eventually(drained, timeout_s=60)
        await engine.dispose()
        events = await asyncio.to_thread(
            milestone_events, kafka_bootstrap, settings.topic(topics.STUDIES.name),
            f"{study}/", len(stored))
        distinct = {i: r for i, r in events}
        counts.report("tracker-sigkill", stored=len(stored), published=len(events),
                      distinct=len(distinct), duplicates=len(events) - len(distinct))
        # A consumer that dedupes by event id sees every stored change exactly once.
        assert sorted(distinct.values()) == sorted(stored)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        await channel.close()
        await registry.runtime.stop()


# --- c. the database's connections cut under load (PostgreSQL, without a restart) --------

@pytest.mark.postgres
async def test_cut_database_connections_fail_cleanly_and_recover(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    async with running_system("postgres", kafka_bootstrap, tmp_path) as system:
        site = await create_site(system)
        study = await create_study(system)
        ss = await add_study_site(system, study.name, site.name)
        database = (system.settings.tracker_database_url or "").rsplit("/", 1)[1]
        codes: dict[str, int] = {}
        stop = asyncio.Event()
        counts = Counts()

        async def load(w: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                counts.sent += 1
                try:
                    if i % 2:
                        await system.tracker.RecordMilestone(
                            _milestone(ss.name, f"pg{w}-{i}"), metadata=system.admin,
                            timeout=10)
                        counts.acknowledged.append(f"pg{w}-{i}")
                    else:
                        await system.tracker.GetStudySite(spb.GetStudySiteRequest(
                            name=ss.name), metadata=system.admin, timeout=10)
                    codes["OK"] = codes.get("OK", 0) + 1
                except grpc.aio.AioRpcError as error:
                    codes[error.code().name] = codes.get(error.code().name, 0) + 1
                    counts.failed += 1

        tasks = [asyncio.create_task(load(w)) for w in range(4)]
        admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
        terminated = 0
        try:
            for _ in range(5):
                await asyncio.sleep(0.4)
                terminated += len(await admin.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = $1 AND pid <> pg_backend_pid()", database))
        finally:
            await admin.close()
        await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*tasks)
        counts.report("postgres-connections-cut", terminated=terminated, **{
            k.lower(): v for k, v in codes.items()})
        assert terminated > 0
        # Refusals are UNAVAILABLE (retry) or ABORTED (a concurrent writer won), never
        # INTERNAL or UNKNOWN.
        assert set(codes) <= {"OK", "UNAVAILABLE", "ABORTED"}, codes

        # And then, without a restart, calls succeed again; every acknowledged write is there.
        for i in range(5):
            await system.tracker.RecordMilestone(_milestone(ss.name, f"after-{i}"),
                                                 metadata=system.admin, timeout=10)
        history = await system.tracker.ListMilestoneHistory(
            spb.ListMilestoneHistoryRequest(parent=ss.name, page_size=1000),
            metadata=system.admin)
        assert set(counts.acknowledged) <= {e.reason for e in history.entries}
