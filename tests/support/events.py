"""Read a topic from the start, as any consumer would, to check what was published."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from kafka import KafkaConsumer, TopicPartition

from services.common import topics
from tests.support.system import RunningSystem


@dataclass(frozen=True)
class Record:
    key: str
    ce_type: str
    subject: str
    value: bytes


def _read(bootstrap: str, topic: str, done: Callable[[list[Record]], bool],
          timeout_s: float) -> list[Record]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, fetch_max_wait_ms=50)
    try:
        partitions = [TopicPartition(topic, p)
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not done(records):
            for batch in consumer.poll(timeout_ms=200).values():
                for r in batch:
                    headers = {k: v.decode() for k, v in r.headers}
                    records.append(Record(r.key.decode() if r.key else "",
                                          headers.get("ce_type", ""),
                                          headers.get("ce_subject", ""), r.value))
        return records
    finally:
        consumer.close()


async def read_topic(bootstrap: str, topic: str, done: Callable[[list[Record]], bool],
                     timeout_s: float = 10.0) -> list[Record]:
    """Records of `topic` until `done(records)` holds or the time is up."""
    return await asyncio.to_thread(_read, bootstrap, topic, done, timeout_s)


async def site_events(system: RunningSystem, site_id: str, count: int,
                      timeout_s: float = 10.0) -> list[tuple[str, bytes]]:
    """(ce_type, value) of at least `count` events keyed by `site_id` on the registry's topic,
    in order, or as many as arrived before the timeout."""
    topic = system.settings.topic(topics.SITES.name)

    def enough(records: list[Record]) -> bool:
        return sum(r.key == site_id for r in records) >= count

    records = await read_topic(system.settings.kafka_bootstrap or "", topic, enough, timeout_s)
    return [(r.ce_type, r.value) for r in records if r.key == site_id]
