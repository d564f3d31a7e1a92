"""Idempotent consumers: each event id is recorded in the same transaction as its
effect, so a replayed or duplicated event changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, DateTime, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection


def add_inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("event_id", String(64), primary_key=True),
        Column("ce_type", String(255), nullable=False),
        Column("processed_at", DateTime(timezone=True), nullable=False),
    )


async def claim(conn: AsyncConnection, inbox: Table, event_id: str, ce_type: str) -> bool:
    """True if this event is new (and is now recorded); False if it was processed before.

    Call inside the transaction that applies the event: if that transaction
    rolls back, the claim goes with it and a redelivery is processed again.
    """
    seen = await conn.execute(select(inbox.c.event_id).where(inbox.c.event_id == event_id))
    if seen.first() is not None:
        return False
    await conn.execute(inbox.insert(), {"event_id": event_id, "ce_type": ce_type,
                                        "processed_at": datetime.now(UTC)})
    return True


class SqlInbox:
    def __init__(self, conn: AsyncConnection, table: Table) -> None:
        self._conn = conn
        self._table = table

    async def claim(self, event_id: str, ce_type: str) -> bool:
        return await claim(self._conn, self._table, event_id, ce_type)
