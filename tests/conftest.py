"""Fixtures with the real pieces: the embedded broker (or SITENET_TEST_KAFKA_BOOTSTRAP),
SQLite and PostgreSQL, and the services on free loopback ports."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import structlog

from services.common.broker import EmbeddedBroker
from tests.support.ports import free_port
from tests.support.private_postgres import PrivatePostgres, Unavailable
from tests.support.system import RunningSystem, running_system

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session", autouse=True)
def plain_log_tracebacks() -> None:
    """The services log through structlog, which nothing configures in the test process;
    its default console renderer draws each traceback with rich, locals and all. On these
    2-core machines one such line held the event loop -- and with it every service under
    test -- for up to 2.9 s (seen in the PostgreSQL restart test). Plain tracebacks, as
    services/common/logs.py writes them in production."""
    processors = list(structlog.get_config()["processors"])
    if processors and isinstance(processors[-1], structlog.dev.ConsoleRenderer):
        processors[-1] = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback)
        structlog.configure(processors=processors)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One broker for the session; tests isolate themselves by topic prefix and group id."""
    external = os.environ.get("SITENET_TEST_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker("127.0.0.1", free_port(), log) as broker:
        yield broker.bootstrap


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of the test's own (free port, temporary directory), started;
    for faults the shared server must not see (a restart). Its programs (initdb, pg_ctl)
    come with the PostgreSQL server the suite needs anyway, so without them the test
    fails, saying why, rather than passing unseen."""
    try:
        server = PrivatePostgres.create()
    except Unavailable as exc:
        pytest.fail(f"no private PostgreSQL server can be made here: {exc}", pytrace=False)
    try:
        server.start()
        yield server
    finally:
        server.destroy()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def system(backend: str, kafka_bootstrap: str,
                 tmp_path: Path) -> AsyncIterator[RunningSystem]:
    """A whole sitenet of its own for one test."""
    async with running_system(backend, kafka_bootstrap, tmp_path) as running:
        yield running


@pytest.fixture(scope="module", params=BACKENDS)
async def shared_system(request: pytest.FixtureRequest, kafka_bootstrap: str,
                        tmp_path_factory: pytest.TempPathFactory
                        ) -> AsyncIterator[RunningSystem]:
    """One sitenet for a module's tests, on each backend: for tests that make their own
    uniquely named resources and need no fresh state."""
    directory = tmp_path_factory.mktemp(f"system-{request.param}")
    async with running_system(str(request.param), kafka_bootstrap, directory) as running:
        yield running
