"""The notification service's unit of work over SQL."""

from __future__ import annotations

from services.common.inbox import SqlInbox
from services.common.unit_of_work import SqlRequestLog, SqlUnitOfWork
from services.notifications.adapters.repository import (
    SqlAlertState,
    SqlDeliveryRepository,
    SqlNotificationLog,
    SqlStudyDirectory,
    SqlSubscriptionRepository,
)
from services.notifications.adapters.tables import inbox, request_log


class NotificationsSqlUnitOfWork(SqlUnitOfWork):
    log: SqlNotificationLog
    subscriptions: SqlSubscriptionRepository
    studies: SqlStudyDirectory
    deliveries: SqlDeliveryRepository
    alerts: SqlAlertState
    inbox: SqlInbox
    requests: SqlRequestLog

    def _open(self) -> None:
        conn = self.connection
        self.log = SqlNotificationLog(conn)
        self.subscriptions = SqlSubscriptionRepository(conn)
        self.studies = SqlStudyDirectory(conn)
        self.deliveries = SqlDeliveryRepository(conn)
        self.alerts = SqlAlertState(conn)
        self.inbox = SqlInbox(conn, inbox)
        self.requests = SqlRequestLog(conn, request_log)
