"""`sitenet run` as a user runs it: everything starts, answers with a `sitenet token`,
and one Ctrl-C stops it all, broker included, leaving no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from services.common.broker import wait_for_port
from sitenet.registry.v1 import registry_pb2, registry_pb2_grpc
from tests.support.ports import free_port


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            child = int(entry.name)
            found |= {child, *_descendants(child)}
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_run_serves_then_ctrl_c_stops_everything(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("REGISTRY", "TRACKER", "NOTIFICATIONS", "BROKER")}
    env = {**os.environ, "SITENET_DATA_DIR": str(tmp_path / "data"),
           **{f"SITENET_{name}_PORT": str(port) for name, port in ports.items()}}
    env.pop("SITENET_KAFKA_BOOTSTRAP", None)
    sitenet = str(Path(sys.executable).parent / "sitenet")
    # Its own process group, as a terminal would run it; Ctrl-C goes to the whole group.
    run = subprocess.Popen([sitenet, "run"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, start_new_session=True, text=True)
    try:
        for name in ("REGISTRY", "TRACKER", "NOTIFICATIONS"):
            wait_for_port("127.0.0.1", ports[name], timeout_s=90)
        children = _descendants(run.pid)
        assert len(children) >= 4  # broker + three services

        token = subprocess.run([sitenet, "token", "--role", "ops"], env=env, check=True,
                               capture_output=True, text=True).stdout.strip()
        with grpc.insecure_channel(f"127.0.0.1:{ports['REGISTRY']}") as channel:
            stub = registry_pb2_grpc.SiteRegistryStub(channel)
            reply = stub.ListSites(registry_pb2.ListSitesRequest(),
                                   metadata=[("authorization", f"Bearer {token}")], timeout=10)
            assert list(reply.sites) == []
            with pytest.raises(grpc.RpcError) as caught:
                stub.ListSites(registry_pb2.ListSitesRequest(), timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED

        os.killpg(run.pid, signal.SIGINT)
        output, _ = run.communicate(timeout=60)
        assert run.returncode == 0, output
        assert "stopped." in output
        for name, port in [(n, ports[n]) for n in ("REGISTRY", "TRACKER", "NOTIFICATIONS")]:
            assert f"127.0.0.1:{port}" in output, name
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if _alive(pid)], "orphan processes left behind"
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
