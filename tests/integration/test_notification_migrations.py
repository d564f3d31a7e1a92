"""The notification service's Alembic revisions, on SQLite and PostgreSQL: a new
database migrated to head has exactly the schema `tables.py` declares."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from services.common.database import create_engine
from services.notifications.adapters import tables
from services.notifications.bootstrap import MIGRATIONS
from tests.support.databases import database


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
