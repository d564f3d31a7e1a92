"""The notification service's use cases."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from services.common import paging
from services.common.errors import (
    AlreadyExists,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.identity import Principal, Role
from services.common.resource_names import check_id, new_id
from services.common.validation import build
from services.notifications.domain.messages import render
from services.notifications.domain.model import (
    EventFacts,
    Notification,
    NotificationFilter,
    Subscription,
    WebhookTarget,
)
from services.notifications.service_layer.ports import NotificationsUnitOfWork
from services.notifications.service_layer.signal import LogSignal

STREAM_BATCH = 200
# Another replica may have appended: look again at least this often even without a wake-up.
STREAM_POLL_S = 1.0


def parse_cursor(cursor: str) -> int | None:
    if not cursor:
        return None
    if not cursor.isdigit() or len(cursor) > 19:
        raise InvalidArgument([FieldViolation("cursor", "is not a cursor this service returned")])
    return int(cursor)


class NotificationsService:
    def __init__(self, unit_of_work: Callable[[], NotificationsUnitOfWork],
                 signal: LogSignal | None = None) -> None:
        self._uow = unit_of_work
        self.signal = signal or LogSignal()

    # --- events in --------------------------------------------------------------------

    async def ingest(self, event_id: str, subject: str, event_time: dt.datetime,
                     facts: EventFacts, payload: bytes) -> bool:
        """Add an event to the notification log once; a replay or duplicate changes nothing."""
        text_en, text_ko = render(facts)
        async with self._uow() as uow:
            if not await uow.inbox.claim(event_id, facts.event_type):
                return False
            if facts.study and facts.sponsor_org:
                await uow.studies.remember(facts.study, facts.sponsor_org)
            await uow.log.append(Notification(
                event_id=event_id, event_type=facts.event_type, subject=subject,
                event_time=event_time, text_en=text_en, text_ko=text_ko, payload=payload,
                study=facts.study, site=facts.site, sponsor_org=facts.sponsor_org,
                country_code=facts.country_code, region_code=facts.region_code))
            await uow.commit()
        self.signal.notify()
        return True

    # --- subscriptions ----------------------------------------------------------------

    async def _check_readable(self, uow: NotificationsUnitOfWork, principal: Principal,
                              where: NotificationFilter) -> None:
        """A caller may subscribe only to what its token may read."""
        if principal.role is Role.SPONSOR:
            for study in where.studies:
                if await uow.studies.sponsor_of(study) != principal.org:
                    raise PermissionDenied(f"{study} is not a study of {principal.org}")
        if principal.role is Role.SITE:
            if where.studies and not where.sites:
                raise PermissionDenied("a site token subscribes to its own sites: name them")
            foreign = [s for s in where.sites if s.removeprefix("sites/") not in principal.sites]
            if foreign:
                raise PermissionDenied(f"not your sites: {', '.join(foreign)}")

    async def create_subscription(self, principal: Principal, filter_values: dict[str, Any],
                                  channel: Literal["stream", "webhook"],
                                  webhook: dict[str, str] | None, display_name: str,
                                  subscription_id: str, request_id: str = "") -> Subscription:
        subscription_id = (check_id(subscription_id, "subscription_id") if subscription_id
                           else new_id("sub"))
        where = build(NotificationFilter, filter_values, prefix="subscription.filter")
        target = (build(WebhookTarget, webhook, prefix="subscription.channel.webhook")
                  if channel == "webhook" and webhook is not None else None)
        if channel == "webhook" and target is None:
            raise InvalidArgument([FieldViolation("subscription.channel.webhook", "required")])
        if len(display_name) > 200:
            raise InvalidArgument([FieldViolation("subscription.display_name",
                                                  "longer than 200 characters")])
        async with self._uow() as uow:
            if request_id and (earlier := await uow.requests.seen(request_id)):
                existing = await uow.subscriptions.get(earlier.removeprefix("subscriptions/"))
                if existing is not None:
                    return existing
            await self._check_readable(uow, principal, where)
            if await uow.subscriptions.get(subscription_id) is not None:
                raise AlreadyExists(f"subscriptions/{subscription_id}")
            subscription = Subscription(
                subscription_id=subscription_id, owner=principal, filter=where,
                channel=channel, webhook=target, display_name=display_name,
                start_cursor=await uow.log.latest_cursor(),
                create_time=dt.datetime.now(dt.UTC))
            await uow.subscriptions.add(subscription)
            if request_id:
                await uow.requests.remember(request_id, subscription.name)
            await uow.commit()
            return subscription

    async def _owned(self, uow: NotificationsUnitOfWork, principal: Principal,
                     subscription_id: str) -> Subscription:
        subscription = await uow.subscriptions.get(subscription_id)
        if subscription is None or not subscription.owned_by(principal):
            raise NotFound(f"subscriptions/{subscription_id}")
        return subscription

    async def get_subscription(self, principal: Principal, subscription_id: str) -> Subscription:
        async with self._uow() as uow:
            return await self._owned(uow, principal, subscription_id)

    async def list_subscriptions(self, principal: Principal, page_size: int,
                                 page_token: str) -> tuple[list[Subscription], str]:
        size = paging.page_size(page_size)
        after = paging.decode_token(page_token, principal.subject)
        owner = None if principal.is_admin else principal.subject
        async with self._uow() as uow:
            rows = await uow.subscriptions.list(owner, after, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        token = paging.encode_token(rows[-1].subscription_id, principal.subject) if more else ""
        return rows, token

    async def delete_subscription(self, principal: Principal, subscription_id: str) -> None:
        async with self._uow() as uow:
            await self._owned(uow, principal, subscription_id)
            await uow.subscriptions.delete(subscription_id)
            await uow.commit()

    # --- reading ----------------------------------------------------------------------

    async def list_notifications(self, principal: Principal, subscription_id: str,
                                 page_size: int, page_token: str
                                 ) -> tuple[list[Notification], str]:
        size = paging.page_size(page_size)
        query = f"subscriptions/{subscription_id}"
        after = paging.decode_token(page_token, query)
        async with self._uow() as uow:
            subscription = await self._owned(uow, principal, subscription_id)
            start = int(after) if after is not None else subscription.start_cursor
            rows = await uow.log.after(start, size + 1, subscription.filter,
                                       subscription.owner)
        more = len(rows) > size
        rows = rows[:size]
        return rows, paging.encode_token(str(rows[-1].cursor), query) if more else ""

    async def stream(self, principal: Principal, subscription_id: str,
                     filter_values: dict[str, Any], cursor: str) -> AsyncIterator[Notification]:
        """Replay what follows `cursor`, then follow the log live, in order, forever."""
        position = parse_cursor(cursor)
        async with self._uow() as uow:
            if subscription_id:
                subscription = await self._owned(uow, principal, subscription_id)
                where, reader = subscription.filter, subscription.owner
                if position is None:
                    position = await uow.log.latest_cursor()
            else:
                where = build(NotificationFilter, filter_values, prefix="filter")
                await self._check_readable(uow, principal, where)
                reader = principal
                if position is None:
                    position = await uow.log.latest_cursor()
        while True:
            seen = self.signal.version
            async with self._uow() as uow:
                batch = await uow.log.after(position, STREAM_BATCH, where, reader)
            for notification in batch:
                yield notification
                position = notification.cursor
            if len(batch) < STREAM_BATCH:
                await self.signal.wait(seen, STREAM_POLL_S)
