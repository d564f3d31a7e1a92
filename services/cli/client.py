"""How CLI commands reach the running services: address, token and errors, in one place.

The token comes from `--token`, else `SITENET_TOKEN`, else one is made for the
admin role with the data directory's key (the local development default).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
import typer
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.common.config import ServiceName, Settings
from services.common.errors import InvalidArgument
from services.common.identity import Role
from services.common.rpc.tls import channel_credentials, sync_channel
from services.common.tokens import token_service


def bearer(settings: Settings, token: str | None = None) -> list[tuple[str, str]]:
    value = token or os.environ.get("SITENET_TOKEN")
    if not value:
        try:
            value = token_service(settings).issue(Role.ADMIN, subject="cli")
        except InvalidArgument as exc:  # RS256 without a private key: the IdP must issue it
            typer.echo(f"error: {exc.message}; or pass --token / set SITENET_TOKEN", err=True)
            raise typer.Exit(2) from exc
    return [("authorization", f"Bearer {value}")]


@contextmanager
def channel(settings: Settings, service: ServiceName) -> Iterator[grpc.Channel]:
    # TLS when configured (SITENET_TLS_CA_FILE, client cert and key for mTLS).
    with sync_channel(settings.address(service), channel_credentials(settings)) as ch:
        yield ch


def explain(error: grpc.RpcError) -> str:
    """A gRPC error as a person should read it: code, message and each field or precondition."""
    lines = [f"{error.code().name}: {error.details()}"]
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        bad = error_details_pb2.BadRequest()
        failure = error_details_pb2.PreconditionFailure()
        if detail.Unpack(bad):
            lines += [f"  {v.field}: {v.description}" for v in bad.field_violations]
        elif detail.Unpack(failure):
            lines += [f"  {v.subject}: {v.description}" for v in failure.violations]
    return "\n".join(lines)


@contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn a failed call into a readable message and exit code 1, not a traceback."""
    try:
        yield
    except grpc.RpcError as error:
        typer.echo(explain(error), err=True)
        raise typer.Exit(1) from error
