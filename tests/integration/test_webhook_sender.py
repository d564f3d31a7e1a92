"""The webhook sender against a real HTTP receiver: it connects only to addresses the
operator's networks permit, checked on the address it resolved and connects to (so a
host name that resolves to an internal address is refused, not only a literal one)."""

from __future__ import annotations

import datetime as dt

from services.notifications.adapters.webhook_sender import HttpxWebhookSender
from services.notifications.domain.model import (
    Delivery,
    DeliveryState,
    DueDelivery,
    Notification,
    WebhookTarget,
)
from services.notifications.domain.webhooks import WebhookNetworks
from tests.support.notify import webhook_receiver


def _due(url: str) -> DueDelivery:
    now = dt.datetime.now(dt.UTC)
    return DueDelivery(
        delivery=Delivery(1, "sub-1", 7, "event-1", "sitenet.events.v1.StudyCreated",
                          DeliveryState.PENDING, now),
        subscription_name="subscriptions/sub-1",
        target=WebhookTarget(url=url, secret="whsec-0123456789abcdef"),
        notification=Notification("event-1", "sitenet.events.v1.StudyCreated",
                                  "studies/s-1", now, "Study created", "임상시험 생성",
                                  b"", cursor=7))


async def test_a_host_name_resolving_to_a_refused_address_is_not_connected_to() -> None:
    async with webhook_receiver() as receiver:
        by_name = receiver.url.replace("127.0.0.1", "localhost")  # resolved by the sender
        refusing = HttpxWebhookSender(2.0, WebhookNetworks())
        try:
            attempt = await refusing.send(_due(by_name), 1)
        finally:
            await refusing.close()
        assert (attempt.outcome, attempt.http_status) == ("REFUSED", 0)
        assert "127.0.0.1" in attempt.error and "not a public address" in attempt.error
        assert receiver.received == []

        allowing = HttpxWebhookSender(2.0, WebhookNetworks.parse("127.0.0.0/8,::1/128"))
        try:
            attempt = await allowing.send(_due(by_name), 1)
        finally:
            await allowing.close()
        assert (attempt.outcome, attempt.http_status) == ("OK", 200), attempt.error
        assert len(receiver.received) == 1
