"""POSTing one webhook notification with httpx: JSON body, HMAC-SHA256 signature, and
only to the addresses `WebhookNetworks` permits."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import socket
import time
from collections.abc import Iterable

import httpcore
import httpx

from services.notifications.adapters.event_codec import event_json
from services.notifications.domain.model import DeliveryAttempt, DueDelivery
from services.notifications.domain.webhooks import SIGNATURE_HEADER, WebhookNetworks, signature


class AddressRefused(httpcore.ConnectError):
    """The webhook's host is (or resolves only to) addresses it may not reach."""


class PermittedAddressesOnly(httpcore.AsyncNetworkBackend):
    """Resolves the host itself and connects only to a permitted address of it: the
    check and the connection use the same address, so a name cannot pass the check
    and then resolve elsewhere (DNS rebinding). TLS still verifies the host name."""

    def __init__(self, networks: WebhookNetworks) -> None:
        self._networks = networks
        self._inner = httpcore.AnyIOBackend()

    # httpcore's interface: `timeout` is its parameter, not ours to replace.
    async def connect_tcp(
            self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
            local_address: str | None = None,
            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(
            ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))
        permitted = [a for a in addresses if self._networks.permits(a)]
        if not permitted:
            raise AddressRefused(
                f"{host} resolves to {', '.join(map(str, addresses))}: not a public address; "
                "an operator can allow its network with SITENET_WEBHOOK_ALLOWED_NETWORKS")
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in permitted:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
            self, path: str, timeout: float | None = None,  # noqa: ASYNC109
            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("webhooks do not connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guarded_transport(networks: WebhookNetworks) -> httpx.AsyncHTTPTransport:
    """httpx's transport with its connection pool built on `PermittedAddressesOnly`.
    httpx 0.28 has no public parameter for httpcore's network backend, so the pool is
    replaced (httpx is pinned; the webhook tests fail if this stops taking effect)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(trust_env=False),
        max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0,
        network_backend=PermittedAddressesOnly(networks))
    return transport


def webhook_body(due: DueDelivery) -> bytes:
    n = due.notification
    return json.dumps({
        "subscription": due.subscription_name,
        "delivery": due.delivery.name,
        "cursor": str(n.cursor),
        "event_id": n.event_id,
        "event_type": n.event_type,
        "subject": n.subject,
        "event_time": n.event_time.isoformat().replace("+00:00", "Z"),
        "study": n.study,
        "site": n.site,
        "text_en": n.text_en,
        "text_ko": n.text_ko,
        "event": event_json(n.event_type, n.payload),
    }, ensure_ascii=False, separators=(",", ":")).encode()


class HttpxWebhookSender:
    def __init__(self, timeout_s: float, networks: WebhookNetworks) -> None:
        # One pooled client for every webhook; no redirects (the URL was validated, a
        # redirect could lead anywhere); no proxy from the environment (the address check
        # would see the proxy, not the receiver).
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False,
                                         trust_env=False,
                                         transport=guarded_transport(networks))

    async def close(self) -> None:
        await self._client.aclose()

    async def send(self, due: DueDelivery, attempt: int) -> DeliveryAttempt:
        body = webhook_body(due)
        now = dt.datetime.now(dt.UTC)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "sitenet-webhooks/1",
            SIGNATURE_HEADER: signature(due.target.secret, int(now.timestamp()), body),
            "Sitenet-Delivery": due.delivery.name,
            "Sitenet-Event-Id": due.notification.event_id,
            "Sitenet-Event-Type": due.notification.event_type,
            "Sitenet-Attempt": str(attempt),
        }
        started = time.monotonic()

        def done(status: int, outcome: str, error: str = "") -> DeliveryAttempt:
            return DeliveryAttempt(attempt, now, status, outcome, error,
                                   int((time.monotonic() - started) * 1000))

        try:
            response = await self._client.post(due.target.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            return done(0, "TIMEOUT", repr(exc))
        except httpx.ConnectError as exc:
            if isinstance(exc.__cause__, AddressRefused):
                return done(0, "REFUSED", str(exc))
            return done(0, "CONNECTION_ERROR", repr(exc))
        except httpx.HTTPError as exc:
            return done(0, "CONNECTION_ERROR", repr(exc))
        if 200 <= response.status_code < 300:
            return done(response.status_code, "OK")
        return done(response.status_code, "HTTP_ERROR", response.text[:200])
