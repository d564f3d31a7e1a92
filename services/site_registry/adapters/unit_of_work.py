"""The registry's unit of work over SQL."""

from __future__ import annotations

from services.common.unit_of_work import SqlRequestLog, SqlUnitOfWork
from services.site_registry.adapters.repository import SqlAuditLog, SqlSiteRepository
from services.site_registry.adapters.tables import request_log


class RegistrySqlUnitOfWork(SqlUnitOfWork):
    sites: SqlSiteRepository
    requests: SqlRequestLog
    audit: SqlAuditLog

    def _open(self) -> None:
        self.sites = SqlSiteRepository(self.connection)
        self.requests = SqlRequestLog(self.connection, request_log)
        self.audit = SqlAuditLog(self.connection)
