"""The Prometheus endpoint: started by the shared bootstrap when SITENET_METRICS_PORT is
set, it serves the RPC, outbox and consumer metrics of the running service."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.common.config import ServiceName, Settings
from services.common.identity import Role
from services.common.metrics import MetricsEndpoint
from services.common.tokens import TokenService
from services.site_registry.bootstrap import build as build_registry
from sitenet.registry.v1 import registry_pb2, registry_pb2_grpc
from tests.support.ports import free_port
from tests.support.scenario import create_site, unique
from tests.support.system import TEST_SECRET, running_system


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text format, or None when absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


async def _scrape(port: int) -> str:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    return response.text


async def test_bootstrap_serves_metrics_when_the_port_is_set(kafka_bootstrap: str,
                                                            tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(data_dir=tmp_path, kafka_bootstrap=kafka_bootstrap,
                        topic_prefix=f"t{uuid.uuid4().hex[:10]}.", registry_port=0,
                        jwt_secret=TEST_SECRET, relay_poll_interval_s=0.2,
                        metrics_port=port)
    app = build_registry(settings)
    await app.runtime.start()
    try:
        text = await _scrape(port)
        assert "sitenet_rpc_requests_total" in text  # declared, even before the first call
        assert "sitenet_outbox_backlog" in text

        token = TokenService(TEST_SECRET, settings.jwt_issuer, settings.jwt_audience).issue(
            Role.ADMIN)
        site_id = unique("metrics")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{app.server.port}") as channel:
            stub = registry_pb2_grpc.SiteRegistryStub(channel)
            await stub.CreateSite(
                registry_pb2.CreateSiteRequest(
                    site_id=site_id,
                    site=registry_pb2.Site(display_name_en="Metrics Hospital", country_code="KR",
                                           region_code="KR-11", city="Seoul")),
                metadata=[("authorization", f"Bearer {token}")])

        method = "/sitenet.registry.v1.SiteRegistry/CreateSite"
        service = ServiceName.SITE_REGISTRY.value
        deadline = time.monotonic() + 10
        while True:
            text = await _scrape(port)
            published = _sample(text, "sitenet_outbox_published_total", service=service)
            if published or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert (_sample(text, "sitenet_rpc_requests_total", method=method, code="OK") or 0) >= 1
        assert (_sample(text, "sitenet_rpc_duration_seconds_count", method=method) or 0) >= 1
        assert (published or 0) >= 1
        assert _sample(text, "sitenet_outbox_backlog", service=service) is not None
    finally:
        await app.runtime.stop()
    # Stopped with the service: nothing listens any more.
    with pytest.raises(httpx.ConnectError):
        await _scrape(port)


async def test_consumed_events_are_counted(kafka_bootstrap: str, tmp_path: Path) -> None:
    endpoint = MetricsEndpoint("127.0.0.1", free_port())
    await endpoint.start()
    try:
        async with running_system("sqlite", kafka_bootstrap, tmp_path) as system:
            await create_site(system)
            group = system.settings.consumer_group(ServiceName.NOTIFICATIONS)
            topic = system.settings.topic("sitenet.registry.site.v1")
            deadline = time.monotonic() + 15
            processed = None
            while time.monotonic() < deadline:
                text = await _scrape(endpoint.port)
                processed = _sample(text, "sitenet_events_processed_total",
                                    group=group, topic=topic, outcome="ok")
                if processed:
                    break
                await asyncio.sleep(0.2)
            assert processed == 1
            lags = [sample.value for family in text_string_to_metric_families(text)
                    for sample in family.samples
                    if sample.name == "sitenet_consumer_lag"
                    and sample.labels.get("group") == group]
            assert lags, "the consumer lag gauge is set once a record is processed"
            assert all(lag >= 0 for lag in lags)
    finally:
        await endpoint.stop()
