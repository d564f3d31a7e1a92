"""Helpers of the fault tests: read every milestone event of a topic, and the counts a
fault scenario prints (sent, acknowledged, stored, published, delivered)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from kafka import KafkaConsumer

from services.common.events import Envelope
from sitenet.events.v1 import events_pb2

MILESTONE_RECORDED = "sitenet.events.v1.MilestoneRecorded"


@dataclass
class Counts:
    sent: int = 0
    acknowledged: list[str] = field(default_factory=list)  # reasons of acknowledged writes
    failed: int = 0

    def report(self, name: str, **more: int) -> str:
        parts = {"sent": self.sent, "acknowledged": len(self.acknowledged),
                 "failed": self.failed, **more}
        line = f"[{name}] " + " ".join(f"{k}={v}" for k, v in parts.items())
        print(line)
        return line


def milestone_events(bootstrap: str, topic: str, subject_prefix: str, expected: int,
                     timeout_s: float = 30.0) -> list[tuple[str, str]]:
    """(event id, reason) of every MilestoneRecorded record under `subject_prefix`, duplicates
    included, read from the start until `expected` distinct ids have come (then a little
    longer, so that a duplicate would show)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, group_id=None, consumer_timeout_ms=1000,
                             fetch_max_wait_ms=50)
    found: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for record in consumer:
                envelope = Envelope.from_record(record.topic, record.key, record.value,
                                                list(record.headers))
                if envelope.type == MILESTONE_RECORDED and \
                        envelope.subject.startswith(subject_prefix):
                    event = events_pb2.MilestoneRecorded.FromString(envelope.data)
                    found.append((envelope.id, event.reason))
            if len({i for i, _ in found}) >= expected:
                break
        for record in consumer:  # a little longer: duplicates would arrive now
            envelope = Envelope.from_record(record.topic, record.key, record.value,
                                            list(record.headers))
            if envelope.type == MILESTONE_RECORDED and \
                    envelope.subject.startswith(subject_prefix):
                found.append((envelope.id,
                              events_pb2.MilestoneRecorded.FromString(envelope.data).reason))
    finally:
        consumer.close()
    return found
