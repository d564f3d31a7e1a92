"""Kafka with kafka-python: topic administration and the outbox relay's producer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence

import structlog
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from services.common.events import Envelope
from services.common.topics import TopicSpec

log = structlog.get_logger(__name__)


def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], prefix: str = "",
                  timeout_s: float = 30.0, replication_factor: int | None = None) -> None:
    """Create the catalog's topics that do not exist yet, with their partitions and config
    (and `replication_factor` replicas when given, as a real cluster wants)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="sitenet-admin",
                                     request_timeout_ms=10_000)
            break
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise
            log.info("waiting for the broker", bootstrap=bootstrap, error=str(exc))
            time.sleep(0.5)
    try:
        existing = set(admin.list_topics())
        for spec in specs:
            name = f"{prefix}{spec.name}"
            if name in existing:
                continue
            try:
                admin.create_topics([
                    NewTopic(name, spec.partitions,
                             replication_factor or spec.replication_factor,
                             topic_configs=dict(spec.config))
                ])
                log.info("created topic", topic=name, partitions=spec.partitions)
            except TopicAlreadyExistsError:
                pass  # another service created it first
    finally:
        admin.close()


class KafkaPublisher:
    """Idempotent producer with acks=all: `publish` returns once every event is on the broker.

    The producer is made on first use and remade after a failure, so a broker
    that is down when the service starts, or restarts later, only delays events.
    """

    def __init__(self, bootstrap: str, client_id: str) -> None:
        self._bootstrap = bootstrap
        self._client_id = client_id
        self._producer: KafkaProducer | None = None

    def _connect(self) -> KafkaProducer:
        if self._producer is None:
            self._producer = KafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                enable_idempotence=True,
                linger_ms=2,
                max_in_flight_requests_per_connection=5,
                request_timeout_ms=5_000,
                delivery_timeout_ms=10_000,
                max_block_ms=10_000,
                # Fail fast while the broker is away; the relay retries with backoff.
                bootstrap_timeout_ms=3_000,
            )
        return self._producer

    async def publish(self, events: Sequence[Envelope]) -> None:
        await asyncio.to_thread(self._send_all, events)

    def _send_all(self, events: Sequence[Envelope]) -> None:
        producer = self._connect()
        try:
            futures = [
                producer.send(e.topic, key=e.key.encode(), value=e.data, headers=e.headers())
                for e in events
            ]
            producer.flush(timeout=10)
            for future in futures:
                future.get(timeout=10)  # raises if the broker did not take it
        except Exception:
            # Start over with a fresh producer; the rows stay unpublished and are retried.
            self._close_quietly()
            raise

    def _close_quietly(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=1)
            except Exception as exc:  # already broken
                log.debug("closing a failed producer", error=str(exc))

    async def close(self) -> None:
        await asyncio.to_thread(self._close_quietly)
