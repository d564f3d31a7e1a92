"""PostgreSQL restarted under load: calls fail cleanly with UNAVAILABLE and the services
recover without being restarted. For an operator, against a PostgreSQL server of their
OWN -- this restarts the server: never point it at a shared one.

    .venv/bin/python bench/fault_postgres_restart.py \\
        --dsn postgresql://postgres@127.0.0.1:5433/postgres \\
        --restart "pg_ctl -D /tmp/pgdata restart -m fast" \\
        --duration 60

It starts an embedded broker (or uses --kafka), creates throwaway databases on the
server of --dsn (the DSN's user must be allowed to CREATE DATABASE), runs the three
services in this process, and keeps site staff writing milestones and sponsors reading
while it runs --restart once, a third of the way in. It prints the counts of calls by
status, of acknowledged writes and of those found in the history afterwards, and exits
1 if any call ended in INTERNAL or UNKNOWN, if an acknowledged write is missing, or if
calls do not succeed again after the restart.

A server of your own for it: `.venv/bin/python -m tests.support.private_postgres` starts
one in a temporary directory and prints its --dsn and --restart. The automated test
that restarts such a server is
tests/integration/test_faults.py::test_postgres_restarted_under_load_fails_cleanly_and_recovers;
the one that needs no restart (connections terminated with
pg_terminate_backend on the shared test server) is
tests/integration/test_faults.py::test_cut_database_connections_fail_cleanly_and_recover.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True,
                        help="admin DSN of YOUR PostgreSQL server (databases are made there)")
    parser.add_argument("--restart", required=True,
                        help="shell command that restarts that server")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument("--kafka", default="", help="bootstrap of a broker (default: embedded)")
    return parser.parse_args()


async def _run(args: argparse.Namespace, bootstrap: str, directory: Path) -> int:
    import grpc

    from sitenet.startup.v1 import startup_pb2 as spb
    from tests.support.scenario import add_study_site, create_site, create_study, day
    from tests.support.system import running_system

    codes: Counter[str] = Counter()
    acknowledged: list[tuple[str, str]] = []
    # The throwaway databases go to the server of --dsn.
    async with running_system("postgres", bootstrap, directory,
                              postgres_dsn=args.dsn) as system:
        study = await create_study(system)
        study_sites = []
        for _ in range(args.writers):
            site = await create_site(system)
            study_sites.append((await add_study_site(system, study.name, site.name)).name)
        stop = asyncio.Event()

        async def writer(ss: str, w: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                reason = f"w{w}-{i}"
                try:
                    await system.tracker.RecordMilestone(spb.RecordMilestoneRequest(
                        study_site=ss, milestone="site-selected", status=spb.DONE,
                        actual_date=day("2026-01-05"), reason=reason, note=reason),
                        metadata=system.admin, timeout=10)
                    acknowledged.append((ss, reason))
                    codes["write OK"] += 1
                except grpc.aio.AioRpcError as error:
                    codes[f"write {error.code().name}"] += 1
                    await asyncio.sleep(0.2)

        async def reader() -> None:
            while not stop.is_set():
                try:
                    await system.tracker.GetActivationSummary(spb.GetActivationSummaryRequest(
                        name=study.name), metadata=system.admin, timeout=10)
                    codes["read OK"] += 1
                except grpc.aio.AioRpcError as error:
                    codes[f"read {error.code().name}"] += 1
                    await asyncio.sleep(0.2)

        tasks = [asyncio.create_task(writer(ss, w)) for w, ss in enumerate(study_sites)]
        tasks += [asyncio.create_task(reader()) for _ in range(args.readers)]
        started = time.monotonic()
        await asyncio.sleep(args.duration / 3)
        print(f"restarting PostgreSQL: {args.restart}", flush=True)
        restart = await asyncio.to_thread(subprocess.run, args.restart, shell=True, check=False)
        print(f"restart command exited {restart.returncode} after "
              f"{time.monotonic() - started:.1f}s of load", flush=True)
        await asyncio.sleep(max(0.0, args.duration - (time.monotonic() - started)))
        stop.set()
        await asyncio.gather(*tasks)

        # Recovered without a restart of the services?
        recovered = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not recovered:
            try:
                await system.tracker.GetStudy(spb.GetStudyRequest(name=study.name),
                                              metadata=system.admin, timeout=5)
                recovered = True
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.5)
        stored: set[tuple[str, str]] = set()
        if recovered:
            for ss in study_sites:
                history = await system.tracker.ListMilestoneHistory(
                    spb.ListMilestoneHistoryRequest(parent=ss, page_size=1000),
                    metadata=system.admin)
                stored |= {(ss, e.reason) for e in history.entries
                           if e.milestone != "study-site"}  # not the site's joining entry
    missing = [a for a in acknowledged if a not in stored]
    bad = {k: v for k, v in codes.items() if k.endswith(("INTERNAL", "UNKNOWN"))}
    print("calls by outcome:", dict(sorted(codes.items())))
    print(f"acknowledged={len(acknowledged)} stored={len(stored)} missing={len(missing)} "
          f"recovered_without_restart={recovered}")
    ok = recovered and not missing and not bad
    print("RESULT:", "held" if ok else "FAILED")
    return 0 if ok else 1


def main() -> int:
    args = _arguments()
    from services.common.broker import EmbeddedBroker
    from services.common.logs import configure_logging
    from tests.support.ports import free_port

    # As `sitenet serve` logs (JSON, warnings and up, to stderr): structlog's default would
    # draw each traceback with rich, holding the services' event loop for seconds.
    configure_logging("fault-bench", "WARNING")

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        if args.kafka:
            return asyncio.run(_run(args, args.kafka, directory))
        with EmbeddedBroker("127.0.0.1", free_port(), directory / "broker.log") as broker:
            return asyncio.run(_run(args, broker.bootstrap, directory))


if __name__ == "__main__":
    sys.exit(main())
