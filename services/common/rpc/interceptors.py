"""One server interceptor for every service: authentication, request ids, error
mapping and metrics, so servicers hold only the API's own mapping.
"""

from __future__ import annotations

import contextvars
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from google.rpc import code_pb2
from prometheus_client import Counter, Histogram
from sqlalchemy import exc as sa_exc

from services.common.errors import DomainError, Unauthenticated
from services.common.identity import Principal
from services.common.rpc.status import plain_status, to_status
from services.common.tokens import TokenService

log = structlog.get_logger(__name__)

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("sitenet_principal")

# Open to anyone: probes and tooling (grpcurl, Kubernetes) must work without a token.
PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

RPC_REQUESTS = Counter("sitenet_rpc_requests_total", "RPCs handled", ["method", "code"])
RPC_LATENCY = Histogram("sitenet_rpc_duration_seconds", "RPC latency", ["method"])
# Deliveries on server streams (StreamNotifications): one per message sent to a client.
RPC_STREAM_MESSAGES = Counter("sitenet_rpc_stream_messages_sent_total",
                              "Messages sent on server streams", ["method"])

# Database outages surface as these; the caller may retry (UNAVAILABLE), nothing changed.
_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    ConnectionError,
    OSError,
    TimeoutError,
)


# SQLSTATE classes of a database that went away or is going away: connection exception
# (08), operator intervention such as a shutdown or a terminated backend (57P), too many
# connections (53300). asyncpg raises these under SQLAlchemy's generic DBAPIError.
_UNAVAILABLE_SQLSTATES = ("08", "57P", "53300")


def _is_unavailable(error: BaseException) -> bool:
    """Whether `error`, or what it wraps, says a dependency is unreachable (not a bug)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        e = pending.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, _UNAVAILABLE_ERRORS):
            return True
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        state = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
        if isinstance(state, str) and state.startswith(_UNAVAILABLE_SQLSTATES):
            return True
        orig = getattr(e, "orig", None)
        pending += [orig if isinstance(orig, BaseException) else None,
                    e.__cause__, e.__context__]
    return False


def current_principal() -> Principal:
    """The authenticated caller of the RPC being served."""
    return _principal.get()


class ServiceInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, tokens: TokenService) -> None:
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _authenticate(self, context: grpc.aio.ServicerContext) -> Principal:
        metadata = dict(context.invocation_metadata() or ())
        header = metadata.get("authorization", "")
        if not isinstance(header, str) or not header.lower().startswith("bearer "):
            raise Unauthenticated("missing bearer token: send 'authorization: Bearer <token>'")
        return self._tokens.verify(header[7:].strip())

    def _begin(self, method: str, context: grpc.aio.ServicerContext) -> None:
        metadata = dict(context.invocation_metadata() or ())
        request_id = metadata.get("x-request-id") or str(uuid.uuid4())
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id, rpc=method)
        principal = self._authenticate(context)
        structlog.contextvars.bind_contextvars(caller=principal.subject, role=principal.role.value)
        _principal.set(principal)

    async def _fail(self, method: str, context: grpc.aio.ServicerContext,
                    error: BaseException) -> None:
        if isinstance(error, DomainError):
            status = to_status(error)
        elif _is_unavailable(error):
            log.warning("dependency unavailable", error=repr(error))
            status = plain_status(code_pb2.UNAVAILABLE,
                                  "a dependency of the service is unavailable; retry later",
                                  "DEPENDENCY_UNAVAILABLE")
        else:
            log.exception("unexpected error", exc_info=error)
            status = plain_status(code_pb2.INTERNAL, "internal error", "INTERNAL")
        RPC_REQUESTS.labels(method, status.code.name).inc()
        await context.abort_with_status(status)

    def _wrap_unary(self, method: str, inner: Any) -> Any:
        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                self._begin(method, context)
                response = await inner(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await self._fail(method, context, error)
                raise  # unreachable: abort raises
            finally:
                RPC_LATENCY.labels(method).observe(time.perf_counter() - started)
            RPC_REQUESTS.labels(method, "OK").inc()
            return response

        return behaviour

    def _wrap_stream(self, method: str, inner: Any) -> Any:
        async def behaviour(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            try:
                self._begin(method, context)
                sent = RPC_STREAM_MESSAGES.labels(method)
                async for response in inner(request, context):
                    yield response
                    sent.inc()
            except grpc.aio.AbortError:
                raise
            except Exception as error:
                await self._fail(method, context, error)
                raise
            RPC_REQUESTS.labels(method, "OK").inc()

        return behaviour
