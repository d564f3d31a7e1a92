"""The notification service's use cases."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
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
from services.notifications.domain.messages import render, render_alert
from services.notifications.domain.model import (
    ALERT_TYPE,
    Alert,
    AlertKind,
    Delivery,
    EventFacts,
    Notification,
    NotificationFilter,
    StudySiteInfo,
    Subscription,
    TrackedMilestone,
    WebhookTarget,
)
from services.notifications.domain.webhooks import WebhookNetworks
from services.notifications.service_layer.live_log import LiveLog
from services.notifications.service_layer.ports import NotificationsUnitOfWork
from services.notifications.service_layer.signal import LogSignal

STREAM_BATCH = 200
# Another replica may have appended: look again at least this often even without a wake-up.
STREAM_POLL_S = 1.0
# The newest notifications kept in memory for the live streams (see LiveLog).
LIVE_WINDOW = 2000


def parse_cursor(cursor: str) -> int | None:
    if not cursor:
        return None
    if not cursor.isdigit() or len(cursor) > 19:
        raise InvalidArgument([FieldViolation("cursor", "is not a cursor this service returned")])
    return int(cursor)


ALERT_IDS = uuid.UUID("5b0c3f0e-8a57-4a55-9d0b-6a1f0d7e2c11")
DONE_STATUSES = frozenset({"DONE", "APPROVED_WITH_CONDITIONS", "NOT_APPLICABLE"})
SUSPENDED = "SUSPENDED"
REJECTED = "REJECTED"
# The registry's events that carry a site's state, its time zone among it.
SITE_EVENTS = frozenset({"SiteRegistered", "SiteUpdated", "SiteStatusChanged"})


def _no_alert_payload(_alert: Alert) -> bytes:
    return b""


@dataclass(frozen=True)
class IncomingEvent:
    """An event of the registry or the tracker, as the notification log takes it in."""
    event_id: str
    subject: str
    event_time: dt.datetime
    facts: EventFacts
    payload: bytes


class NotificationsService:
    def __init__(self, unit_of_work: Callable[[], NotificationsUnitOfWork],
                 signal: LogSignal | None = None,
                 encode_alert: Callable[[Alert], bytes] = _no_alert_payload,
                 blocked_after: dt.timedelta = dt.timedelta(days=14),
                 study_wait_s: float = 5.0,
                 webhook_networks: WebhookNetworks | None = None,
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self._uow = unit_of_work
        self.clock = clock  # public so a test can pin "now" for the alert timer
        self.signal = signal or LogSignal()
        self._live = LiveLog(unit_of_work, self.signal, capacity=LIVE_WINDOW,
                             batch=STREAM_BATCH, poll_s=STREAM_POLL_S)
        # Wakes the webhook worker only when there is something for it.
        self.deliveries_signal = LogSignal()
        self._queued_deliveries = 0
        self._encode_alert = encode_alert
        self._blocked_after = blocked_after
        self._study_wait_s = study_wait_s
        self._webhook_networks = webhook_networks or WebhookNetworks()
        # What this process has committed already and never changes (a study's sponsor,
        # a study-site's existence): saves two queries on most events.
        self._known_studies: set[str] = set()
        self._known_study_sites: set[str] = set()

    # --- events in --------------------------------------------------------------------

    async def ingest_batch(self, events: Sequence[IncomingEvent]) -> int:
        """Add events to the notification log, each once, in order, with the alerts they
        raise and a delivery for each matching webhook, in one transaction; replays and
        duplicates change nothing. Returns how many were new.

        One transaction for a batch rather than one per event: under load most of the
        cost of an event was the transaction around it."""
        added = 0
        studies: set[str] = set()
        study_sites: set[str] = set()
        async with self._uow() as uow:
            webhooks = await uow.subscriptions.webhooks()
            for event in events:
                facts = event.facts
                if not await uow.inbox.claim(event.event_id, facts.event_type):
                    continue
                if facts.study and facts.sponsor_org and facts.study not in studies \
                        and facts.study not in self._known_studies:
                    await uow.studies.remember(facts.study, facts.sponsor_org)
                    studies.add(facts.study)
                text_en, text_ko = render(facts)
                await self._append(uow, webhooks, Notification(
                    event_id=event.event_id, event_type=facts.event_type,
                    subject=event.subject, event_time=event.event_time, text_en=text_en,
                    text_ko=text_ko, payload=event.payload, study=facts.study, site=facts.site,
                    sponsor_org=facts.sponsor_org, country_code=facts.country_code,
                    region_code=facts.region_code))
                for alert in await self._alerts_from(uow, event.event_id, event.event_time,
                                                     facts, study_sites):
                    await self._append(uow, webhooks, self._alert_notification(alert))
                if facts.study_site:
                    study_sites.add(facts.study_site)
                added += 1
            await uow.commit()
        self._known_studies |= studies
        self._known_study_sites |= study_sites
        if added:
            self._wake()
        return added

    def _wake(self) -> None:
        self.signal.notify()
        if self._queued_deliveries:
            self._queued_deliveries = 0
            self.deliveries_signal.notify()

    async def _append(self, uow: NotificationsUnitOfWork, webhooks: Sequence[Subscription],
                      notification: Notification) -> None:
        cursor = await uow.log.append(notification)
        now = dt.datetime.now(dt.UTC)
        for sub in webhooks:
            if sub.filter.matches(notification) and notification.visible_to(sub.owner):
                await uow.deliveries.add(sub.subscription_id,
                                         dataclasses.replace(notification, cursor=cursor), now)
                self._queued_deliveries += 1

    def _alert_notification(self, alert: Alert) -> Notification:
        text_en, text_ko = render_alert(alert)
        w = alert.where
        return Notification(
            # Derived from what makes the alert unique: raising it again would collide.
            event_id=str(uuid.uuid5(ALERT_IDS, f"{alert.kind.value}|{alert.key}")),
            event_type=ALERT_TYPE, subject=alert.subject, event_time=alert.raise_time,
            text_en=text_en, text_ko=text_ko, payload=self._encode_alert(alert),
            study=w.study, site=w.site, sponsor_org=w.sponsor_org,
            country_code=w.country_code, region_code=w.region_code)

    async def _alerts_from(self, uow: NotificationsUnitOfWork, event_id: str,
                           event_time: dt.datetime, facts: EventFacts,
                           kept_in_batch: set[str]) -> list[Alert]:
        """Keep what alerts need to know, and the alerts this event raises at once."""
        kind = facts.event_type.rsplit(".", 1)[-1]
        where = StudySiteInfo(
            name=facts.study_site, study=facts.study, site=facts.site,
            sponsor_org=facts.sponsor_org, country_code=facts.country_code,
            region_code=facts.region_code, protocol_number=facts.protocol_number,
            site_name_en=facts.site_name_en, site_name_ko=facts.site_name_ko,
            time_zone=facts.time_zone)
        now = dt.datetime.now(dt.UTC)
        alerts: list[Alert] = []
        if kind == "StudySiteAdded" or (
                kind == "MilestoneRecorded" and facts.study_site
                and facts.study_site not in self._known_study_sites
                and facts.study_site not in kept_in_batch):
            await uow.alerts.keep_study_site(where)
        if kind == "MilestoneRecorded" and facts.study_site:
            tracked = TrackedMilestone(where, facts.milestone, facts.milestone_en,
                                       facts.milestone_ko, facts.due_date)
            was_overdue = await uow.alerts.keep_milestone(tracked, facts.status)
            if was_overdue and facts.status in DONE_STATUSES:
                alerts.append(Alert(
                    AlertKind.MILESTONE_OVERDUE_CLEARED, f"{where.name}|{facts.milestone}|"
                    f"{event_id}", where, now, facts.milestone, facts.milestone_en,
                    facts.milestone_ko, facts.due_date, event_id, "done after its due date"))
            if facts.status == REJECTED:
                alerts.append(Alert(
                    AlertKind.IRB_REJECTED, event_id, where, now, facts.milestone,
                    facts.milestone_en, facts.milestone_ko, None, event_id,
                    "the IRB rejected the study at this site"))
                await uow.alerts.set_blocked(where.name, event_time)
            elif facts.before_status == REJECTED:
                await uow.alerts.set_blocked(where.name, None)
        if kind in SITE_EVENTS and facts.site and facts.time_zone:
            await uow.alerts.set_time_zone(facts.site, facts.time_zone)
        if kind == "SiteUpdated" and facts.status == SUSPENDED \
                and facts.before_status != SUSPENDED:
            for study_site in await uow.alerts.study_sites_of(facts.site):
                alerts.append(Alert(
                    AlertKind.SITE_SUSPENDED, f"{event_id}|{study_site.name}", study_site, now,
                    cause_event_id=event_id,
                    detail=facts.details.get("reason", "") or "site suspended"))
        return alerts

    async def check_alerts(self, now: dt.datetime | None = None) -> int:
        """Raise the alerts of time passing: milestones overdue (the date at the site, in
        its time zone, is past the due date), study-sites blocked too long. Each is raised
        once (the row is marked in the same transaction)."""
        now = now or self.clock()
        raised = 0
        async with self._uow() as uow:
            webhooks = await uow.subscriptions.webhooks()
            for m in await uow.alerts.claim_overdue(now, 500):
                due = m.due_date.isoformat() if m.due_date else ""
                await self._append(uow, webhooks, self._alert_notification(Alert(
                    AlertKind.MILESTONE_OVERDUE, f"{m.where.name}|{m.milestone}|{due}",
                    m.where, now, m.milestone, m.name_en, m.name_ko, m.due_date,
                    detail=f"due {due}, not done")))
                raised += 1
            for where, since in await uow.alerts.claim_blocked(now - self._blocked_after, 500):
                await self._append(uow, webhooks, self._alert_notification(Alert(
                    AlertKind.STUDY_SITE_BLOCKED, f"{where.name}|{since.isoformat()}", where,
                    now, due_date=since.date(), detail=f"blocked since {since.isoformat()}")))
                raised += 1
            await uow.commit()
        if raised:
            self._wake()
        return raised

    # --- subscriptions ----------------------------------------------------------------

    async def _await_known_studies(self, principal: Principal,
                                   where: NotificationFilter) -> None:
        """A study reaches this service by event, a moment after the tracker created it:
        wait for it (bounded) rather than refuse a sponsor its own new study."""
        if principal.role is not Role.SPONSOR or not where.studies:
            return
        deadline = time.monotonic() + self._study_wait_s
        while True:
            async with self._uow() as uow:
                unknown = [s for s in where.studies if await uow.studies.sponsor_of(s) is None]
            if not unknown or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.05)

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
        if target is not None and (refused := self._webhook_networks.refusal(target.url)):
            raise InvalidArgument([FieldViolation("subscription.channel.webhook.url", refused)])
        if len(display_name) > 200:
            raise InvalidArgument([FieldViolation("subscription.display_name",
                                                  "longer than 200 characters")])
        await self._await_known_studies(principal, where)
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
            await uow.deliveries.delete_for(subscription_id)
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

    async def list_deliveries(self, principal: Principal, subscription_id: str,
                              page_size: int, page_token: str) -> tuple[list[Delivery], str]:
        size = paging.page_size(page_size)
        query = f"subscriptions/{subscription_id}/deliveries"
        after = paging.decode_token(page_token, query)
        async with self._uow() as uow:
            subscription = await self._owned(uow, principal, subscription_id)
            if subscription.channel != "webhook":
                raise InvalidArgument([FieldViolation("parent", "is not a webhook subscription")])
            rows = await uow.deliveries.list(subscription_id,
                                             int(after) if after is not None else None, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        return rows, paging.encode_token(str(rows[-1].delivery_id), query) if more else ""

    async def stream(self, principal: Principal, subscription_id: str,
                     filter_values: dict[str, Any], cursor: str) -> AsyncIterator[Notification]:
        """Replay what follows `cursor`, then follow the log live, in order, forever."""
        position = parse_cursor(cursor)
        if not subscription_id:
            await self._await_known_studies(
                principal, build(NotificationFilter, filter_values, prefix="filter"))
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
            live = await self._live.after(position, where, reader, STREAM_BATCH)
            if live is None:  # further behind than the live window: read the log itself
                head = self._live.head  # this read sees at least that far
                async with self._uow() as uow:
                    batch = await uow.log.after(position, STREAM_BATCH, where, reader)
                next_position = (batch[-1].cursor if len(batch) == STREAM_BATCH
                                 else max(position, head, *(n.cursor for n in batch)))
            else:
                batch, next_position = live
            for notification in batch:
                yield notification
            position = next_position
            if len(batch) < STREAM_BATCH:
                await self.signal.wait(seen, STREAM_POLL_S)
