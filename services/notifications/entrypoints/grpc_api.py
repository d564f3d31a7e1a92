"""`sitenet.notifications.v1.Notifications` over gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal

import grpc
from google.protobuf import any_pb2, empty_pb2

from services.common.resource_names import parse
from services.common.rpc.convert import timestamp
from services.common.rpc.interceptors import current_principal
from services.notifications.domain.model import Delivery, Notification, Subscription
from services.notifications.service_layer.handlers import NotificationsService
from sitenet.notifications.v1 import notifications_pb2 as pb
from sitenet.notifications.v1 import notifications_pb2_grpc


def notification_message(n: Notification) -> pb.Notification:
    event = any_pb2.Any(type_url=f"type.googleapis.com/{n.event_type}", value=n.payload)
    return pb.Notification(
        cursor=str(n.cursor), event_id=n.event_id, event_type=n.event_type, subject=n.subject,
        event_time=timestamp(n.event_time), text_en=n.text_en, text_ko=n.text_ko, event=event,
        study=n.study, site=n.site)


def subscription_message(s: Subscription) -> pb.Subscription:
    f = s.filter
    channel = pb.Channel(stream=pb.StreamChannel()) if s.channel == "stream" else pb.Channel(
        webhook=pb.WebhookChannel(url=s.webhook.url if s.webhook else ""))  # never the secret
    return pb.Subscription(
        name=s.name, display_name=s.display_name, owner=s.owner.subject,
        create_time=timestamp(s.create_time), channel=channel,
        filter=pb.NotificationFilter(studies=f.studies, sites=f.sites,
                                     country_codes=f.country_codes,
                                     region_codes=f.region_codes, event_types=f.event_types))


def delivery_message(d: Delivery) -> pb.Delivery:
    message = pb.Delivery(
        name=d.name, cursor=str(d.cursor), event_id=d.event_id, event_type=d.event_type,
        state=pb.Delivery.State.Value(d.state.value),
        attempts=[pb.DeliveryAttempt(
            attempt=a.attempt, attempt_time=timestamp(a.attempt_time),
            http_status=a.http_status, outcome=a.outcome, error=a.error,
            duration_ms=a.duration_ms) for a in d.attempts])
    if d.state.value == "PENDING":
        message.next_attempt_time.CopyFrom(timestamp(d.next_attempt_time))
    return message


def filter_values(message: pb.NotificationFilter) -> dict[str, Any]:
    return {"studies": list(message.studies), "sites": list(message.sites),
            "country_codes": list(message.country_codes),
            "region_codes": list(message.region_codes),
            "event_types": list(message.event_types)}


class NotificationsServicer(notifications_pb2_grpc.NotificationsServicer):
    def __init__(self, service: NotificationsService) -> None:
        self._service = service

    async def CreateSubscription(self, request: pb.CreateSubscriptionRequest,
                                 context: grpc.aio.ServicerContext) -> pb.Subscription:
        sub = request.subscription
        kind: Literal["stream", "webhook"] = (
            "webhook" if sub.channel.WhichOneof("kind") == "webhook" else "stream")
        webhook = ({"url": sub.channel.webhook.url, "secret": sub.channel.webhook.secret}
                   if kind == "webhook" else None)
        created = await self._service.create_subscription(
            current_principal(), filter_values(sub.filter), kind,
            webhook, sub.display_name, request.subscription_id, request.request_id)
        return subscription_message(created)

    async def GetSubscription(self, request: pb.GetSubscriptionRequest,
                              context: grpc.aio.ServicerContext) -> pb.Subscription:
        (sub_id,) = parse(request.name, "subscriptions/{subscription}")
        return subscription_message(
            await self._service.get_subscription(current_principal(), sub_id))

    async def ListSubscriptions(self, request: pb.ListSubscriptionsRequest,
                                context: grpc.aio.ServicerContext
                                ) -> pb.ListSubscriptionsResponse:
        rows, token = await self._service.list_subscriptions(
            current_principal(), request.page_size, request.page_token)
        return pb.ListSubscriptionsResponse(
            subscriptions=[subscription_message(s) for s in rows], next_page_token=token)

    async def DeleteSubscription(self, request: pb.DeleteSubscriptionRequest,
                                 context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        (sub_id,) = parse(request.name, "subscriptions/{subscription}")
        await self._service.delete_subscription(current_principal(), sub_id)
        return empty_pb2.Empty()

    async def StreamNotifications(self, request: pb.StreamNotificationsRequest,
                                  context: grpc.aio.ServicerContext
                                  ) -> AsyncIterator[pb.Notification]:
        sub_id = ""
        if request.subscription:
            (sub_id,) = parse(request.subscription, "subscriptions/{subscription}",
                              field="subscription")
        async for notification in self._service.stream(
                current_principal(), sub_id, filter_values(request.filter), request.cursor):
            yield notification_message(notification)

    async def ListNotifications(self, request: pb.ListNotificationsRequest,
                                context: grpc.aio.ServicerContext
                                ) -> pb.ListNotificationsResponse:
        (sub_id,) = parse(request.parent, "subscriptions/{subscription}", field="parent")
        rows, token = await self._service.list_notifications(
            current_principal(), sub_id, request.page_size, request.page_token)
        return pb.ListNotificationsResponse(
            notifications=[notification_message(n) for n in rows], next_page_token=token)

    async def ListDeliveries(self, request: pb.ListDeliveriesRequest,
                             context: grpc.aio.ServicerContext) -> pb.ListDeliveriesResponse:
        (sub_id,) = parse(request.parent, "subscriptions/{subscription}", field="parent")
        rows, token = await self._service.list_deliveries(
            current_principal(), sub_id, request.page_size, request.page_token)
        return pb.ListDeliveriesResponse(
            deliveries=[delivery_message(d) for d in rows], next_page_token=token)
