"""Database engines (SQLite by default, PostgreSQL in production) and migrations."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.common.sqlite_inline import inline_connector


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str) -> AsyncEngine:
    if is_sqlite(url):
        path = make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, async_creator=inline_connector(url, timeout=30))

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers go on while the one writer commits; the busy
            # timeout makes a second writer wait instead of failing.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            # BEGIN IMMEDIATE takes the write lock up front, so read-then-write
            # transactions serialise instead of failing on upgrade.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        # pysqlite's own BEGIN handling must be off for the BEGIN above to be ours.
        @event.listens_for(engine.sync_engine, "connect", insert=True)
        def _no_auto_begin(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


# One turn at a time per SQLite engine (see `transaction_turn`).
_SQLITE_TURNS: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()
# As long as SQLite's busy timeout: a turn waited for longer is an unavailable database.
TURN_TIMEOUT_S = 30.0


@contextlib.asynccontextmanager
async def transaction_turn(engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold this around every transaction on `engine`.

    On SQLite every transaction begins IMMEDIATE and a file has one writer, so concurrent
    transactions queue. Left to SQLite, a waiting connection sleeps in its busy handler in
    steps of up to 100 ms, whether or not the lock has long been free: under load most of
    the time went there. Queued here, in asyncio, the next transaction starts the moment
    the last one ends. On PostgreSQL this does nothing: rows are locked, not the database.
    """
    if engine.dialect.name != "sqlite":
        yield
        return
    turn = _SQLITE_TURNS.setdefault(engine.sync_engine, asyncio.Lock())
    async with asyncio.timeout(TURN_TIMEOUT_S):
        await turn.acquire()
    try:
        yield
    finally:
        turn.release()


@contextlib.asynccontextmanager
async def transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction, in its turn; committed unless the block raises."""
    async with transaction_turn(engine), engine.begin() as connection:
        yield connection


# Alembic keeps its migration context in module globals: one migration at a time per process.
_MIGRATION_LOCK = threading.Lock()
# ... and across processes on PostgreSQL, with this advisory lock key ("sitenet" + 1).
MIGRATION_ADVISORY_LOCK = 0x736974656E6574 + 1


def migrate(url: str, script_location: Path) -> None:
    """Bring the database at `url` to the newest revision under `script_location`."""
    with _MIGRATION_LOCK:
        _migrate(url, script_location)


def _migrate(url: str, script_location: Path) -> None:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")


async def migrate_async(url: str, script_location: Path) -> None:
    # Alembic's env runs its own event loop for the async driver, so it gets a thread.
    await asyncio.to_thread(migrate, url, script_location)


def run_migrations_env(target_metadata: Any) -> None:
    """Body of every service's `migrations/env.py`: online migrations over the async driver."""
    from alembic import context

    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None

    def do_run(connection: Any) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=is_sqlite(url),  # SQLite alters tables by copying them
        )
        with context.begin_transaction():
            if not is_sqlite(url):
                # Replicas of a Deployment start together and each migrates: one at a time,
                # the others then find the database at head (lock released at commit).
                connection.exec_driver_sql(
                    f"SELECT pg_advisory_xact_lock({MIGRATION_ADVISORY_LOCK})")
            context.run_migrations()

    async def run() -> None:
        engine = create_engine(url)
        try:
            async with engine.connect() as connection:
                await connection.run_sync(do_run)
                await connection.commit()
        finally:
            await engine.dispose()

    asyncio.run(run())
