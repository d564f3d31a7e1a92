"""What the notification service's use cases need from storage."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from services.common.identity import Principal
from services.common.ports import Inbox, RequestLog
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
)


class NotificationLog(Protocol):
    async def append(self, notification: Notification) -> int:
        """Add it at the end of the log; returns its cursor."""
        ...

    async def latest_cursor(self) -> int: ...

    async def after(self, cursor: int, limit: int, where: NotificationFilter,
                    reader: Principal) -> list[Notification]:
        """Notifications after `cursor` that match `where` and that `reader` may see, in order."""
        ...


class SubscriptionRepository(Protocol):
    async def get(self, subscription_id: str) -> Subscription | None: ...
    async def add(self, subscription: Subscription) -> None: ...
    async def delete(self, subscription_id: str) -> None: ...
    async def webhooks(self) -> list[Subscription]: ...
    async def list(self, owner: str | None, after: str | None,
                   limit: int) -> list[Subscription]: ...


class DeliveryRepository(Protocol):
    async def add(self, subscription_id: str, notification: Notification,
                  now: dt.datetime) -> None: ...

    async def claim_due(self, now: dt.datetime, lease_until: dt.datetime,
                        limit: int) -> list[DueDelivery]:
        """Due pending deliveries, each pushed to `lease_until` so no other worker takes it."""
        ...

    async def record(self, delivery_id: int, attempt: DeliveryAttempt, state: DeliveryState,
                     next_attempt_at: dt.datetime) -> None: ...
    async def list(self, subscription_id: str, after: int | None,
                   limit: int) -> list[Delivery]: ...
    async def delete_for(self, subscription_id: str) -> None: ...


class AlertState(Protocol):
    """Study-sites and milestones as the tracker's events tell them, for alerts."""

    async def keep_study_site(self, info: StudySiteInfo) -> None:
        """Store it; an empty `time_zone` keeps the zone already stored."""
        ...
    async def set_time_zone(self, site: str, time_zone: str) -> None:
        """The registry says `site` (`sites/{id}`) is in this zone: all its study-sites."""
        ...
    async def study_sites_of(self, site: str) -> list[StudySiteInfo]: ...
    async def keep_milestone(self, milestone: TrackedMilestone, status: str) -> bool:
        """Store it; True if it had been alerted overdue (the flag is cleared when done)."""
        ...
    async def set_blocked(self, study_site: str, since: dt.datetime | None) -> None: ...

    async def claim_overdue(self, now: dt.datetime, limit: int) -> list[TrackedMilestone]:
        """Open milestones overdue at `now` at their site (`TrackedMilestone.overdue`), not
        alerted yet, now marked alerted."""
        ...

    async def claim_blocked(self, since_before: dt.datetime,
                            limit: int) -> list[tuple[StudySiteInfo, dt.datetime]]: ...


class WebhookSender(Protocol):
    async def send(self, due: DueDelivery, attempt: int) -> DeliveryAttempt:
        """POST it once; never raises, the outcome says what happened."""
        ...


class StudyDirectory(Protocol):
    """Which organisation sponsors each study, kept from the tracker's events."""

    async def sponsor_of(self, study: str) -> str | None: ...
    async def remember(self, study: str, sponsor_org: str) -> None: ...


class NotificationsUnitOfWork(Protocol):
    @property
    def log(self) -> NotificationLog: ...
    @property
    def subscriptions(self) -> SubscriptionRepository: ...
    @property
    def studies(self) -> StudyDirectory: ...
    @property
    def deliveries(self) -> DeliveryRepository: ...
    @property
    def alerts(self) -> AlertState: ...
    @property
    def inbox(self) -> Inbox: ...
    @property
    def requests(self) -> RequestLog: ...

    async def __aenter__(self) -> NotificationsUnitOfWork: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def commit(self) -> None: ...
