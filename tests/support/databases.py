"""Throwaway databases for tests: a SQLite file, or a fresh PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg

# The local server of these machines; another can be named for the tests.
POSTGRES_ADMIN_DSN = os.environ.get("SITENET_TEST_POSTGRES_DSN",
                                    "postgresql://postgres@127.0.0.1:5432/postgres")


def _with_database(dsn: str, name: str) -> str:
    base = dsn.rsplit("/", 1)[0]
    return f"{base}/{name}"


@asynccontextmanager
async def postgres_database(admin_dsn: str | None = None) -> AsyncIterator[str]:
    """A new, empty database on the server of `admin_dsn` (default: the local test
    server); dropped afterwards. Yields an SQLAlchemy asyncpg URL."""
    admin_dsn = admin_dsn or POSTGRES_ADMIN_DSN
    name = f"sitenet_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _with_database(admin_dsn, name).replace("postgresql://",
                                                     "postgresql+asyncpg://")
    finally:
        admin = await asyncpg.connect(admin_dsn)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


@asynccontextmanager
async def database(backend: str, directory: Path, service: str,
                   postgres_dsn: str | None = None) -> AsyncIterator[str]:
    """`postgres_dsn`: the admin DSN of the server to use (default: the local test server)."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / f'{service}.db'}"
    else:
        async with postgres_database(postgres_dsn) as url:
            yield url
