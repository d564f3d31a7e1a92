"""`sitenet tail` and `sitenet subscriptions`, run as the operator would, against a
running system."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from tests.support.notify import plan
from tests.support.scenario import add_study_site, create_site, create_study
from tests.support.system import RunningSystem

SITENET = str(Path(sys.executable).parent / "sitenet")


def _env(system: RunningSystem) -> dict[str, str]:
    return {**os.environ, "SITENET_NOTIFICATIONS_PORT": str(system.notifications_app.server.port),
            "SITENET_TOKEN": system.token("admin", subject="ops-cli"),
            "SITENET_DATA_DIR": str(system.settings.data_dir)}


async def _run(system: RunningSystem, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        SITENET, *args, env=_env(system), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_subscriptions_commands_and_tail(shared_system: RunningSystem) -> None:
    system = shared_system
    site = await create_site(system, name_en="Samsung Medical Center")
    study = await create_study(system)
    ss = await add_study_site(system, study.name, site.name)

    code, out, _ = await _run(system, "subscriptions", "create", "--study", study.name,
                              "--type", "sitenet.events.v1.MilestoneRecorded", "--name", "ops")
    assert code == 0 and out.startswith("subscriptions/")
    name = out.strip()
    code, out, _ = await _run(system, "subscriptions", "list")
    assert code == 0 and name in out and study.name in out
    code, _, err = await _run(system, "subscriptions", "create", "--study", "bad")
    assert code == 1 and "INVALID_ARGUMENT" in err and "subscription.filter.studies" in err

    tail = await asyncio.create_subprocess_exec(
        SITENET, "tail", "--study", study.name, "--cursor", "0", env=_env(system),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await plan(system, ss.name, "site-selected", "2027-05-01")
        lines = []
        assert tail.stdout is not None
        while not any("Site selection" in line or "site-selected" in line.lower()
                      or "planned" in line for line in lines):
            lines.append((await asyncio.wait_for(tail.stdout.readline(), 15)).decode())
        assert any("Samsung Medical Center" in line for line in lines)
        assert lines[0].split()[0].isdigit()  # each line starts with its cursor
    finally:
        tail.terminate()
        await tail.wait()

    code, out, _ = await _run(system, "subscriptions", "delete", name)
    assert code == 0
    code, out, _ = await _run(system, "subscriptions", "list")
    assert name not in out
