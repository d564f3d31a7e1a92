"""The tracker's unit of work over SQL."""

from __future__ import annotations

from services.common.inbox import SqlInbox
from services.common.unit_of_work import SqlRequestLog, SqlUnitOfWork
from services.startup_tracker.adapters.repository import (
    SqlCountryApprovalRepository,
    SqlMilestoneHistory,
    SqlSiteDocuments,
    SqlSiteReplicaRepository,
    SqlStudyRepository,
    SqlStudySiteRepository,
)
from services.startup_tracker.adapters.tables import inbox, request_log


class TrackerSqlUnitOfWork(SqlUnitOfWork):
    studies: SqlStudyRepository
    study_sites: SqlStudySiteRepository
    sites: SqlSiteReplicaRepository
    history: SqlMilestoneHistory
    approvals: SqlCountryApprovalRepository
    documents: SqlSiteDocuments
    inbox: SqlInbox
    requests: SqlRequestLog

    def _open(self) -> None:
        conn = self.connection
        self.studies = SqlStudyRepository(conn)
        self.study_sites = SqlStudySiteRepository(conn)
        self.sites = SqlSiteReplicaRepository(conn)
        self.history = SqlMilestoneHistory(conn)
        self.approvals = SqlCountryApprovalRepository(conn)
        self.documents = SqlSiteDocuments(conn)
        self.inbox = SqlInbox(conn, inbox)
        self.requests = SqlRequestLog(conn, request_log)
