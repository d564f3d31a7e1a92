"""How webhooks are signed, where they may go, and how long to wait before trying again.
Pure: stdlib only.

A receiver verifies `Sitenet-Signature: t=<unix seconds>,v1=<hex>` by computing
HMAC-SHA256 with the subscription's secret over `"<t>." + raw body` and comparing
it in constant time; it should also refuse a `t` too far from its own clock.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
from collections.abc import Iterable
from urllib.parse import urlsplit

SIGNATURE_HEADER = "Sitenet-Signature"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, now: int, tolerance_s: int = 300) -> bool:
    """What a receiver does; here for tests and for documentation by example."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def backoff_s(failed_attempts: int, base_s: float, cap_s: float,
              rng: random.Random | None = None) -> float:
    """Wait after the n-th failure: exponential with "full jitter", so receivers that come
    back are not hit by every sender at the same instant."""
    ceiling = min(cap_s, base_s * 2 ** max(failed_attempts - 1, 0))
    return (rng or random).uniform(ceiling / 2, ceiling)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebhookNetworks:
    """Where webhook POSTs may connect: public addresses, and the non-public networks the
    operator allows. A subscriber chooses the URL, so without this a webhook could make the
    service call what only it can reach (cloud metadata at 169.254.169.254, the cluster's
    own services, its databases). Checked on the address actually connected to, after name
    resolution, so a name that resolves (or re-resolves) to an internal address is refused."""

    def __init__(self, allowed: Iterable[IPNetwork] = ()) -> None:
        self.allowed = tuple(allowed)

    @classmethod
    def parse(cls, text: str) -> WebhookNetworks:
        """From comma-separated CIDRs (`10.20.0.0/16,::1/128`); raises ValueError."""
        return cls(ipaddress.ip_network(part.strip(), strict=False)
                   for part in text.split(",") if part.strip())

    def permits(self, address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
        if any(address in network for network in self.allowed):
            return True
        return address.is_global and not address.is_multicast

    def refusal(self, url: str) -> str | None:
        """Why a URL is refused before any lookup (its host is an address, or `localhost`,
        that is not permitted), or None; a host name is checked when it is connected to."""
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
        if host == "localhost" or host.endswith(".localhost"):
            host = "127.0.0.1"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        if self.permits(address):
            return None
        return (f"{address} is not a public address; an operator can allow its network "
                "with SITENET_WEBHOOK_ALLOWED_NETWORKS")
