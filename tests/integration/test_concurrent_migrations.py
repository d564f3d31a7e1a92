"""Replicas starting together (a Deployment's first rollout) each migrate the same
PostgreSQL database: they take turns, and every one of them starts."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.support.databases import postgres_database

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "services" / "site_registry" / "adapters" / "migrations"


@pytest.mark.postgres
async def test_replicas_migrating_at_once_all_succeed() -> None:
    async with postgres_database() as url:
        code = ("import sys; from pathlib import Path; "
                "from services.common.database import migrate; "
                "migrate(sys.argv[1], Path(sys.argv[2]))")
        processes = [await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, url, str(MIGRATIONS), cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for _ in range(4)]
        results = await asyncio.gather(*(p.communicate() for p in processes))
        failures = [err.decode()[-2000:] for p, (_out, err) in zip(processes, results, strict=True)
                    if p.returncode != 0]
        assert not failures, "\n\n".join(failures)
