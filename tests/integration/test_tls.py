"""TLS and mutual TLS on every service, turned on by certificate settings: who can connect
and who cannot, health probes included, and the CLI's channel following the settings."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.client import bearer, channel
from services.common.config import ServiceName, Settings
from sitenet.registry.v1 import registry_pb2, registry_pb2_grpc
from tests.support.pki import CertificateAuthority
from tests.support.system import TEST_SECRET, RunningSystem, running_system


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, CertificateAuthority]:
    directory = tmp_path_factory.mktemp("pki")
    return {"ours": CertificateAuthority(directory, "ours"),
            "theirs": CertificateAuthority(directory, "theirs")}


@pytest.fixture(scope="module")
async def tls(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory,
              pki: dict[str, CertificateAuthority]) -> AsyncIterator[RunningSystem]:
    server = pki["ours"].server()
    async with running_system("sqlite", kafka_bootstrap, tmp_path_factory.mktemp("tls"),
                              tls_cert_file=server.cert, tls_key_file=server.key,
                              tls_ca_file=pki["ours"].cert) as system:
        yield system


@pytest.fixture(scope="module")
async def mtls(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory,
               pki: dict[str, CertificateAuthority]) -> AsyncIterator[RunningSystem]:
    server, client = pki["ours"].server(), pki["ours"].client()
    async with running_system("sqlite", kafka_bootstrap, tmp_path_factory.mktemp("mtls"),
                              tls_cert_file=server.cert, tls_key_file=server.key,
                              tls_client_ca_file=pki["ours"].cert, tls_ca_file=pki["ours"].cert,
                              tls_client_cert_file=client.cert,
                              tls_client_key_file=client.key) as system:
        yield system


def target(system: RunningSystem) -> str:
    return f"127.0.0.1:{system.registry_app.server.port}"


def credentials(ca: Path, cert: Path | None = None, key: Path | None = None
                ) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=key.read_bytes() if key else None,
        certificate_chain=cert.read_bytes() if cert else None)


async def list_sites(system: RunningSystem, ch: grpc.aio.Channel) -> grpc.StatusCode:
    try:
        await registry_pb2_grpc.SiteRegistryStub(ch).ListSites(
            registry_pb2.ListSitesRequest(page_size=1), metadata=system.admin, timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def health(ch: grpc.aio.Channel) -> grpc.StatusCode:
    try:
        reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                           timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    return grpc.StatusCode.OK


async def test_tls_client_trusting_our_ca_is_served(tls: RunningSystem,
                                                    pki: dict[str, CertificateAuthority]) -> None:
    # The system's own clients come from the shared channel factory, over TLS here.
    await tls.registry.ListSites(registry_pb2.ListSitesRequest(page_size=1),
                                 metadata=tls.admin, timeout=10)
    async with grpc.aio.secure_channel(target(tls), credentials(pki["ours"].cert)) as ch:
        assert await list_sites(tls, ch) == grpc.StatusCode.OK
        assert await health(ch) == grpc.StatusCode.OK


async def test_tls_refuses_plaintext_and_clients_that_do_not_trust_the_server(
        tls: RunningSystem, pki: dict[str, CertificateAuthority]) -> None:
    async with grpc.aio.insecure_channel(target(tls)) as ch:
        assert await list_sites(tls, ch) == grpc.StatusCode.UNAVAILABLE
        assert await health(ch) == grpc.StatusCode.UNAVAILABLE
    async with grpc.aio.secure_channel(target(tls), credentials(pki["theirs"].cert)) as ch:
        assert await list_sites(tls, ch) == grpc.StatusCode.UNAVAILABLE


async def test_cli_channel_uses_tls_when_configured(tls: RunningSystem,
                                                    pki: dict[str, CertificateAuthority],
                                                    tmp_path: Path) -> None:
    def call(settings: Settings) -> grpc.StatusCode:
        with channel(settings, ServiceName.SITE_REGISTRY) as ch:
            try:
                registry_pb2_grpc.SiteRegistryStub(ch).ListSites(
                    registry_pb2.ListSitesRequest(page_size=1), metadata=bearer(settings),
                    timeout=10)
            except grpc.RpcError as error:
                return error.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    cli = Settings(data_dir=tmp_path, registry_port=tls.registry_app.server.port,
                   jwt_secret=TEST_SECRET)
    assert await asyncio.to_thread(call, cli) == grpc.StatusCode.UNAVAILABLE
    with_ca = cli.model_copy(update={"tls_ca_file": pki["ours"].cert})
    assert await asyncio.to_thread(call, with_ca) == grpc.StatusCode.OK


async def test_mtls_serves_only_clients_with_a_certificate_from_our_ca(
        mtls: RunningSystem, pki: dict[str, CertificateAuthority]) -> None:
    ours, theirs = pki["ours"], pki["theirs"]
    # The system's own clients present a certificate from our CA.
    await mtls.registry.ListSites(registry_pb2.ListSitesRequest(page_size=1),
                                  metadata=mtls.admin, timeout=10)
    good = ours.client("good-client")
    async with grpc.aio.secure_channel(target(mtls),
                                       credentials(ours.cert, good.cert, good.key)) as ch:
        assert await list_sites(mtls, ch) == grpc.StatusCode.OK
        assert await health(ch) == grpc.StatusCode.OK
    async with grpc.aio.secure_channel(target(mtls), credentials(ours.cert)) as ch:
        assert await list_sites(mtls, ch) == grpc.StatusCode.UNAVAILABLE
        assert await health(ch) == grpc.StatusCode.UNAVAILABLE
    stranger = theirs.client("stranger")
    async with grpc.aio.secure_channel(target(mtls),
                                       credentials(ours.cert, stranger.cert, stranger.key)) as ch:
        assert await list_sites(mtls, ch) == grpc.StatusCode.UNAVAILABLE
    async with grpc.aio.insecure_channel(target(mtls)) as ch:
        assert await list_sites(mtls, ch) == grpc.StatusCode.UNAVAILABLE


async def test_half_a_tls_configuration_is_refused_at_start_up(tmp_path: Path,
                                                              pki: dict[str, CertificateAuthority]
                                                              ) -> None:
    from services.common.rpc.tls import channel_credentials, server_credentials

    server = pki["ours"].server()
    with pytest.raises(ValueError, match="both"):
        server_credentials(Settings(data_dir=tmp_path, tls_cert_file=server.cert))
    with pytest.raises(ValueError, match="CLIENT_CA"):
        server_credentials(Settings(data_dir=tmp_path, tls_client_ca_file=pki["ours"].cert))
    with pytest.raises(ValueError, match="both"):
        channel_credentials(Settings(data_dir=tmp_path, tls_client_cert_file=server.cert))
