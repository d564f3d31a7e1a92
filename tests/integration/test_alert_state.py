"""The alert state in SQL, on SQLite and PostgreSQL: overdue milestones are claimed by
the date at their site, and those not overdue yet never hold back those that are."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from services.common.database import create_engine, migrate_async
from services.notifications.adapters import tables
from services.notifications.adapters.unit_of_work import NotificationsSqlUnitOfWork
from services.notifications.bootstrap import MIGRATIONS
from services.notifications.domain.model import StudySiteInfo, TrackedMilestone
from tests.support.databases import database


@pytest.fixture
async def engine(backend: str, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with database(backend, tmp_path, "notifications") as url:
        await migrate_async(url, MIGRATIONS)
        engine = create_engine(url)
        try:
            yield engine
        finally:
            await engine.dispose()


async def test_claims_by_the_date_at_the_site_in_pages_once(engine: AsyncEngine) -> None:
    def uow() -> NotificationsSqlUnitOfWork:
        return NotificationsSqlUnitOfWork(engine, tables.outbox, lambda _e: [])

    due = dt.date(2026, 3, 10)
    # In claiming order (due date, then name): three in Los Angeles, then one in Seoul.
    zones = {"a1": "America/Los_Angeles", "a2": "America/Los_Angeles",
             "a3": "America/Los_Angeles", "z": "Asia/Seoul"}
    async with uow() as unit:
        for site, zone in zones.items():
            where = StudySiteInfo(name=f"studies/s/sites/{site}", study="studies/s",
                                  site=f"sites/{site}", time_zone=zone)
            await unit.alerts.keep_study_site(where)
            await unit.alerts.keep_milestone(
                TrackedMilestone(where, "cda-executed", "CDA executed", "CDA", due), "PLANNED")
        await unit.commit()

    async def claim(now: dt.datetime, limit: int) -> list[str]:
        async with uow() as unit:
            claimed = await unit.alerts.claim_overdue(now, limit)
            await unit.commit()
        return [m.where.site for m in claimed]

    # 06:00 UTC on 03-11: past midnight in Seoul, 23:00 on 03-10 in Los Angeles. With
    # pages of two, the first holds only Los Angeles sites: Seoul's is still found.
    morning = dt.datetime(2026, 3, 11, 6, tzinfo=dt.UTC)
    assert await claim(morning, 2) == ["sites/z"]
    assert await claim(morning, 2) == []
    la_midnight = dt.datetime(2026, 3, 11, 7, tzinfo=dt.UTC)
    assert await claim(la_midnight, 2) == ["sites/a1", "sites/a2"]  # the limit holds
    assert await claim(la_midnight, 2) == ["sites/a3"]
    assert await claim(la_midnight + dt.timedelta(days=30), 2) == []
