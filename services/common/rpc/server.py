"""Serving a sitenet service: the servicers plus health, reflection and graceful stop."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.common.rpc.interceptors import ServiceInterceptor
from services.common.tokens import TokenService
from sitenet.events.v1 import events_pb2  # noqa: F401  (registers event types for Any/reflection)

MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ServiceBinding:
    full_name: str  # e.g. "sitenet.registry.v1.SiteRegistry"
    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any


class RpcServer:
    def __init__(self, address: str, bindings: Sequence[ServiceBinding],
                 tokens: TokenService,
                 credentials: grpc.ServerCredentials | None = None) -> None:
        self.address = address
        self._credentials = credentials  # None: plaintext (the loopback default)
        self._bindings = bindings
        self._server = grpc.aio.server(
            interceptors=[ServiceInterceptor(tokens)],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        self._health = health.aio.HealthServicer()
        self.port = 0

    async def start(self) -> None:
        for binding in self._bindings:
            binding.add_to_server(binding.servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        names = [b.full_name for b in self._bindings]
        reflection.enable_server_reflection(
            [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME],
            self._server,
        )
        if self._credentials is not None:
            self.port = self._server.add_secure_port(self.address, self._credentials)
        else:
            self.port = self._server.add_insecure_port(self.address)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.address}")
        await self._server.start()
        for name in ["", *names]:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    async def stop(self, grace_s: float = 5.0) -> None:
        # Tell probes first, so load balancers stop sending, then drain in-flight calls.
        await self._health.enter_graceful_shutdown()
        await self._server.stop(grace_s)

    async def wait(self) -> None:
        await self._server.wait_for_termination()
