"""Consuming our topics with faust-streaming: one place for the app settings that
the measurements in DESIGN.md call for, and for turning records into envelopes.

Handlers hold the logic; the faust agent only retries them. Records come in
batches (what has arrived, up to `BATCH_MAX`), so a handler may take many in one
transaction; offsets are acknowledged only after the handler returns. Processing
is at-least-once (faust's exactly-once mode has open bugs), so every handler must
be idempotent (see `services.common.inbox`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import faust
import structlog
from faust.transport.drivers import aiokafka as faust_aiokafka

from services.common.events import Envelope
from services.common.metrics import CONSUMER_LAG, EVENT_HANDLER_RETRIES, EVENTS_PROCESSED

log = structlog.get_logger(__name__)

EnvelopeHandler = Callable[[Envelope], Awaitable[None]]
BatchHandler = Callable[[Sequence[Envelope]], Awaitable[None]]

# A batch is at most this many records.
BATCH_MAX = 200


def one_at_a_time(handler: EnvelopeHandler) -> BatchHandler:
    """For a handler that takes each event on its own."""
    async def each(envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            await handler(envelope)
    return each


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


async def take_available(stream: Any, max_: int) -> AsyncIterator[list[Any]]:
    """The events of a faust stream in batches: what has arrived by the time the last
    batch is done, up to `max_`, acknowledged after the caller is done with the batch.

    faust's own `Stream.take_events` waits a fixed `within` for every batch, even one
    event, and wakes that often when idle: at 5 ms that was 9% of the notification
    service's CPU, and at 20 ms it would add 10 ms to every notification. This is that
    method (faust-streaming 0.15, pinned) with the timer replaced by "take what the
    consumer has already fetched": a batch grows with the load and waits for nothing.
    """
    events: list[Any] = []
    arrived = asyncio.Event()
    room = asyncio.Event()  # clear while the caller has a batch: the next one waits
    room.set()

    async def add(value: Any) -> Any:
        try:
            while not room.is_set() or len(events) >= max_:
                await room.wait()
            event = stream.current_event
            if event is None:
                raise RuntimeError("take_available found no current event")
            events.append(event)
            arrived.set()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await stream.crash(exc)
        return value

    acks = stream.enable_acks
    stream.enable_acks = False  # acked below, once the batch is done
    stream.add_processor(add)
    stream._enable_passive(aiter(stream.channel))
    try:
        while not stream.should_stop:
            await stream.wait_for_stopped(arrived)
            if not events:
                continue
            # Let the consumer hand over what it has already fetched: one turn of the
            # loop at a time, for as long as the batch keeps growing.
            size = 0
            while size != len(events) < max_:
                size = len(events)
                await asyncio.sleep(0)
            room.clear()
            batch = list(events)
            yield batch
            # Only here, when the caller asks for the next batch, is it done with this
            # one. A caller that stops mid-batch (an error, the service stopping) closes
            # this generator at the yield instead, and the batch stays unacknowledged,
            # to be delivered again. (faust's take_events acks it in a `finally`.)
            events.clear()
            arrived.clear()
            for event in batch:
                await stream.ack(event)
            room.set()
    finally:
        stream.enable_acks = acks
        stream._processors.remove(add)


class _App(faust.App):
    transport_class: type[faust_aiokafka.Transport]

    def _new_transport(self) -> Any:
        return self.transport_class(self.conf.broker_consumer, self)


class EventConsumer:
    """A faust app in this process that feeds the records of `topics` to `handler`,
    a batch at a time, in order within each partition."""

    def __init__(
        self,
        *,
        group_id: str,
        bootstrap: str,
        topics: Sequence[str],
        handler: BatchHandler,
        data_dir: Path,
        session_timeout_s: float = 3.0,
        fetch_max_wait_ms: int = 20,
    ) -> None:
        self._handler = handler
        self._group_id = group_id
        self.processed_total = 0
        # faust makes its directory without parents; a fresh data dir has none yet.
        (data_dir / "faust").mkdir(parents=True, exist_ok=True)
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
            async for events in take_available(stream, BATCH_MAX):
                await self._process([event.message for event in events])
                for event in events:
                    self._record_lag(event.message.tp, event.message.offset)

        app.agent(channel, name=f"{group_id}.events")(agent)

    async def _process(self, messages: Iterable[Any]) -> None:
        envelopes: list[Envelope] = []
        for message in messages:
            try:
                envelopes.append(Envelope.from_record(message.topic, message.key, message.value,
                                                      list(message.headers or [])))
            except ValueError as exc:
                log.error("skipping record that is not a sitenet event", topic=message.topic,
                          error=str(exc))
                EVENTS_PROCESSED.labels(self._group_id, message.topic, "skipped").inc()
        if envelopes:
            await self._handle(envelopes)

    async def _handle(self, envelopes: Sequence[Envelope]) -> None:
        delay = 0.1
        while True:
            try:
                await self._handler(envelopes)
                self.processed_total += len(envelopes)
                for envelope in envelopes:
                    EVENTS_PROCESSED.labels(self._group_id, envelope.topic, "ok").inc()
                return
            except PoisonEvent as exc:
                if len(envelopes) > 1:
                    # Find it: the others go through one by one (handlers are idempotent).
                    for envelope in envelopes:
                        await self._handle([envelope])
                    return
                log.error("skipping event that cannot be processed", event_id=envelopes[0].id,
                          ce_type=envelopes[0].type, error=str(exc))
                EVENTS_PROCESSED.labels(self._group_id, envelopes[0].topic, "poison").inc()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database down, say: retry the same events, in order
                log.warning("event handler failed; retrying", event_id=envelopes[0].id,
                            events=len(envelopes), error=repr(exc), retry_in_s=delay)
                for envelope in envelopes:
                    EVENT_HANDLER_RETRIES.labels(self._group_id, envelope.topic).inc()
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
