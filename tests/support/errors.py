"""Reading gRPC errors the way a client would: the code and the google.rpc details."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status


async def fails(call: Awaitable[Any], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """The error `call` ends in, which must have status `code`."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == code, caught.value.details()
    return caught.value


def _details(error: grpc.aio.AioRpcError) -> list[Any]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "no google.rpc.Status details"
    return list(status.details)


def field_violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """BadRequest field violations: field -> description."""
    out: dict[str, str] = {}
    for detail in _details(error):
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            out.update({v.field: v.description for v in bad.field_violations})
    return out


def precondition_violations(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    """PreconditionFailure violations: (type, subject), in order."""
    out: list[tuple[str, str]] = []
    for detail in _details(error):
        failure = error_details_pb2.PreconditionFailure()
        if detail.Unpack(failure):
            out += [(v.type, v.subject) for v in failure.violations]
    return out
