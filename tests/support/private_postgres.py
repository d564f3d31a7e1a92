"""A PostgreSQL server of a test's own, in a temporary directory, on a free loopback port:
for faults that must not touch the shared server (restarting it, stopping it).

initdb, pg_ctl and postgres refuse to run as root; as root they run as the `postgres` OS
user (through runuser), with the data directory owned by that user. fsync stays on (the
default): a restart test checks that what was acknowledged is durable.

    with PrivatePostgres.create() as server:   # or the `private_postgres` fixture
        server.dsn                             # admin DSN: postgresql://postgres@127.0.0.1:<port>/postgres
        server.restart(down_s=2.0)             # fast shutdown, 2 s down, start again

Run as a module it starts one and keeps it until Ctrl-C, printing its DSN and a restart
command (for bench/fault_postgres_restart.py):

    .venv/bin/python -m tests.support.private_postgres
"""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.ports import free_port

OS_USER = "postgres"


class Unavailable(RuntimeError):
    """No PostgreSQL server binaries here (or no user to run them as)."""


def _binaries() -> Path:
    """The directory of initdb and pg_ctl: on PATH, else the newest Debian-style install."""
    found = shutil.which("initdb")
    if found:
        directory = Path(os.path.realpath(found)).parent
        if (directory / "pg_ctl").exists():
            return directory
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit()
                        else 0)
    if candidates:
        return Path(candidates[-1]).parent
    raise Unavailable("initdb not found (on PATH or under /usr/lib/postgresql/*/bin)")


class PrivatePostgres:
    def __init__(self, root: Path, port: int, binaries: Path, run_as: str | None) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = port
        self._binaries = binaries
        self._run_as = run_as

    @property
    def dsn(self) -> str:
        """Admin DSN (trust authentication, superuser `postgres`)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self._binaries / program), *args]
        if self._run_as:
            return ["runuser", "-u", self._run_as, "--", *command]
        return command

    def _run(self, program: str, *args: str, timeout_s: float = 90) -> None:
        done = subprocess.run(self._command(program, *args), capture_output=True, text=True,
                              timeout=timeout_s, check=False,
                              cwd=self.root)  # a directory the server's user may enter
        if done.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(args)} exited {done.returncode}:\n"
                               f"{done.stdout}{done.stderr}\n{tail}")

    @classmethod
    def create(cls, port: int | None = None) -> PrivatePostgres:
        """initdb into a new temporary directory (not started)."""
        binaries = _binaries()
        run_as: str | None = None
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                raise Unavailable("running as root without runuser: cannot run initdb")
            try:
                user = pwd.getpwnam(OS_USER)
            except KeyError:
                raise Unavailable(f"running as root and there is no {OS_USER!r} user") from None
            run_as = OS_USER
        # Not under pytest's tmp_path: its parents are private to root, and the server runs
        # as another user.
        root = Path(tempfile.mkdtemp(prefix="sitenet-pg-"))
        if run_as:
            os.chown(root, user.pw_uid, user.pw_gid)
        server = cls(root, port or free_port(), binaries, run_as)
        try:
            server._run("initdb", "-D", str(server.data), "-A", "trust", "-U", "postgres",
                        "-E", "UTF8", "--no-sync", "--no-instructions")
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return server

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.root} -c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                  "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, down_s: float = 0.0) -> None:
        """Fast shutdown (sessions terminated, a checkpoint), `down_s` with nothing
        listening, then start again; returns once it accepts connections."""
        self.stop("fast")
        time.sleep(down_s)
        self.start()

    @property
    def restart_command(self) -> str:
        """A shell command that does what `restart()` does (pg_ctl keeps the options)."""
        return " ".join(shlex.quote(part) for part in self._command(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w",
            "-t", "60", "restart"))

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def destroy(self) -> None:
        """Stop (immediately: nothing is kept) and delete the directory."""
        try:
            if self.running():
                self.stop("immediate")
        except (RuntimeError, subprocess.TimeoutExpired):
            self._kill()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _kill(self) -> None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)  # the postmaster this object started, by its pid
        except (OSError, ValueError, IndexError):
            pass

    def __enter__(self) -> PrivatePostgres:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.destroy()


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started private server; stopped and deleted afterwards. Raises Unavailable."""
    server = PrivatePostgres.create()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    with private_postgres() as server:
        print(f"dsn:     {server.dsn}")
        print(f"restart: {server.restart_command}")
        print(f"log:     {server.log}")
        print("Ctrl-C (or SIGTERM) stops and deletes it.", flush=True)
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
