"""Helpers of the fault tests: read every milestone event of a topic, the counts a
fault scenario prints (sent, acknowledged, stored, published, delivered), and a service
run as its own process (`sitenet serve`), to be killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaConsumer

from services.common.config import ServiceName, Settings
from services.common.events import Envelope
from sitenet.events.v1 import events_pb2
from tests.support.system import TEST_SECRET

MILESTONE_RECORDED = "sitenet.events.v1.MilestoneRecorded"
ROOT = Path(__file__).resolve().parents[2]

_PORT_AND_DATABASE = {ServiceName.SITE_REGISTRY: "REGISTRY",
                      ServiceName.STARTUP_TRACKER: "TRACKER",
                      ServiceName.NOTIFICATIONS: "NOTIFICATIONS"}


def service_env(settings: Settings, service: ServiceName, port: int, database_url: str,
                data_dir: Path) -> dict[str, str]:
    """The environment of `sitenet serve <service>` on `port` and `database_url`, on the
    broker, topics and key of `settings` (the test's own SITENET_* variables left out)."""
    name = _PORT_AND_DATABASE[service]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITENET_")}
    env.update({
        "SITENET_DATA_DIR": str(data_dir),
        "SITENET_KAFKA_BOOTSTRAP": settings.kafka_bootstrap or "",
        "SITENET_TOPIC_PREFIX": settings.topic_prefix,
        f"SITENET_{name}_PORT": str(port),
        f"SITENET_{name}_DATABASE_URL": database_url,
        "SITENET_JWT_SECRET": TEST_SECRET,
        "SITENET_RELAY_POLL_INTERVAL_S": "0.2",
        "SITENET_LOG_LEVEL": "WARNING",
    })
    return env


def start_service(service: ServiceName, env: dict[str, str],
                  log: Path) -> subprocess.Popen[bytes]:
    """`python -m services.cli.main serve <service>`, its output appended to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli.main", "serve", service.value],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def end_service(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (graceful stop) if it still runs; SIGKILL if that takes over 15 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


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
