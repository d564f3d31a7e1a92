"""The SQL unit of work every service builds on: one connection, one transaction;
the events the use case emitted go into the outbox in that same transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Self

from sqlalchemy import Column, DateTime, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common import outbox
from services.common.database import transaction_turn
from services.common.events import Envelope


def add_request_log_table(metadata: MetaData) -> Table:
    """AIP-155 request ids already answered, so a retried create or update is not applied twice."""
    return Table(
        "request_log",
        metadata,
        Column("request_id", String(64), primary_key=True),
        Column("resource_name", String(512), nullable=False),
        Column("create_time", DateTime(timezone=True), nullable=False),
    )


class SqlRequestLog:
    def __init__(self, conn: AsyncConnection, table: Table) -> None:
        self._conn = conn
        self._table = table

    async def seen(self, request_id: str) -> str | None:
        row = (await self._conn.execute(
            select(self._table.c.resource_name).where(self._table.c.request_id == request_id)
        )).first()
        return str(row[0]) if row else None

    async def remember(self, request_id: str, resource_name: str) -> None:
        await self._conn.execute(self._table.insert().values(
            request_id=request_id, resource_name=resource_name, create_time=datetime.now(UTC)))


class SqlUnitOfWork:
    """Subclasses attach repositories in `_open` (they all share `self.connection`)."""

    def __init__(self, engine: AsyncEngine, outbox_table: Table,
                 encode: Callable[[Any], list[Envelope]],
                 on_commit: Callable[[], None] = lambda: None) -> None:
        self._engine = engine
        self._outbox = outbox_table
        self._encode = encode
        self._on_commit = on_commit
        self._events: list[Any] = []
        self._connection: AsyncConnection | None = None
        self._turn: contextlib.AsyncExitStack | None = None

    @property
    def connection(self) -> AsyncConnection:
        assert self._connection is not None, "use the unit of work in `async with`"
        return self._connection

    def _open(self) -> None:
        """Attach repositories to `self.connection`."""

    async def __aenter__(self) -> Self:
        self._events = []
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(transaction_turn(self._engine))
            self._connection = await stack.enter_async_context(self._engine.connect())
            await self._connection.begin()
            self._open()
            self._turn = stack.pop_all()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._connection is not None and self._turn is not None
        try:
            if self._connection.in_transaction():
                await self._connection.rollback()
        finally:
            self._connection = None
            turn, self._turn = self._turn, None
            await turn.aclose()  # closes the connection, then ends the turn

    def emit(self, event: Any) -> None:
        self._events.append(event)

    async def commit(self) -> None:
        envelopes = [e for event in self._events for e in self._encode(event)]
        await outbox.write(self.connection, self._outbox, envelopes)
        await self.connection.commit()
        self._events = []
        if envelopes:
            self._on_commit()
