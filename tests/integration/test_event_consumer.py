"""The consumer acknowledges a batch only once its handler is done with it: events of a
batch the service stopped in the middle of are delivered again, on the real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path

from services.common.events import Envelope
from services.common.kafka import KafkaPublisher, ensure_topics
from services.common.stream import EventConsumer
from services.common.topics import TopicSpec


async def test_a_batch_unfinished_when_the_consumer_stops_is_delivered_again(
        kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    topic, group = f"{prefix}.events", f"{prefix}.group"
    await asyncio.to_thread(ensure_topics, kafka_bootstrap, [TopicSpec(
        name=topic, owner="test", key="subject", partitions=1, config={}, event_types=(),
        description="")])
    sent = [Envelope(type="sitenet.events.v1.SiteRegistered", source="//test",
                     subject=f"sites/s{i}", topic=topic, key=f"s{i}", data=b"")
            for i in range(5)]
    publisher = KafkaPublisher(kafka_bootstrap, client_id="test")
    try:
        await publisher.publish(sent)
    finally:
        await publisher.close()

    handed: list[str] = []
    stuck = asyncio.Event()

    async def never_finishes(batch: Sequence[Envelope]) -> None:
        handed.extend(e.id for e in batch)
        stuck.set()
        await asyncio.Event().wait()  # the service stops before this batch is done

    first = EventConsumer(group_id=group, bootstrap=kafka_bootstrap, topics=[topic],
                          handler=never_finishes, data_dir=tmp_path / "first")
    await first.start()
    try:
        await asyncio.wait_for(stuck.wait(), timeout=30)
    finally:
        await first.stop()
    assert handed  # it had a batch in hand when it stopped

    seen: list[str] = []
    everything = asyncio.Event()

    async def finishes(batch: Sequence[Envelope]) -> None:
        seen.extend(e.id for e in batch)
        if {e.id for e in sent} <= set(seen):
            everything.set()

    second = EventConsumer(group_id=group, bootstrap=kafka_bootstrap, topics=[topic],
                           handler=finishes, data_dir=tmp_path / "second")
    await second.start()
    try:
        await asyncio.wait_for(everything.wait(), timeout=30)
    finally:
        await second.stop()
    assert set(handed) <= set(seen)  # nothing the first one was handed is skipped
