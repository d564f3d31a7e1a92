"""Prometheus metrics beyond the RPC ones (`rpc.interceptors`), and the HTTP endpoint
that serves them all when `SITENET_METRICS_PORT` is set.

Metric names carry a `service` label where several services may share one process
(tests, `sitenet run`), so their series never mix.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from threading import Thread
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, start_http_server

OUTBOX_BACKLOG = Gauge(
    "sitenet_outbox_backlog", "Committed outbox events not yet published", ["service"]
)
OUTBOX_PUBLISHED = Counter(
    "sitenet_outbox_published_total", "Outbox events published to Kafka", ["service"]
)
OUTBOX_FAILURES = Counter(
    "sitenet_outbox_relay_failures_total", "Relay batches that failed and will be retried",
    ["service"],
)
EVENTS_PROCESSED = Counter(
    "sitenet_events_processed_total", "Events consumed, by outcome (ok, skipped, poison)",
    ["group", "topic", "outcome"],
)
EVENT_HANDLER_RETRIES = Counter(
    "sitenet_event_handler_retries_total", "Handler failures retried (database down, say)",
    ["group", "topic"],
)
CONSUMER_LAG = Gauge(
    "sitenet_consumer_lag",
    "Records behind the partition's high watermark after the last processed record",
    ["group", "topic", "partition"],
)


@dataclass
class MetricsEndpoint:
    """`/metrics` over HTTP on a thread of its own (prometheus_client's server)."""

    host: str
    port: int
    _server: WSGIServer | None = field(default=None, init=False)
    _thread: Thread | None = field(default=None, init=False)

    @property
    def bound_port(self) -> int:
        return int(self._server.server_port) if self._server else 0

    async def start(self) -> None:
        self._server, self._thread = await asyncio.to_thread(
            start_http_server, self.port, self.host
        )

    async def stop(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        await asyncio.to_thread(server.shutdown)
        server.server_close()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)
