"""The notification service's Alembic revisions, on SQLite and PostgreSQL: a new
database migrated to head has exactly the schema `tables.py` declares, and one of an
older revision keeps its rows through the upgrade."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Boolean, Date, column, select, table

from services.common.database import create_engine
from services.common.identity import Principal, Role
from services.notifications.adapters import tables
from services.notifications.adapters.unit_of_work import NotificationsSqlUnitOfWork
from services.notifications.bootstrap import MIGRATIONS
from services.notifications.domain.model import ALERT_TYPE, EventFacts, NotificationFilter
from services.notifications.service_layer.handlers import IncomingEvent, NotificationsService
from tests.support.databases import database

# The alert tables as revision 0001 made them.
OLD_STUDY_SITES = table(
    "alert_study_sites", *(column(c) for c in (
        "name", "study", "site", "sponsor_org", "country_code", "region_code",
        "protocol_number", "site_name_en", "site_name_ko")),
    column("blocked_alerted", Boolean))
OLD_MILESTONES = table(
    "alert_milestones", *(column(c) for c in (
        "study_site", "milestone", "name_en", "name_ko", "status")),
    column("due_date", Date), column("overdue_alerted", Boolean))


async def migrate_to(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    # The env runs its own event loop (async driver): in a thread, as the services do.
    await asyncio.to_thread(command.upgrade, config, revision)


@pytest.fixture
async def url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    async with database(backend, tmp_path, "notifications") as url:
        yield url


async def test_a_new_database_migrated_to_head_has_the_declared_schema(url: str) -> None:
    await migrate_to(url, "head")
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            def diff(sync_conn: Any) -> list[Any]:
                return list(compare_metadata(MigrationContext.configure(sync_conn),
                                             tables.metadata))
            differences = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert differences == []


async def test_upgrade_keeps_alert_state_and_judges_it_by_the_country_zone_until_told(
        url: str) -> None:
    """A database of revision 0001 with study-sites and open milestones: after the
    upgrade a site is judged by its country's zone as the registry defaults it (UTC for
    a country without one, as before), until an event says the site's own zone."""
    await migrate_to(url, "0001")
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            for site, country, region in (("old-a", "KR", "KR-11"), ("old-b", "US", "US-CA")):
                await conn.execute(OLD_STUDY_SITES.insert().values(
                    name=f"studies/s1/sites/{site}", study="studies/s1", site=f"sites/{site}",
                    sponsor_org="acme", country_code=country, region_code=region,
                    protocol_number="S-1", site_name_en=site, site_name_ko=site,
                    blocked_alerted=False))
                await conn.execute(OLD_MILESTONES.insert().values(
                    study_site=f"studies/s1/sites/{site}", milestone="cda-executed",
                    name_en="CDA executed", name_ko="CDA", status="PLANNED",
                    due_date=dt.date(2026, 3, 10), overdue_alerted=False))

        await migrate_to(url, "head")

        def uow() -> NotificationsSqlUnitOfWork:
            return NotificationsSqlUnitOfWork(engine, tables.outbox, lambda _e: [])

        service = NotificationsService(uow)
        async with engine.connect() as conn:
            zones = (await conn.execute(select(tables.alert_study_sites.c.time_zone)
                                        .order_by(tables.alert_study_sites.c.name))).all()
        assert [z for (z,) in zones] == ["Asia/Seoul", "UTC"]

        # The registry tells old-b's zone; then a tracker event of old-b that does not
        # say (written before events carried it) keeps it.
        told = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
        await service.ingest_batch([
            IncomingEvent("e1", "sites/old-b", told, EventFacts(
                event_type="sitenet.events.v1.SiteUpdated", site="sites/old-b",
                status="ACTIVE", before_status="ACTIVE",
                time_zone="America/Los_Angeles"), b""),
            IncomingEvent("e2", "studies/s1/sites/old-b/milestones/irb-submitted", told,
                          EventFacts(event_type="sitenet.events.v1.MilestoneRecorded",
                                     study="studies/s1", site="sites/old-b",
                                     study_site="studies/s1/sites/old-b",
                                     milestone="irb-submitted", status="PLANNED"), b"")])

        seen = 0

        async def overdue_at(now: dt.datetime) -> set[str]:
            """The sites of the alerts a check at `now` raises."""
            nonlocal seen
            await service.check_alerts(now)
            async with uow() as unit:
                rows = await unit.log.after(seen, 100, NotificationFilter(
                    event_types=(ALERT_TYPE,)), Principal("admin", Role.ADMIN))
                seen = await unit.log.latest_cursor()
            return {n.site for n in rows}

        # Seoul's midnight after the due date is 15:00Z; Los Angeles's (PDT from 8 March)
        # is 07:00Z the next day.
        assert await overdue_at(dt.datetime(2026, 3, 10, 14, 59, tzinfo=dt.UTC)) == set()
        assert await overdue_at(dt.datetime(2026, 3, 10, 15, 0, tzinfo=dt.UTC)) == {
            "sites/old-a"}
        assert await overdue_at(dt.datetime(2026, 3, 11, 6, 59, tzinfo=dt.UTC)) == set()
        assert await overdue_at(dt.datetime(2026, 3, 11, 7, 0, tzinfo=dt.UTC)) == {
            "sites/old-b"}
        assert await overdue_at(dt.datetime(2026, 3, 12, tzinfo=dt.UTC)) == set()  # once
    finally:
        await engine.dispose()
