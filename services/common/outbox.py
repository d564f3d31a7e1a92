"""Transactional outbox: an event commits in the same transaction as the change
that caused it, and a relay publishes it to Kafka afterwards, retrying until the
broker has it. A broker that is down, slow or restarted loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import zlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    and_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.common.database import transaction
from services.common.events import Envelope
from services.common.metrics import OUTBOX_BACKLOG, OUTBOX_FAILURES, OUTBOX_PUBLISHED

log = structlog.get_logger(__name__)


def add_outbox_tables(metadata: MetaData) -> tuple[Table, Table]:
    """The outbox and the relay lease, in a service's own schema."""
    outbox = Table(
        "outbox",
        metadata,
        Column("seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
               autoincrement=True),
        Column("event_id", String(64), nullable=False, unique=True),
        Column("topic", String(255), nullable=False),
        Column("key", String(255), nullable=False),
        Column("ce_type", String(255), nullable=False),
        Column("ce_source", String(255), nullable=False),
        Column("ce_subject", String(512), nullable=False),
        Column("ce_time", DateTime(timezone=True), nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("published_at", DateTime(timezone=True), nullable=True, index=True),
        Column("attempts", Integer, nullable=False, default=0),
    )
    lease = Table(
        "outbox_relay_lease",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("holder", String(255), nullable=False),
        Column("expires_at", DateTime(timezone=True), nullable=False),
    )
    return outbox, lease


async def write(connection: AsyncConnection, outbox: Table, events: Sequence[Envelope]) -> None:
    """Add events to the outbox inside the caller's transaction."""
    if not events:
        return
    await connection.execute(
        outbox.insert(),
        [
            {
                "event_id": e.id,
                "topic": e.topic,
                "key": e.key,
                "ce_type": e.type,
                "ce_source": e.source,
                "ce_subject": e.subject,
                "ce_time": e.time,
                "payload": e.data,
                "attempts": 0,
            }
            for e in events
        ],
    )


class Publisher(Protocol):
    async def publish(self, events: Sequence[Envelope]) -> None:
        """Return only once the broker has acknowledged every event (acks=all)."""


class OutboxRelay:
    """Publishes committed outbox rows in order, then marks them published.

    One relay publishes at a time per database, so events leave in commit order
    however many replicas run: on PostgreSQL a transaction-level advisory lock
    elects the publisher of each batch (the others find it taken and wait for the
    next poll) and rows are claimed with `FOR UPDATE SKIP LOCKED`; on SQLite,
    where that clause is silently dropped, a lease row elects the publisher.
    (`SKIP LOCKED` alone would let a second replica publish a later batch before
    the first one's, out of order within a key.) Publishing is at-least-once (a
    crash between the broker's ack and the mark re-sends a batch); consumers
    dedupe on the event id.
    """

    LEASE_S = 10.0
    # Renewed at most this often: under load a batch goes out every few milliseconds, and
    # a transaction per batch only to extend the lease was a third of the relay's work.
    # A batch still starts with at least LEASE_S - LEASE_RENEW_S of the lease left.
    LEASE_RENEW_S = 1.0
    BACKLOG_REFRESH_S = 5.0  # how often the backlog gauge is recounted

    def __init__(
        self,
        engine: AsyncEngine,
        outbox: Table,
        lease: Table,
        publisher: Publisher,
        *,
        poll_interval_s: float = 0.5,
        batch_size: int = 500,
        service: str = "",
    ) -> None:
        self._engine = engine
        self._outbox = outbox
        self._lease = lease
        self._publisher = publisher
        self._poll_interval_s = poll_interval_s
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        self._sqlite = engine.dialect.name == "sqlite"
        # One advisory lock per outbox table (a database may hold several services' tables).
        self._advisory_key = zlib.crc32(f"sitenet.outbox:{outbox.fullname}".encode())
        self._task: asyncio.Task[None] | None = None
        self._lease_renewed_at = float("-inf")  # time.monotonic() of our last renewal
        self.published_total = 0
        self._published_metric = OUTBOX_PUBLISHED.labels(service)
        self._failures_metric = OUTBOX_FAILURES.labels(service)
        self._backlog_metric = OUTBOX_BACKLOG.labels(service)
        self._backlog_counted_at = 0.0

    def wake(self) -> None:
        """Called after a commit that wrote events, so they go out without waiting for a poll."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        """Flush what is committed (briefly), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.drain(), timeout=5)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def drain(self) -> None:
        while await self.relay_once() > 0:
            pass

    async def backlog(self) -> int:
        async with transaction(self._engine) as conn:
            result = await conn.execute(
                select(func.count()).select_from(self._outbox).where(
                    self._outbox.c.published_at.is_(None)
                )
            )
            return int(result.scalar_one())

    async def _refresh_backlog_metric(self) -> None:
        now = time.monotonic()
        if now - self._backlog_counted_at < self.BACKLOG_REFRESH_S:
            return
        self._backlog_counted_at = now
        self._backlog_metric.set(await self.backlog())

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._refresh_backlog_metric()
                sent = await self.relay_once()
                backoff = 0.2
                if sent:
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database down: keep the rows, retry later
                self._failures_metric.inc()
                log.warning("outbox relay failed; will retry", error=str(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_interval_s)
            self._wake.clear()

    async def relay_once(self) -> int:
        """Publish one batch; return how many events went out."""
        if self._sqlite:
            return await self._relay_with_lease()
        return await self._relay_skip_locked()

    async def _relay_skip_locked(self) -> int:
        o = self._outbox
        async with transaction(self._engine) as conn:
            elected = await conn.execute(
                select(func.pg_try_advisory_xact_lock(self._advisory_key)))
            if not elected.scalar_one():
                return 0  # another replica is publishing; the next poll tries again
            rows = (
                await conn.execute(
                    select(o)
                    .where(o.c.published_at.is_(None))
                    .order_by(o.c.seq)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            await self._publish_and_mark(conn, rows)
            return len(rows)

    async def _relay_with_lease(self) -> int:
        if not await self._take_lease():
            return 0
        o = self._outbox
        async with transaction(self._engine) as conn:
            rows = (
                await conn.execute(
                    select(o)
                    .where(o.c.published_at.is_(None))
                    .order_by(o.c.seq)
                    .limit(self._batch_size)
                )
            ).all()
        if not rows:
            return 0
        # Publish outside any transaction: SQLite has one writer, and a slow or absent
        # broker must not hold up the service's own writes. The lease keeps it ours.
        await self._publisher.publish(self._envelopes(rows))
        async with transaction(self._engine) as conn:
            await self._mark(conn, rows)
        return len(rows)

    async def _take_lease(self) -> bool:
        if time.monotonic() - self._lease_renewed_at < self.LEASE_RENEW_S:
            return True
        renewing_at = time.monotonic()
        now = datetime.now(UTC)
        lease = self._lease
        async with transaction(self._engine) as conn:
            await conn.execute(
                sqlite_insert(lease)
                .values(id=1, holder=self._holder, expires_at=now)
                .on_conflict_do_nothing(index_elements=["id"])
            )
            result = await conn.execute(
                update(lease)
                .where(
                    and_(
                        lease.c.id == 1,
                        or_(lease.c.holder == self._holder, lease.c.expires_at < now),
                    )
                )
                .values(holder=self._holder, expires_at=now + timedelta(seconds=self.LEASE_S))
            )
        if result.rowcount:
            self._lease_renewed_at = renewing_at
            return True
        self._lease_renewed_at = float("-inf")
        return False

    @staticmethod
    def _envelopes(rows: Sequence[Any]) -> list[Envelope]:
        return [
            Envelope(id=r.event_id, type=r.ce_type, source=r.ce_source, subject=r.ce_subject,
                     time=_utc(r.ce_time), topic=r.topic, key=r.key, data=r.payload)
            for r in rows
        ]

    async def _mark(self, conn: AsyncConnection, rows: Sequence[Any]) -> None:
        o = self._outbox
        await conn.execute(
            update(o).where(o.c.seq.in_([r.seq for r in rows])).values(
                published_at=datetime.now(UTC), attempts=o.c.attempts + 1
            )
        )
        self.published_total += len(rows)
        self._published_metric.inc(len(rows))

    async def _publish_and_mark(self, conn: AsyncConnection, rows: Sequence[Any]) -> None:
        await self._publisher.publish(self._envelopes(rows))
        await self._mark(conn, rows)


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were stored in UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
