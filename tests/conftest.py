"""Fixtures with the real pieces: the embedded broker (or SITENET_TEST_KAFKA_BOOTSTRAP),
SQLite and PostgreSQL, and the services on free loopback ports."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.common.broker import EmbeddedBroker
from tests.support.system import RunningSystem, running_system

BACKENDS = ["sqlite", "postgres"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
