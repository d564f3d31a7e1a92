"""The notification log, subscriptions and the study directory in SQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    delete,
    func,
    or_,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.identity import Principal, Role
from services.notifications.adapters.tables import (
    alert_milestones,
    alert_study_sites,
    notification_log,
    study_directory,
    subscriptions,
    webhook_attempts,
    webhook_deliveries,
)
from services.notifications.domain.model import (
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    DueDelivery,
    Notification,
    NotificationFilter,
    StudySiteInfo,
    Subscription,
    TrackedMilestone,
    WebhookTarget,
    overdue_only_before,
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
        # Values as parameters: the statement's shape is cached, not rebuilt per event.
        result = await self._conn.execute(log_t.insert(), dict(
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

    async def webhooks(self) -> list[Subscription]:
        rows = (await self._conn.execute(select(subscriptions).where(
            subscriptions.c.channel == "webhook"))).all()
        return [self._subscription(r) for r in rows]

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


del_t = webhook_deliveries
att_t = webhook_attempts


class SqlDeliveryRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def add(self, subscription_id: str, notification: Notification,
                  now: datetime) -> None:
        await self._conn.execute(del_t.insert().values(
            subscription_id=subscription_id, cursor=notification.cursor,
            event_id=notification.event_id, event_type=notification.event_type,
            state=DeliveryState.PENDING.value, attempts=0, next_attempt_at=now))

    async def claim_due(self, now: datetime, lease_until: datetime,
                        limit: int) -> list[DueDelivery]:
        rows = (await self._conn.execute(
            select(del_t, subscriptions, log_t.c.subject, log_t.c.study, log_t.c.site,
                   log_t.c.sponsor_org, log_t.c.country_code, log_t.c.region_code,
                   log_t.c.event_time, log_t.c.text_en, log_t.c.text_ko, log_t.c.payload)
            .join(subscriptions, subscriptions.c.subscription_id == del_t.c.subscription_id)
            .join(log_t, log_t.c.cursor == del_t.c.cursor)
            .where(del_t.c.state == DeliveryState.PENDING.value,
                   del_t.c.next_attempt_at <= now)
            .order_by(del_t.c.next_attempt_at, del_t.c.delivery_id).limit(limit))).all()
        claimed = []
        for row in rows:
            # Taken only if no other worker moved it meanwhile.
            result = await self._conn.execute(update(del_t).where(
                del_t.c.delivery_id == row.delivery_id,
                del_t.c.state == DeliveryState.PENDING.value,
                del_t.c.next_attempt_at <= now).values(next_attempt_at=lease_until))
            if result.rowcount != 1:
                continue
            sub = SqlSubscriptionRepository._subscription(row)
            if sub.webhook is None:
                continue
            notification = Notification(
                cursor=row.cursor, event_id=row.event_id, event_type=row.event_type,
                subject=row.subject, event_time=_utc(row.event_time), text_en=row.text_en,
                text_ko=row.text_ko, payload=row.payload, study=row.study, site=row.site,
                sponsor_org=row.sponsor_org, country_code=row.country_code,
                region_code=row.region_code)
            claimed.append(DueDelivery(self._delivery(row), sub.name, sub.webhook,
                                       notification))
        return claimed

    @staticmethod
    def _delivery(row: Any, attempts: tuple[DeliveryAttempt, ...] = ()) -> Delivery:
        return Delivery(
            delivery_id=row.delivery_id, subscription_id=row.subscription_id,
            cursor=row.cursor, event_id=row.event_id, event_type=row.event_type,
            state=DeliveryState(row.state), next_attempt_time=_utc(row.next_attempt_at),
            attempts_made=row.attempts, attempts=attempts)

    async def record(self, delivery_id: int, attempt: DeliveryAttempt, state: DeliveryState,
                     next_attempt_at: datetime) -> None:
        await self._conn.execute(att_t.insert().values(
            delivery_id=delivery_id, attempt=attempt.attempt,
            attempt_time=attempt.attempt_time, http_status=attempt.http_status,
            outcome=attempt.outcome, error=attempt.error[:500],
            duration_ms=attempt.duration_ms))
        await self._conn.execute(update(del_t).where(
            del_t.c.delivery_id == delivery_id,
            del_t.c.state == DeliveryState.PENDING.value).values(
            state=state.value, attempts=attempt.attempt, next_attempt_at=next_attempt_at))

    async def list(self, subscription_id: str, after: int | None,
                   limit: int) -> list[Delivery]:
        query = select(del_t).where(del_t.c.subscription_id == subscription_id)
        if after is not None:
            query = query.where(del_t.c.delivery_id > after)
        rows = (await self._conn.execute(query.order_by(del_t.c.delivery_id)
                                         .limit(limit))).all()
        if not rows:
            return []
        tried: dict[int, list[DeliveryAttempt]] = {}
        for a in (await self._conn.execute(select(att_t).where(
                att_t.c.delivery_id.in_([r.delivery_id for r in rows]))
                .order_by(att_t.c.attempt_id))).all():
            tried.setdefault(a.delivery_id, []).append(DeliveryAttempt(
                attempt=a.attempt, attempt_time=_utc(a.attempt_time),
                http_status=a.http_status, outcome=a.outcome, error=a.error,
                duration_ms=a.duration_ms))
        return [self._delivery(r, tuple(tried.get(r.delivery_id, []))) for r in rows]

    async def delete_for(self, subscription_id: str) -> None:
        ids = select(del_t.c.delivery_id).where(del_t.c.subscription_id == subscription_id)
        await self._conn.execute(delete(att_t).where(att_t.c.delivery_id.in_(ids)))
        await self._conn.execute(delete(del_t).where(
            del_t.c.subscription_id == subscription_id))


ss_t = alert_study_sites
ms_t = alert_milestones
_UPDATE_TRACKED = update(ms_t).where(ms_t.c.study_site == bindparam("b_study_site"),
                                     ms_t.c.milestone == bindparam("b_milestone"))
OPEN_STATUSES = ("PLANNED", "IN_PROGRESS")


def _info(row: Any) -> StudySiteInfo:
    return StudySiteInfo(
        name=row.name, study=row.study, site=row.site, sponsor_org=row.sponsor_org,
        country_code=row.country_code, region_code=row.region_code,
        protocol_number=row.protocol_number, site_name_en=row.site_name_en,
        site_name_ko=row.site_name_ko, time_zone=row.time_zone)


class SqlAlertState:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def keep_study_site(self, info: StudySiteInfo) -> None:
        values = dict(study=info.study, site=info.site, sponsor_org=info.sponsor_org,
                      country_code=info.country_code, region_code=info.region_code,
                      protocol_number=info.protocol_number, site_name_en=info.site_name_en,
                      site_name_ko=info.site_name_ko)
        if info.time_zone:  # an event that does not say keeps the zone known
            values["time_zone"] = info.time_zone
        result = await self._conn.execute(update(ss_t).where(ss_t.c.name == info.name)
                                          .values(**values))
        if result.rowcount == 0:
            await self._conn.execute(ss_t.insert().values(name=info.name, blocked_alerted=False,
                                                          **values))

    async def set_time_zone(self, site: str, time_zone: str) -> None:
        await self._conn.execute(update(ss_t).where(
            ss_t.c.site == site, ss_t.c.time_zone != time_zone).values(time_zone=time_zone))

    async def study_sites_of(self, site: str) -> list[StudySiteInfo]:
        rows = (await self._conn.execute(select(ss_t).where(ss_t.c.site == site)
                                         .order_by(ss_t.c.name))).all()
        return [_info(r) for r in rows]

    async def keep_milestone(self, milestone: TrackedMilestone, status: str) -> bool:
        key = and_(ms_t.c.study_site == milestone.where.name,
                   ms_t.c.milestone == milestone.milestone)
        values = dict(name_en=milestone.name_en, name_ko=milestone.name_ko, status=status,
                      due_date=milestone.due_date)
        if status in OPEN_STATUSES:
            # The common case in one statement: an alert already raised stays raised.
            result = await self._conn.execute(_UPDATE_TRACKED, dict(
                b_study_site=milestone.where.name, b_milestone=milestone.milestone, **values))
            if result.rowcount == 0:
                await self._conn.execute(ms_t.insert(), dict(
                    study_site=milestone.where.name, milestone=milestone.milestone,
                    overdue_alerted=False, **values))
            return False
        was = (await self._conn.execute(select(ms_t.c.overdue_alerted).where(key))).first()
        if was is None:
            await self._conn.execute(ms_t.insert().values(
                study_site=milestone.where.name, milestone=milestone.milestone,
                overdue_alerted=False, **values))
            return False
        # Not open any more (done, rejected, not applicable): an overdue alert is cleared.
        await self._conn.execute(update(ms_t).where(key).values(overdue_alerted=False, **values))
        return bool(was.overdue_alerted)

    async def set_blocked(self, study_site: str, since: datetime | None) -> None:
        await self._conn.execute(update(ss_t).where(ss_t.c.name == study_site).values(
            blocked_since=since, blocked_alerted=False))

    async def claim_overdue(self, now: datetime, limit: int) -> list[TrackedMilestone]:
        # SQL narrows to what may be overdue somewhere (due by today's UTC date); the
        # site's zone decides. The few due yesterday or today that are not overdue at
        # their site yet are passed over, in pages, so they never hold back the rest.
        before = overdue_only_before(now)
        order = (ms_t.c.due_date, ms_t.c.study_site, ms_t.c.milestone)
        query = (select(ms_t, ss_t).join(ss_t, ss_t.c.name == ms_t.c.study_site)
                 .where(ms_t.c.status.in_(OPEN_STATUSES), ms_t.c.due_date < before,
                        ms_t.c.overdue_alerted == False)  # noqa: E712
                 .order_by(*order).limit(limit))
        out: list[TrackedMilestone] = []
        page = query
        while True:
            rows = (await self._conn.execute(page)).all()
            for r in rows:
                milestone = TrackedMilestone(_info(r), r.milestone, r.name_en, r.name_ko,
                                             r.due_date)
                if not milestone.overdue(now):
                    continue
                result = await self._conn.execute(update(ms_t).where(
                    ms_t.c.study_site == r.study_site, ms_t.c.milestone == r.milestone,
                    ms_t.c.overdue_alerted == False).values(overdue_alerted=True))  # noqa: E712
                if result.rowcount == 1:
                    out.append(milestone)
                    if len(out) == limit:
                        return out
            if len(rows) < limit:
                return out
            last = rows[-1]
            page = query.where(tuple_(*order) > tuple_(last.due_date, last.study_site,
                                                       last.milestone))

    async def claim_blocked(self, since_before: datetime,
                            limit: int) -> list[tuple[StudySiteInfo, datetime]]:
        rows = (await self._conn.execute(select(ss_t).where(
            ss_t.c.blocked_since.is_not(None), ss_t.c.blocked_since <= since_before,
            ss_t.c.blocked_alerted == False).limit(limit))).all()  # noqa: E712
        out = []
        for r in rows:
            result = await self._conn.execute(update(ss_t).where(
                ss_t.c.name == r.name, ss_t.c.blocked_alerted == False)  # noqa: E712
                .values(blocked_alerted=True))
            if result.rowcount == 1:
                out.append((_info(r), _utc(r.blocked_since)))
        return out
