"""Several relay replicas on one database (a Deployment scaled out): every event goes
out exactly once per successful batch, and in commit order, on both backends."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from sqlalchemy import MetaData

from services.common.database import create_engine
from services.common.events import Envelope
from services.common.outbox import OutboxRelay, add_outbox_tables, write
from tests.support.databases import database


class SlowPublisher:
    """Records what it is given, after a varying delay, so that replicas overlap and a
    later batch would overtake an earlier one if two were in flight."""

    def __init__(self, sent: list[str], seed: int) -> None:
        self.sent = sent
        self._random = random.Random(seed)

    async def publish(self, events: Sequence[Envelope]) -> None:
        await asyncio.sleep(self._random.uniform(0.0, 0.03))
        self.sent.extend(e.id for e in events)


async def test_replicated_relays_publish_once_in_order(backend: str, tmp_path: Path) -> None:
    async with database(backend, tmp_path, "outbox") as url:
        engine = create_engine(url)
        metadata = MetaData()
        outbox, lease = add_outbox_tables(metadata)
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
        events = [Envelope(type="t", source="//test", subject=f"sites/s{i % 7}", topic="t",
                           key=f"s{i % 7}", data=b"x") for i in range(300)]
        for start in range(0, len(events), 10):  # 30 commits, as 30 RPCs would make
            async with engine.begin() as conn:
                await write(conn, outbox, events[start:start + 10])

        sent: list[str] = []
        relays = [OutboxRelay(engine, outbox, lease, SlowPublisher(sent, seed), batch_size=25)
                  for seed in range(3)]

        async def run(relay: OutboxRelay) -> None:
            for _ in range(200):
                await relay.relay_once()
                if len(sent) >= len(events):
                    return

        try:
            await asyncio.wait_for(asyncio.gather(*(run(r) for r in relays)), timeout=60)
            assert sent == [e.id for e in events]
            assert await relays[0].backlog() == 0
        finally:
            await engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
