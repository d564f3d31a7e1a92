"""How webhooks are signed and how long to wait before trying again. Pure: stdlib only.

A receiver verifies `Sitenet-Signature: t=<unix seconds>,v1=<hex>` by computing
HMAC-SHA256 with the subscription's secret over `"<t>." + raw body` and comparing
it in constant time; it should also refuse a `t` too far from its own clock.
"""

from __future__ import annotations

import hashlib
import hmac
import random

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
