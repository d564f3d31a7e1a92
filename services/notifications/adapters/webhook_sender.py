"""POSTing one webhook notification with httpx: JSON body, HMAC-SHA256 signature."""

from __future__ import annotations

import datetime as dt
import json
import time

import httpx

from services.notifications.adapters.event_codec import event_json
from services.notifications.domain.model import DeliveryAttempt, DueDelivery
from services.notifications.domain.webhooks import SIGNATURE_HEADER, signature


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
    def __init__(self, timeout_s: float) -> None:
        # One pooled client for every webhook; no redirects (the URL was validated, a
        # redirect could lead anywhere).
        self._client = httpx.AsyncClient(timeout=timeout_s, follow_redirects=False)

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
        except httpx.HTTPError as exc:
            return done(0, "CONNECTION_ERROR", repr(exc))
        if 200 <= response.status_code < 300:
            return done(response.status_code, "OK")
        return done(response.status_code, "HTTP_ERROR", response.text[:200])
