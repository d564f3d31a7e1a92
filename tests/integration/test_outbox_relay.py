"""The outbox under a broker outage: writes succeed, nothing is lost, nothing repeats."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from kafka import KafkaConsumer

from services.common import topics
from services.common.broker import EmbeddedBroker
from services.common.events import Envelope
from services.common.kafka import ensure_topics
from services.common.outbox import OutboxRelay
from sitenet.events.v1 import events_pb2
from tests.support.ports import free_port
from tests.support.scenario import create_site, eventually
from tests.support.system import running_system


async def _empty(relay: OutboxRelay) -> bool:
    return await relay.backlog() == 0


def _read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 20) -> list[Envelope]:
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None,
                             consumer_timeout_ms=1000)
    found: list[Envelope] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(found) < expected and time.monotonic() < deadline:
            for record in consumer:
                found.append(Envelope.from_record(record.topic, record.key, record.value,
                                                  list(record.headers)))
        # Read a little longer: a duplicate would show up now.
        for record in consumer:
            found.append(Envelope.from_record(record.topic, record.key, record.value,
                                              list(record.headers)))
    finally:
        consumer.close()
    return found


async def test_sites_registered_while_the_broker_is_down_arrive_after_it_returns(
        tmp_path: Path) -> None:
    port = free_port()
    broker = EmbeddedBroker("127.0.0.1", port, tmp_path / "broker.log")
    broker.start()
    try:
        async with running_system("sqlite", broker.bootstrap, tmp_path) as system:
            topic = system.settings.topic(topics.SITES.name)
            before = await create_site(system)
            relay = system.registry_app.relay
            await eventually(lambda: _empty(relay))
            broker.stop()
            during = [await create_site(system) for _ in range(3)]  # acknowledged writes
            await asyncio.sleep(1.0)
            assert await system.registry_app.relay.backlog() == 3

            # The broker returns (memory storage starts empty, so its topics are made
            # again, as a persistent broker would still have them).
            broker.start()
            await asyncio.to_thread(ensure_topics, broker.bootstrap, [topics.SITES],
                                    system.settings.topic_prefix)
            await eventually(lambda: _empty(relay), timeout_s=30)

            records = await asyncio.to_thread(_read_all, broker.bootstrap, topic, 3)
            names = [events_pb2.SiteRegistered.FromString(r.data).site.name for r in records]
            assert sorted(names) == sorted(s.name for s in during)
            assert len(set(r.id for r in records)) == len(records)  # no event published twice
            assert before.name not in names  # it went to the broker that was lost
            for record in records:
                assert record.type == "sitenet.events.v1.SiteRegistered"
                assert record.source == "//sitenet/site-registry"
                assert record.key == record.subject.removeprefix("sites/")
    finally:
        broker.stop()
