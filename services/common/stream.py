"""Consuming our topics with faust-streaming: one place for the app settings that
the measurements in DESIGN.md call for, and for turning records into envelopes.

Handlers hold the logic; the faust agent only retries them. Processing is
at-least-once (faust's exactly-once mode has open bugs), so every handler must
be idempotent (see `services.common.inbox`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import faust
import structlog
from faust.transport.drivers import aiokafka as faust_aiokafka

from services.common.events import Envelope
from services.common.metrics import CONSUMER_LAG, EVENT_HANDLER_RETRIES, EVENTS_PROCESSED

log = structlog.get_logger(__name__)

EnvelopeHandler = Callable[[Envelope], Awaitable[None]]


class PoisonEvent(Exception):
    """An event that can never be processed (undecodable): logged and skipped, not retried."""


def _low_latency_transport(fetch_max_wait_ms: int) -> type[faust_aiokafka.Transport]:
    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            # faust hard-codes fetch_max_wait_ms=1500; latency is set by it
            # (p99 263 ms at 500 ms vs 16 ms at 20 ms, DESIGN decision 1).
            consumer._fetch_max_wait_ms = fetch_max_wait_ms
            return consumer

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport


class _App(faust.App):
    transport_class: type[faust_aiokafka.Transport]

    def _new_transport(self) -> Any:
        return self.transport_class(self.conf.broker_consumer, self)


class EventConsumer:
    """A faust app in this process that feeds each record of `topics` to `handler`."""

    def __init__(
        self,
        *,
        group_id: str,
        bootstrap: str,
        topics: Sequence[str],
        handler: EnvelopeHandler,
        data_dir: Path,
        session_timeout_s: float = 3.0,
        fetch_max_wait_ms: int = 20,
    ) -> None:
        self._handler = handler
        self._group_id = group_id
        self.processed_total = 0
        app = _App(
            group_id,
            broker=f"kafka://{bootstrap}",
            store="memory://",
            datadir=str(data_dir / "faust"),  # faust's own state; nothing durable lives there
            autodiscover=False,
            web_enabled=False,
            topic_allow_declare=False,  # topics come from the catalog, created by their owners
            topic_disable_leader=True,
            processing_guarantee="at_least_once",
            consumer_auto_offset_reset="earliest",
            broker_session_timeout=session_timeout_s,
            broker_heartbeat_interval=max(session_timeout_s / 6, 0.2),
            broker_commit_every=100,
            broker_commit_interval=0.5,
            stream_wait_empty=False,
        )
        app.transport_class = _low_latency_transport(fetch_max_wait_ms)
        self.app = app
        channel = app.topic(*topics, key_type=bytes, value_type=bytes,
                            key_serializer="raw", value_serializer="raw")

        async def agent(stream: Any) -> None:
            async for event in stream.events():
                message = event.message
                await self._process(
                    message.topic, message.key, message.value, list(message.headers or [])
                )
                self._record_lag(message.tp, message.offset)

        app.agent(channel, name=f"{group_id}.events")(agent)

    async def _process(self, topic: str, key: bytes | None, value: bytes | None,
                       headers: list[tuple[str, bytes]]) -> None:
        try:
            envelope = Envelope.from_record(topic, key, value, headers)
        except ValueError as exc:
            log.error("skipping record that is not a sitenet event", topic=topic, error=str(exc))
            EVENTS_PROCESSED.labels(self._group_id, topic, "skipped").inc()
            return
        delay = 0.1
        while True:
            try:
                await self._handler(envelope)
                self.processed_total += 1
                EVENTS_PROCESSED.labels(self._group_id, topic, "ok").inc()
                return
            except PoisonEvent as exc:
                log.error("skipping event that cannot be processed", event_id=envelope.id,
                          ce_type=envelope.type, error=str(exc))
                EVENTS_PROCESSED.labels(self._group_id, topic, "poison").inc()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database down, say: retry the same event, in order
                log.warning("event handler failed; retrying", event_id=envelope.id,
                            error=repr(exc), retry_in_s=delay)
                EVENT_HANDLER_RETRIES.labels(self._group_id, topic).inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _record_lag(self, tp: Any, offset: int) -> None:
        """Lag after this record: the partition's high watermark minus the next offset."""
        try:
            highwater = self.app.consumer.highwater(tp)
        except Exception:  # no fetch position yet: nothing to say
            return
        if highwater is None:
            return
        CONSUMER_LAG.labels(self._group_id, tp.topic, str(tp.partition)).set(
            max(int(highwater) - int(offset) - 1, 0))

    async def start(self) -> None:
        await self.app.start()

    async def stop(self) -> None:
        await self.app.stop()
