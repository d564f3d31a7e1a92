"""Reading what really reached the broker: records of a topic, by key."""

from __future__ import annotations

import asyncio
import time

from kafka import KafkaConsumer, TopicPartition

from tests.support.system import RunningSystem


def _read(bootstrap: str, topic: str, key: bytes, count: int, timeout_s: float
          ) -> list[tuple[str, bytes]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             fetch_max_wait_ms=50, consumer_timeout_ms=200)
    try:
        deadline = time.monotonic() + timeout_s
        partitions: set[int] = set()
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic) or set()
        assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        found: list[tuple[str, bytes]] = []
        while len(found) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                for record in batch:
                    if record.key == key:
                        headers = dict(record.headers)
                        found.append((headers["ce_type"].decode(), record.value))
        return found
    finally:
        consumer.close()


async def site_events(system: RunningSystem, site_id: str, count: int,
                      timeout_s: float = 10.0) -> list[tuple[str, bytes]]:
    """At least `count` events keyed by `site_id` on the registry's topic (in order), or
    as many as arrived before the timeout."""
    topic = f"{system.settings.topic_prefix}sitenet.registry.site.v1"
    return await asyncio.to_thread(_read, system.settings.kafka_bootstrap or "", topic,
                                   site_id.encode(), count, timeout_s)
