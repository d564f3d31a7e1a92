"""What the notification service's use cases need from storage."""

from __future__ import annotations

from typing import Protocol

from services.common.identity import Principal
from services.common.ports import Inbox, RequestLog
from services.notifications.domain.model import Notification, NotificationFilter, Subscription


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
    async def list(self, owner: str | None, after: str | None, limit: int) -> list[Subscription]: ...


class StudyDirectory(Protocol):
    """Which organisation sponsors each study, kept from the tracker's events."""

    async def sponsor_of(self, study: str) -> str | None: ...
    async def remember(self, study: str, sponsor_org: str) -> None: ...


class NotificationsUnitOfWork(Protocol):
    log: NotificationLog
    subscriptions: SubscriptionRepository
    studies: StudyDirectory
    inbox: Inbox
    requests: RequestLog

    async def __aenter__(self) -> NotificationsUnitOfWork: ...
    async def __aexit__(self, *exc: object) -> None: ...
    async def commit(self) -> None: ...
