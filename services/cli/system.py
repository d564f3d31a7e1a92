"""`sitenet run`: the whole system on one machine, as separate processes.

The embedded broker first (unless an external Kafka is configured), then one
process per service. SIGINT or SIGTERM stops the services (each drains and
flushes), then the broker; nothing is left behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from services.common.broker import EmbeddedBroker, die_with_parent, wait_for_port
from services.common.config import ServiceName, Settings


class System:
    def __init__(self, settings: Settings, say: Callable[[str], None] = print) -> None:
        self.settings = settings
        self._say = say
        self.broker: EmbeddedBroker | None = None
        self.processes: dict[ServiceName, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        s.signing_secret()  # created once here, so every process and the CLI share it
        if s.embedded_broker:
            self.broker = EmbeddedBroker(s.host, s.broker_port, s.data_dir / "broker.log")
            self.broker.start()
            self._say(f"broker (Tansu, embedded)  {self.broker.bootstrap}")
        else:
            self._say(f"broker (external Kafka)   {s.bootstrap_servers}")
        env = {**os.environ, "SITENET_DATA_DIR": str(s.data_dir.resolve())}
        # The registry first: the tracker reads its topic from the start.
        for service in ServiceName:
            self.processes[service] = subprocess.Popen(
                [sys.executable, "-m", "services.cli.main", "serve", service.value],
                env=env,
                # Own session: Ctrl-C reaches only this runner, which stops the services
                # before the broker; they die with the runner if it is killed outright.
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        for service in ServiceName:
            self._await_port(service)
            self._say(f"{service.value:<26}{s.address(service)}")

    def _await_port(self, service: ServiceName) -> None:
        process = self.processes[service]
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{service.value} exited with code {process.returncode}")
            try:
                wait_for_port(self.settings.host, self.settings.port(service), timeout_s=0.5)
                return
            except TimeoutError:
                continue
        raise TimeoutError(f"{service.value} did not start listening")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for service, process in self.processes.items():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._say(f"{service.value} did not stop in time; killing it")
                process.kill()
                process.wait()
        self.processes.clear()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def wait(self) -> int:
        """Block until a signal arrives or a service dies; returns the exit code."""
        stop = {"signal": 0}

        def on_signal(signum: int, _frame: object) -> None:
            stop["signal"] = signum

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        while not stop["signal"]:
            for service, process in self.processes.items():
                if process.poll() is not None:
                    self._say(f"{service.value} exited with code {process.returncode}")
                    return 1
            time.sleep(0.2)
        return 0
