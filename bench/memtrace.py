"""Where a service's memory goes, for the soak's --tracemalloc: the service processes
trace their allocations (tracemalloc) and dump a snapshot every few seconds; afterwards
the growth between a snapshot after warm-up and the last one is listed by where it was
allocated.

No change to the services: a sitecustomize.py on the children's PYTHONPATH starts the
tracing in each Python process that is started with SITENET_MEMTRACE_DIR set. Tracing
slows a process down (and its own bookkeeping takes memory, not counted in the
snapshots), so use it in short diagnostic runs, not for the soak's figures.
"""

from __future__ import annotations

import os
import tempfile
import tracemalloc
from pathlib import Path

SITECUSTOMIZE = '''\
import os as _os

import sys as _sys

_dir = _os.environ.get("SITENET_MEMTRACE_DIR")
_only = [n for n in _os.environ.get("SITENET_MEMTRACE_ONLY", "").split(",") if n]
if _dir and (not _only or _sys.argv[-1] in _only):  # `-m services.cli.main serve NAME`
    import threading as _threading
    import time as _time
    import tracemalloc as _tracemalloc

    _tracemalloc.start(int(_os.environ.get("SITENET_MEMTRACE_FRAMES", "8")))
    _every = float(_os.environ.get("SITENET_MEMTRACE_EVERY_S", "30"))

    def _dump() -> None:
        n = 0
        while True:
            _time.sleep(_every)
            n += 1
            snapshot = _tracemalloc.take_snapshot()
            snapshot.dump(f"{_dir}/{_os.getpid()}-{n:04d}-{_time.time():.0f}.snap")

    _threading.Thread(target=_dump, name="memtrace", daemon=True).start()
'''


def environment(every_s: float, only: str = "", frames: int = 8
                ) -> tuple[dict[str, str], Path]:
    """Environment for the service processes, and the directory the snapshots go to.
    `only`: comma-separated service names to trace (default: all)."""
    home = Path(tempfile.mkdtemp(prefix="sitenet-memtrace-"))
    (home / "sitecustomize.py").write_text(SITECUSTOMIZE)
    snaps = home / "snapshots"
    snaps.mkdir()
    path = os.pathsep.join(p for p in (str(home), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, "SITENET_MEMTRACE_DIR": str(snaps),
            "SITENET_MEMTRACE_EVERY_S": str(every_s),
            "SITENET_MEMTRACE_FRAMES": str(frames), "SITENET_MEMTRACE_ONLY": only}, snaps


def report(snaps: Path, names: dict[int, str], after_wall: float, top: int = 12) -> None:
    """Per process: what grew from the first snapshot taken after `after_wall` (time.time())
    to the last, by the allocating line, with the frames that led there."""
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__),
              tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
              tracemalloc.Filter(False, "<frozen importlib._bootstrap_external>"),
              tracemalloc.Filter(False, "<unknown>")]
    for pid, name in names.items():
        files = sorted(snaps.glob(f"{pid}-*.snap"))
        if len(files) < 2:
            if files:
                print(f"\n{name}: fewer than two snapshots")
            continue
        later = [f for f in files if float(f.stem.rsplit("-", 1)[1]) >= after_wall]
        base_file = later[0] if len(later) >= 2 else files[0]
        base = tracemalloc.Snapshot.load(str(base_file)).filter_traces(ignore)
        last = tracemalloc.Snapshot.load(str(files[-1])).filter_traces(ignore)
        span = float(files[-1].stem.rsplit("-", 1)[1]) - float(base_file.stem.rsplit("-", 1)[1])
        total = sum(s.size for s in last.statistics("filename")) - sum(
            s.size for s in base.statistics("filename"))
        print(f"\n### {name}: traced Python memory {total / 2**20:+.2f} MB over {span:.0f} s "
              f"({base_file.name} -> {files[-1].name})\n")
        for stat in last.compare_to(base, "traceback")[:top]:
            if stat.size_diff <= 0:
                continue
            print(f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks "
                  f"(now {stat.size / 1024:.1f} KiB)")
            frames = list(stat.traceback)  # oldest first
            ours = [f for f in frames[:-1] if "/services/" in f.filename]
            for frame in [frames[-1], *ours[::-1][:3]]:
                print(f"      {frame.filename}:{frame.lineno}")
