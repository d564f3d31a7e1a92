"""The notification log, subscriptions and the study directory in SQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, text, true
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.identity import Principal, Role
from services.notifications.adapters.tables import notification_log, study_directory, subscriptions
from services.notifications.domain.model import (
    Notification,
    NotificationFilter,
    Subscription,
    WebhookTarget,
)

log_t = notification_log


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _matches(where: NotificationFilter) -> ColumnElement[bool]:
    clauses: list[ColumnElement[bool]] = []
    if where.studies:
        clauses.append(log_t.c.study.in_(where.studies))
    if where.sites:
        clauses.append(log_t.c.site.in_(where.sites))
    if where.country_codes:
        clauses.append(log_t.c.country_code.in_(where.country_codes))
    if where.region_codes:
        clauses.append(log_t.c.region_code.in_(where.region_codes))
    if where.event_types:
        clauses.append(log_t.c.event_type.in_(where.event_types))
    return and_(true(), *clauses)


def _visible(reader: Principal) -> ColumnElement[bool]:
    """The same rule as Notification.visible_to, in SQL."""
    if reader.role in (Role.ADMIN, Role.OPS):
        return true()
    if reader.role is Role.SPONSOR:
        return or_(log_t.c.sponsor_org == "", log_t.c.sponsor_org == (reader.org or ""))
    return log_t.c.site.in_([f"sites/{s}" for s in reader.sites])


def _notification(row: Any) -> Notification:
    return Notification(
        cursor=row.cursor, event_id=row.event_id, event_type=row.event_type,
        subject=row.subject, event_time=_utc(row.event_time), text_en=row.text_en,
        text_ko=row.text_ko, payload=row.payload, study=row.study, site=row.site,
        sponsor_org=row.sponsor_org, country_code=row.country_code,
        region_code=row.region_code)


class SqlNotificationLog:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def append(self, notification: Notification) -> int:
        if self._conn.dialect.name == "postgresql":
            # Appends commit in cursor order, so a reader never skips a cursor that
            # commits late (replicas append concurrently). SQLite has one writer anyway.
            await self._conn.execute(text("SELECT pg_advisory_xact_lock(7310001)"))
        n = notification
        result = await self._conn.execute(log_t.insert().values(
            event_id=n.event_id, event_type=n.event_type, subject=n.subject, study=n.study,
            site=n.site, sponsor_org=n.sponsor_org, country_code=n.country_code,
            region_code=n.region_code, event_time=n.event_time, text_en=n.text_en,
            text_ko=n.text_ko, payload=n.payload))
        return int(result.inserted_primary_key[0])  # type: ignore[index]

    async def latest_cursor(self) -> int:
        value = (await self._conn.execute(select(func.max(log_t.c.cursor)))).scalar()
        return int(value or 0)

    async def after(self, cursor: int, limit: int, where: NotificationFilter,
                    reader: Principal) -> list[Notification]:
        rows = (await self._conn.execute(
            select(log_t).where(log_t.c.cursor > cursor, _matches(where), _visible(reader))
            .order_by(log_t.c.cursor).limit(limit))).all()
        return [_notification(r) for r in rows]


class SqlSubscriptionRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    @staticmethod
    def _subscription(row: Any) -> Subscription:
        owner = Principal(subject=row.owner_subject, role=Role(row.owner_role),
                          org=row.owner_org, sites=frozenset(json.loads(row.owner_sites)))
        webhook = (WebhookTarget.model_construct(url=row.webhook_url, secret=row.webhook_secret)
                   if row.webhook_url else None)
        return Subscription(
            subscription_id=row.subscription_id, owner=owner,
            filter=NotificationFilter.model_validate(json.loads(row.filter)),
            channel=row.channel, webhook=webhook, display_name=row.display_name,
            start_cursor=row.start_cursor, create_time=_utc(row.create_time))

    async def get(self, subscription_id: str) -> Subscription | None:
        row = (await self._conn.execute(select(subscriptions).where(
            subscriptions.c.subscription_id == subscription_id))).first()
        return self._subscription(row) if row else None

    async def add(self, subscription: Subscription) -> None:
        s = subscription
        await self._conn.execute(subscriptions.insert().values(
            subscription_id=s.subscription_id, owner_subject=s.owner.subject,
            owner_role=s.owner.role.value, owner_org=s.owner.org,
            owner_sites=json.dumps(sorted(s.owner.sites)),
            filter=s.filter.model_dump_json(), channel=s.channel,
            webhook_url=s.webhook.url if s.webhook else None,
            webhook_secret=s.webhook.secret if s.webhook else None,
            display_name=s.display_name, start_cursor=s.start_cursor,
            create_time=s.create_time))

    async def delete(self, subscription_id: str) -> None:
        await self._conn.execute(delete(subscriptions).where(
            subscriptions.c.subscription_id == subscription_id))

    async def list(self, owner: str | None, after: str | None, limit: int) -> list[Subscription]:
        query = select(subscriptions)
        if owner is not None:
            query = query.where(subscriptions.c.owner_subject == owner)
        if after is not None:
            query = query.where(subscriptions.c.subscription_id > after)
        rows = (await self._conn.execute(
            query.order_by(subscriptions.c.subscription_id).limit(limit))).all()
        return [self._subscription(r) for r in rows]


class SqlStudyDirectory:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def sponsor_of(self, study: str) -> str | None:
        value = (await self._conn.execute(select(study_directory.c.sponsor_org).where(
            study_directory.c.study == study))).scalar()
        return str(value) if value is not None else None

    async def remember(self, study: str, sponsor_org: str) -> None:
        if await self.sponsor_of(study) is None:
            await self._conn.execute(study_directory.insert().values(
                study=study, sponsor_org=sponsor_org))
