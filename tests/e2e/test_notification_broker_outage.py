"""A broker outage delays notifications but loses none: the broker process is frozen
(SIGSTOP) while milestones are recorded, then thawed."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from services.common.broker import EmbeddedBroker
from sitenet.events.v1 import events_pb2
from tests.support.notify import plan, stream
from tests.support.ports import free_port
from tests.support.scenario import add_study_site, create_site, create_study
from tests.support.system import running_system


async def test_broker_outage_delays_but_loses_nothing(tmp_path: Path) -> None:
    with EmbeddedBroker("127.0.0.1", free_port(), tmp_path / "tansu.log") as broker:
        async with running_system("sqlite", broker.bootstrap, tmp_path) as system:
            site = await create_site(system)
            study = await create_study(system)
            ss = (await add_study_site(system, study.name, site.name)).name
            watcher = stream(system, cursor="0", studies=[study.name],
                             event_types=["sitenet.events.v1.MilestoneRecorded"])
            await plan(system, ss, "site-selected", "2027-01-01")
            await watcher.wait_for(1)

            assert broker.pid is not None
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                planned = [f"2027-01-{d:02d}" for d in range(2, 7)]
                for when in planned:  # the tracker still answers: its outbox keeps them
                    await plan(system, ss, "site-selected", when)
                await asyncio.sleep(1.0)
                assert len(watcher.items) == 1  # nothing can arrive meanwhile
            finally:
                os.kill(broker.pid, signal.SIGCONT)
            items = await watcher.wait_for(6, timeout_s=45)
            await asyncio.sleep(0.5)
            await watcher.close()
    got = []
    for n in items:
        p = events_pb2.MilestoneRecorded.FromString(n.event.value).after.planned_date
        got.append(f"{p.year}-{p.month:02d}-{p.day:02d}")
    assert got == ["2027-01-01", *planned]
