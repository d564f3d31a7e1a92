"""Hand-made bearer tokens and a probe call, for the token tests."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import grpc
import jwt

from sitenet.registry.v1 import registry_pb2
from tests.support.system import TEST_SECRET, RunningSystem


def claims(**changes: Any) -> dict[str, Any]:
    """Good admin claims, with `changes` applied (None removes a claim)."""
    now = int(time.time())
    base: dict[str, Any] = {"iss": "sitenet", "aud": "sitenet", "sub": "tester", "iat": now,
                            "nbf": now, "exp": now + 600, "role": "admin"}
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def hs256(body: dict[str, Any], secret: str = TEST_SECRET, kid: str | None = None) -> str:
    return jwt.encode(body, secret, algorithm="HS256", headers={"kid": kid} if kid else None)


def unsigned(body: dict[str, Any]) -> str:
    """alg "none", built by hand so no library refuses to make it."""
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(body)}."


async def call(system: RunningSystem, token: str) -> grpc.StatusCode:
    """The status of one authenticated read on the registry."""
    try:
        await system.registry.ListSites(registry_pb2.ListSitesRequest(page_size=1),
                                        metadata=[("authorization", f"Bearer {token}")],
                                        timeout=10)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK
