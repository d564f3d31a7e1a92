"""TLS for gRPC from the settings, in one place: server credentials for the three services,
channel credentials for the CLI and the tests. No certificate configured means plaintext,
which is the loopback default."""

from __future__ import annotations

from pathlib import Path

import grpc

from services.common.config import Settings


def _pair(cert: Path | None, key: Path | None, what: str) -> tuple[bytes, bytes] | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        # Half a configuration must not quietly fall back to plaintext.
        raise ValueError(f"{what}: set both the certificate and the key file, or neither")
    return cert.read_bytes(), key.read_bytes()


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS when SITENET_TLS_CERT_FILE/_KEY_FILE are set; mutual TLS when
    SITENET_TLS_CLIENT_CA_FILE is set too (a client without a certificate it signed
    cannot even connect)."""
    pair = _pair(settings.tls_cert_file, settings.tls_key_file,
                 "SITENET_TLS_CERT_FILE/SITENET_TLS_KEY_FILE")
    if pair is None:
        if settings.tls_client_ca_file is not None:
            raise ValueError("SITENET_TLS_CLIENT_CA_FILE needs SITENET_TLS_CERT_FILE and _KEY_FILE")
        return None
    cert, key = pair
    client_ca = (settings.tls_client_ca_file.read_bytes()
                 if settings.tls_client_ca_file is not None else None)
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS when a trust root (SITENET_TLS_CA_FILE) or a server or client certificate is
    configured: the same environment as the servers gets a client that can reach them."""
    client = _pair(settings.tls_client_cert_file, settings.tls_client_key_file,
                   "SITENET_TLS_CLIENT_CERT_FILE/SITENET_TLS_CLIENT_KEY_FILE")
    if settings.tls_ca_file is None and settings.tls_cert_file is None and client is None:
        return None
    roots = settings.tls_ca_file.read_bytes() if settings.tls_ca_file is not None else None
    cert, key = client if client is not None else (None, None)
    return grpc.ssl_channel_credentials(root_certificates=roots, private_key=key,
                                        certificate_chain=cert)


def sync_channel(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, credentials)


def aio_channel(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    if credentials is None:
        return grpc.aio.insecure_channel(target)
    return grpc.aio.secure_channel(target, credentials)
