"""Soak: site staff writing and sponsors streaming for ten minutes; does memory stay flat
and latency stay where it started?

    .venv/bin/python -m bench.soak                       # 10 minutes, 40 writes/s, 20 streams
    .venv/bin/python -m bench.soak --duration 60         # a short check that it works
    .venv/bin/python -m bench.soak --backend postgres    # databases on the local PostgreSQL

Starts the embedded broker and the three services as separate processes (as `sitenet run`
does, see bench/harness.py) on ports of its own (54051-54053, broker 19692), SQLite
databases in a fresh temporary directory (or fresh PostgreSQL databases, dropped after).
The world: 3 sponsor organisations with 2 studies each, 40 sites, each study with 16 of
them (96 study-sites).

- Site staff: --writers concurrent writers, each with a site token for its own sites,
  call RecordMilestone (PLANNED or IN_PROGRESS, a random milestone and planned date, a
  note that numbers the write) on their study-sites at --rate writes/s in total, on a
  fixed schedule (open loop: a slow answer does not slow the schedule).
- Sponsors: --streams StreamNotifications streams held for the whole run, each with a
  sponsor token of one organisation; half filter on one of its studies (some also on the
  event type), half take everything the organisation may see. Each counts what arrives,
  flags a notification of a study it should not see, a write twice, and measures
  latency from RecordMilestone returning to the arrival. Sponsors also read
  (GetStudySite, ListStudySites, ListNotifications) at --read-rate calls/s.
- Every --sample seconds: VmRSS of each service process and of the broker
  (/proc/PID/status), CPU used by them and by the whole machine (to see other work).

At the end: a table per window (a minute for runs of 5 minutes or more, else 10 s), then
memory (first vs last window, least-squares slope over the second half), latency (first vs
last window; drift is judged on the first vs the last third of the run), lost
(acknowledged writes that never reached a stream that should have them), duplicates and
notifications of the wrong study. Exits 1 if anything is lost, duplicated or shown to the
wrong sponsor.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import random
import shlex
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.type import date_pb2

from bench import memtrace
from bench.harness import (
    MILESTONE,
    Client,
    Metadata,
    pct,
    postgres_databases,
    running_system,
    tap_milestones,
)

PORTS = {"SITENET_REGISTRY_PORT": "54051", "SITENET_TRACKER_PORT": "54052",
         "SITENET_NOTIFICATIONS_PORT": "54053", "SITENET_BROKER_PORT": "19692"}
# Every milestone of the default template one may type in (essential-documents-complete
# is derived). Only PLANNED and IN_PROGRESS are written: they have no prerequisites, so
# every write is valid whatever came before.
MILESTONES = ("site-selected", "cda-executed", "site-qualification-visit", "budget-agreed",
              "contract-executed", "irb-submitted", "irb-approved", "site-initiation-visit",
              "site-activated", "first-patient-in")
ORGS = ("soak-org-a", "soak-org-b", "soak-org-c")
STUDIES_PER_ORG = 2
SITES = 40
SITES_PER_STUDY = 16
DRAIN_S = 20.0  # after the load: wait this long for a missing delivery to arrive ...
DRAIN_MAX_S = 300.0  # ... while some still do, up to this
RSS_GROWTH_LIMIT = 0.10  # flat: the last window within 10% of the first ...
RSS_GROWTH_FLOOR_MB = 5.0  # ... or within 5 MB, whichever is larger
# No drift: the e2e p50 of the last third of the run (median of its windows' p50) within
# 1.5x of the first third's, or within 5 ms of it. Thirds, not single minutes: on a shared
# machine one minute's p50 follows whatever else runs in that minute.
DRIFT_LIMIT = 1.5
DRIFT_FLOOR_MS = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
SHORT = {"site-registry": "registry", "startup-tracker": "tracker", "notifications": "notif",
         "broker": "broker", "bench": "bench", "machine": "machine", "postgres": "postgres"}


@dataclass
class Write:
    seq: int
    study: str
    t_due: float  # when the schedule called for it (its window)
    t_call: float  # when it was sent (after the staff member's previous one on the form)
    t_ack: float = math.nan  # NaN: not acknowledged
    code: str = ""


@dataclass
class Stream:
    index: int
    org: str
    study: str  # the study it filters on (if filtered)
    filtered: bool
    by_type: bool
    allowed: frozenset[str]  # the studies whose notifications it may (and should) get
    metadata: Metadata
    arrived: dict[int, float] = field(default_factory=dict)
    event_ids: set[str] = field(default_factory=set)
    probes: int = 0
    received: int = 0
    duplicates: int = 0  # the same write (note) twice
    duplicate_events: int = 0  # the same event id twice
    wrong_study: int = 0
    types: Counter[str] = field(default_factory=Counter)
    breaks: Counter[str] = field(default_factory=Counter)
    cursor: str = ""
    call: Any = None


@dataclass
class Read:
    t: float
    ms: float
    code: str


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def postgres_cpu_s() -> float:
    """CPU-seconds of the PostgreSQL server processes now running (all of the server's
    work, not only this run's; a backend that ended since the last sample drops out)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if text.split(" (", 1)[1].startswith("postgres)"):
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def machine_busy_s() -> float:
    """CPU-seconds the whole machine spent busy (all cores), since boot."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / CLK_TCK


def slope_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) in MB per minute."""
    if len(points) < 2:
        return math.nan
    mx = statistics.fmean(p[0] for p in points)
    my = statistics.fmean(p[1] for p in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return math.nan
    return sum((x - mx) * (y - my) for x, y in points) / sxx * 60


def other_work(cpu: dict[str, float]) -> float:
    """Cores the machine spent on anything but this run's processes."""
    if "machine" not in cpu:
        return math.nan
    return cpu["machine"] - sum(v for n, v in cpu.items() if n != "machine")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


async def open_loop(start: float, rate: float, end: float, in_flight: asyncio.Semaphore,
                    call: Callable[[int, float], Awaitable[None]]) -> None:
    """Call `call(i, due)` at `due` = start + i / rate until `end` (time.monotonic()):
    an open loop, so a slow answer delays no later call, except that at most the
    semaphore's count are outstanding at once. Returns when every call has ended."""
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, due: float) -> None:
        try:
            await call(i, due)
        finally:
            in_flight.release()

    i = 0
    while rate > 0:
        due = start + i / rate
        if due >= end:
            break
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await in_flight.acquire()
        task = asyncio.create_task(one(i, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    await asyncio.gather(*tasks)


class Soak:
    def __init__(self, args: argparse.Namespace, pids: dict[str, int]) -> None:
        self.args = args
        self.pids = pids
        self.rng = random.Random(args.seed)
        self.writes: list[Write] = []
        self.streams: list[Stream] = []
        self.reads: list[Read] = []
        self.samples: list[dict[str, Any]] = []
        self.t0 = 0.0
        self.t0_wall = 0.0
        self.stopping = False
        self.on_topic: dict[int, float] = {}
        self.tap_probes = 0
        self.read_wrong_study = 0

    # --- the world ------------------------------------------------------------------

    async def setup(self) -> None:
        c = self.client = Client()
        self.studies: list[tuple[str, str]] = []  # (study name, org)
        for o, org in enumerate(ORGS):
            for k in range(STUDIES_PER_ORG):
                n = o * STUDIES_PER_ORG + k
                self.studies.append((await c.create_study(
                    f"soak-{n}", org, f"SOAK-{n}", title=f"Soak study {n}"), org))
        self.org_of = dict(self.studies)
        sites = [await c.create_site(f"soak-site-{i:02d}", i) for i in range(SITES)]
        self.study_sites: dict[str, list[str]] = {}  # site -> its study-sites
        first: dict[str, str] = {}
        for n, (study, _org) in enumerate(self.studies):
            for k in range(SITES_PER_STUDY):
                site = sites[(n * 7 + k) % SITES]
                ss = await c.add_study_site(study, site)
                self.study_sites.setdefault(site, []).append(ss)
                first.setdefault(study, ss)
        self.probe_targets = first
        # Site staff: writer w works at the sites i with i % writers == w.
        self.writer_sites = [[s for i, s in enumerate(sites) if i % self.args.writers == w]
                             for w in range(self.args.writers)]
        self.writer_md = [c.metadata("site", subject=f"soak-staff-{w}",
                                     sites=[s.removeprefix("sites/") for s in ws])
                          for w, ws in enumerate(self.writer_sites)]
        self.sponsor_md = {org: c.metadata("sponsor", subject=f"soak-sponsor-{org}", org=org)
                           for org in ORGS}
        # Sponsors' streams: stream k on study k % 6; the first 6 filtered, the next 6
        # not, and so on; every other filtered one also on the event type.
        for k in range(self.args.streams):
            study, org = self.studies[k % len(self.studies)]
            filtered = (k // len(self.studies)) % 2 == 0
            allowed = (frozenset({study}) if filtered else
                       frozenset(s for s, o in self.studies if o == org))
            self.streams.append(Stream(
                index=k, org=org, study=study, filtered=filtered,
                by_type=filtered and k % 2 == 1, allowed=allowed,
                metadata=c.metadata("sponsor", subject=f"soak-stream-{k}", org=org)))
        self.expecting = {study: [s for s in self.streams if study in s.allowed]
                          for study, _ in self.studies}
        # A stream subscription per organisation, for ListNotifications.
        from sitenet.notifications.v1 import notifications_pb2 as npb

        self.subscriptions: dict[str, str] = {}
        for org in ORGS:
            mine = [s for s, o in self.studies if o == org]
            sub = await c.notifications.CreateSubscription(npb.CreateSubscriptionRequest(
                subscription=npb.Subscription(
                    filter=npb.NotificationFilter(studies=mine),
                    channel=npb.Channel(stream=npb.StreamChannel()),
                    display_name=f"soak {org}")), metadata=self.sponsor_md[org])
            self.subscriptions[org] = sub.name

    # --- sponsors: streams ----------------------------------------------------------

    async def listen(self, s: Stream) -> None:
        from sitenet.events.v1 import events_pb2
        from sitenet.notifications.v1 import notifications_pb2 as npb

        while not self.stopping:
            where = npb.NotificationFilter()
            if s.filtered:
                where.studies.append(s.study)
                if s.by_type:
                    where.event_types.append(MILESTONE)
            s.call = self.client.notifications.StreamNotifications(
                npb.StreamNotificationsRequest(filter=where, cursor=s.cursor),
                metadata=s.metadata)
            try:
                async for n in s.call:
                    now = time.monotonic()
                    s.received += 1
                    s.cursor = n.cursor
                    s.types[n.event_type.rsplit(".", 1)[-1]] += 1
                    if n.study and n.study not in s.allowed:  # site events have none
                        s.wrong_study += 1
                    if n.event_id in s.event_ids:
                        s.duplicate_events += 1
                    s.event_ids.add(n.event_id)
                    if n.event_type != MILESTONE:
                        continue
                    note = events_pb2.MilestoneRecorded.FromString(n.event.value).after.note
                    if note.startswith("probe"):
                        s.probes += 1
                    elif note.startswith("soak "):
                        seq = int(note.split()[1])
                        if seq in s.arrived:
                            s.duplicates += 1
                        else:
                            s.arrived[seq] = now
                if not self.stopping:
                    s.breaks["ended"] += 1
            except grpc.aio.AioRpcError as exc:
                if self.stopping:
                    return
                s.breaks[exc.code().name] += 1
            await asyncio.sleep(0.5)  # then resume after the last cursor seen

    def seen_on_topic(self, event: Any, now: float) -> None:
        note = event.after.note
        if note.startswith("probe"):
            self.tap_probes += 1
        elif note.startswith("soak "):
            self.on_topic.setdefault(int(note.split()[1]), now)

    async def probe(self) -> None:
        """Until every stream has seen a write made after it opened: only then is it
        certain to be following the log (a stream starts at the newest notification)."""
        from sitenet.startup.v1 import startup_pb2

        deadline = time.monotonic() + 60
        n = 0
        while any(s.probes == 0 for s in self.streams) or not self.tap_probes:
            if time.monotonic() > deadline:
                waiting = [s.index for s in self.streams if s.probes == 0]
                raise RuntimeError(f"streams {waiting} (or the topic tap: "
                                   f"{self.tap_probes}) saw no probe in 60 s")
            for study, ss in self.probe_targets.items():
                n += 1
                await self.client.tracker.RecordMilestone(startup_pb2.RecordMilestoneRequest(
                    study_site=ss, milestone="site-selected", status=startup_pb2.PLANNED,
                    planned_date=date_pb2.Date(year=2029, month=1, day=1 + n % 28),
                    note=f"probe {study} {n}"), metadata=self.client.admin)
            await asyncio.sleep(1.0)

    # --- site staff: writes ---------------------------------------------------------

    async def writer(self, w: int) -> None:
        from sitenet.startup.v1 import startup_pb2

        mine = [ss for site in self.writer_sites[w] for ss in self.study_sites.get(site, [])]
        locks = {ss: asyncio.Lock() for ss in mine}  # one staff member, one form at a time
        rng = random.Random(self.args.seed * 1000 + w)

        async def write_one(ss: str, due: float) -> None:
            async with locks[ss]:
                when = dt.date(2030, 1, 1) + dt.timedelta(days=rng.randrange(2000))
                status = startup_pb2.IN_PROGRESS if rng.random() < 0.2 else startup_pb2.PLANNED
                write = Write(seq=len(self.writes), study=ss.rsplit("/sites/", 1)[0],
                              t_due=due, t_call=time.monotonic())
                self.writes.append(write)
                try:
                    await self.client.tracker.RecordMilestone(startup_pb2.RecordMilestoneRequest(
                        study_site=ss, milestone=rng.choice(MILESTONES), status=status,
                        planned_date=date_pb2.Date(year=when.year, month=when.month,
                                                   day=when.day),
                        note=f"soak {write.seq}"), metadata=self.writer_md[w], timeout=10)
                    write.t_ack = time.monotonic()
                except grpc.aio.AioRpcError as exc:
                    write.code = exc.code().name

        await open_loop(self.t0 + w / self.args.rate,  # the writers' turns interleave
                        self.args.rate / self.args.writers, self.t0 + self.args.duration,
                        asyncio.Semaphore(32), lambda i, due: write_one(mine[i % len(mine)], due))

    # --- sponsors: reads ------------------------------------------------------------

    async def reader(self) -> None:
        from sitenet.notifications.v1 import notifications_pb2 as npb
        from sitenet.startup.v1 import startup_pb2

        tracker, notifications = self.client.tracker, self.client.notifications
        all_ss = [ss for sss in self.study_sites.values() for ss in sss]
        pages = dict.fromkeys(ORGS, "")
        rng = random.Random(self.args.seed + 7)

        async def read_one(kind: int) -> None:
            started = time.monotonic()
            code = "OK"
            try:
                if kind == 0:
                    ss = rng.choice(all_ss)
                    org = self.org_of[ss.rsplit("/sites/", 1)[0]]
                    await tracker.GetStudySite(startup_pb2.GetStudySiteRequest(name=ss),
                                               metadata=self.sponsor_md[org], timeout=10)
                elif kind == 1:
                    study, org = rng.choice(self.studies)
                    await tracker.ListStudySites(startup_pb2.ListStudySitesRequest(
                        parent=study, page_size=50), metadata=self.sponsor_md[org], timeout=10)
                else:  # a sponsor paging through its notifications, then from the start
                    org = rng.choice(ORGS)
                    page = await notifications.ListNotifications(npb.ListNotificationsRequest(
                        parent=self.subscriptions[org], page_size=100,
                        page_token=pages[org]), metadata=self.sponsor_md[org], timeout=10)
                    pages[org] = page.next_page_token
                    self.read_wrong_study += sum(
                        1 for n in page.notifications
                        if n.study and self.org_of.get(n.study) != org)
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
            self.reads.append(Read(started - self.t0, (time.monotonic() - started) * 1000,
                                   code))

        await open_loop(self.t0, self.args.read_rate, self.t0 + self.args.duration,
                        asyncio.Semaphore(16), lambda i, _due: read_one(i % 3))

    # --- sampling -------------------------------------------------------------------

    def sample(self) -> dict[str, Any]:
        cpu = {name: cpu_s(pid) for name, pid in {**self.pids, "bench": os.getpid()}.items()}
        if self.args.backend == "postgres":
            cpu["postgres"] = postgres_cpu_s()
        return {"t": time.monotonic() - self.t0 if self.t0 else 0.0,
                "rss": {name: rss_mb(pid) for name, pid in self.pids.items()},
                "cpu": cpu, "machine": machine_busy_s(), "load": os.getloadavg()[0]}

    async def sampler(self) -> None:
        k = 1
        while True:
            delay = self.t0 + k * self.args.sample - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            s = self.sample()
            prev = self.samples[-1]
            self.samples.append(s)
            self.progress(prev, s)
            k += 1

    def figures(self, lo: float, hi: float) -> dict[str, Any]:
        """Writes called in [lo, hi) seconds of the load, their deliveries and the reads."""
        called = [w for w in self.writes if lo <= w.t_due - self.t0 < hi]
        acked = [w for w in called if not math.isnan(w.t_ack)]
        lat = [(st.arrived[w.seq] - w.t_ack) * 1000 for w in acked
               for st in self.expecting[w.study] if w.seq in st.arrived]
        to_topic = [(self.on_topic[w.seq] - w.t_ack) * 1000 for w in acked
                    if w.seq in self.on_topic]
        reads = [r for r in self.reads if lo <= r.t < hi]
        return {"from_s": lo, "to_s": hi, "writes": len(acked), "rate": len(acked) / (hi - lo),
                "errors": len(called) - len(acked),
                "rpc_p50": median([(w.t_ack - w.t_call) * 1000 for w in acked]),
                "topic_p50": median(to_topic), "e2e_p50": median(lat), "e2e_p99": pct(lat, 99),
                "deliveries": len(lat), "reads": len(reads),
                "read_p50": median([r.ms for r in reads]),
                "read_errors": sum(1 for r in reads if r.code != "OK")}

    @staticmethod
    def cpu(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
        """Cores used between two samples: per process, and by the whole machine."""
        span = b["t"] - a["t"]
        used = {n: (b["cpu"][n] - a["cpu"][n]) / span for n in b["cpu"]}
        used["machine"] = (b["machine"] - a["machine"]) / span
        return used

    def progress(self, prev: dict[str, Any], s: dict[str, Any]) -> None:
        f = self.figures(prev["t"], s["t"])
        rss = " ".join(f"{SHORT[n]}={v:.0f}" for n, v in s["rss"].items())
        cpu = " ".join(f"{SHORT.get(n, n)}={v:.2f}" for n, v in self.cpu(prev, s).items())
        print(f"t={s['t']:4.0f}s writes={f['rate']:5.1f}/s rpc_p50={f['rpc_p50']:5.1f}ms "
              f"topic_p50={f['topic_p50']:5.1f}ms e2e_p50={f['e2e_p50']:6.1f}ms "
              f"e2e_p99={f['e2e_p99']:6.1f}ms errors={f['errors'] + f['read_errors']} "
              f"rss_MB[{rss}] cores[{cpu}] load={s['load']:.2f}", flush=True)

    # --- the run --------------------------------------------------------------------

    async def run(self) -> None:
        await self.setup()
        listeners = [asyncio.create_task(self.listen(s)) for s in self.streams]
        tap = asyncio.create_task(tap_milestones(self.client.settings, self.seen_on_topic))
        await self.probe()
        print(f"setup done: {len(self.studies)} studies of {len(ORGS)} sponsors, "
              f"{sum(len(v) for v in self.study_sites.values())} study-sites, "
              f"{len(self.streams)} streams open; load for {self.args.duration:g} s",
              flush=True)
        self.samples.append(self.sample())  # t = 0: after set-up, before the load
        self.t0 = time.monotonic()
        self.t0_wall = time.time()
        sampler = asyncio.create_task(self.sampler())
        await asyncio.gather(*(self.writer(w) for w in range(self.args.writers)),
                             self.reader())
        load_end = time.monotonic()
        # Drain: until everything arrived, or nothing more arrives for DRAIN_S (bounded,
        # so a lost one does not hang the run; a late one still counts as delivered).
        missing, quiet_since = self.lost(), time.monotonic()
        while missing and time.monotonic() - quiet_since < DRAIN_S \
                and time.monotonic() - load_end < DRAIN_MAX_S:
            await asyncio.sleep(0.5)
            now_missing = self.lost()
            if now_missing < missing:
                quiet_since = time.monotonic()
            missing = now_missing
        self.drained_s = time.monotonic() - load_end
        sampler.cancel()
        tap.cancel()
        self.stopping = True
        for s in self.streams:
            if s.call is not None:
                s.call.cancel()
        await asyncio.gather(sampler, tap, *listeners, return_exceptions=True)
        await self.client.close()

    def lost(self) -> int:
        return sum(1 for w in self.writes if not math.isnan(w.t_ack)
                   for s in self.expecting[w.study] if w.seq not in s.arrived)

    # --- the report -----------------------------------------------------------------

    def windows(self) -> list[dict[str, Any]]:
        size = self.args.window or (60.0 if self.args.duration >= 300 else 10.0)
        count = max(1, math.ceil(self.args.duration / size - 1e-9))
        half = self.args.sample / 2  # a sample closes the interval before it
        rows = []
        for k in range(count):
            lo, hi = k * size, min((k + 1) * size, self.args.duration)
            row = {"window": k + 1, **self.figures(lo, hi)}
            inside = [s for s in self.samples if lo + half < s["t"] <= hi + half]
            before = [s for s in self.samples if s["t"] <= lo + half]
            row["rss"] = {n: median([s["rss"][n] for s in inside]) for n in self.pids}
            if inside and before:
                row["cpu"] = self.cpu(before[-1], inside[-1])
                row["load"] = max(s["load"] for s in inside)
            rows.append(row)
        return rows

    def report(self, command: str) -> int:
        rows = self.windows()
        unit = "min" if rows[0]["to_s"] - rows[0]["from_s"] >= 60 else "s"
        names = list(self.pids)
        cpu_names = ["bench", *(["postgres"] if self.args.backend == "postgres" else [])]
        print(f"\n## Soak: {self.args.backend}, {self.args.rate:g} writes/s by "
              f"{self.args.writers} site staff, {len(self.streams)} sponsor streams, "
              f"{self.args.read_rate:g} reads/s, {self.args.duration:g} s\n")
        print(f"command: `{command}`  ")
        print(f"date: {dt.date.today().isoformat()}, {os.cpu_count()} cores\n")
        print(f"| {unit} | writes | rate/s | RPC p50 ms | to topic p50 ms | e2e p50 ms "
              f"| e2e p99 ms | reads | errors | "
              + " | ".join(f"{SHORT[n]} MB" for n in names)
              + " | CPU cores " + "/".join(SHORT[n] for n in [*names, *cpu_names])
              + " | other work, cores | load |")
        print("|" + "---|" * (12 + len(names)))
        for r in rows:
            label = (f"{r['window']}" if unit == "min"
                     else f"{r['from_s']:.0f}-{r['to_s']:.0f}")
            cpu = r.get("cpu", {})
            print(f"| {label} | {r['writes']} | {r['rate']:.1f} | {r['rpc_p50']:.1f} "
                  f"| {r['topic_p50']:.1f} | {r['e2e_p50']:.1f} | {r['e2e_p99']:.1f} "
                  f"| {r['reads']} | {r['errors'] + r['read_errors']} | "
                  + " | ".join(f"{r['rss'][n]:.1f}" for n in names)
                  + " | " + "/".join(f"{cpu.get(n, math.nan):.2f}"
                                     for n in [*names, *cpu_names])
                  + f" | {other_work(cpu):.2f} | {r.get('load', math.nan):.1f} |")

        first, last = rows[0], rows[-1]
        print("\n### Memory (VmRSS, MB; a window's figure is the median of its samples)\n")
        print("| process | before load | first window | last window | growth | ratio "
              "| slope, 2nd half | verdict |")
        print("|---|---|---|---|---|---|---|---|")
        half = [s for s in self.samples if s["t"] >= self.args.duration / 2]
        flat = True
        memory: dict[str, dict[str, float]] = {}
        for n in names:
            a, b = first["rss"][n], last["rss"][n]
            slope = slope_per_min([(s["t"], s["rss"][n]) for s in half])
            ok = b - a <= max(RSS_GROWTH_LIMIT * a, RSS_GROWTH_FLOOR_MB)
            verdict = "flat" if ok else "GROWS"
            if n == "broker":
                verdict += " (in-memory storage holds every record: not judged)"
            else:
                flat = flat and ok
            memory[n] = {"before": self.samples[0]["rss"][n], "first": a, "last": b,
                         "slope_mb_per_min": slope}
            print(f"| {n} | {self.samples[0]['rss'][n]:.1f} | {a:.1f} | {b:.1f} "
                  f"| {b - a:+.1f} | {b / a:.3f} | {slope:+.2f} MB/min | {verdict} |")

        acked = [w for w in self.writes if not math.isnan(w.t_ack)]
        codes = Counter(w.code for w in self.writes if w.code)
        read_codes = Counter(r.code for r in self.reads if r.code != "OK")
        lost = self.lost()
        duplicates = sum(s.duplicates for s in self.streams)
        duplicate_events = sum(s.duplicate_events for s in self.streams)
        wrong = sum(s.wrong_study for s in self.streams) + self.read_wrong_study
        unacked_delivered = sum(1 for w in self.writes if math.isnan(w.t_ack)
                                and any(w.seq in s.arrived for s in self.expecting[w.study]))
        expected = sum(len(self.expecting[w.study]) for w in acked)
        breaks = sum((s.breaks for s in self.streams), Counter())
        types = sum((s.types for s in self.streams), Counter())
        whole = self.figures(0, self.args.duration)
        run_cpu = self.cpu(self.samples[0], self.samples[-1])
        p50_ratio = last["e2e_p50"] / first["e2e_p50"]
        p99_ratio = last["e2e_p99"] / first["e2e_p99"]
        third = max(1, len(rows) // 3)
        early = median([r["e2e_p50"] for r in rows[:third]])
        late = median([r["e2e_p50"] for r in rows[-third:]])
        steady = late <= DRIFT_LIMIT * early or late - early <= DRIFT_FLOOR_MS
        print("\n### Summary\n")
        print(f"- writes: {len(acked)} acknowledged of {len(self.writes)} "
              f"({len(acked) / self.args.duration:.1f}/s for a target of "
              f"{self.args.rate:g}/s), RPC p50 {whole['rpc_p50']:.1f} ms, errors "
              f"{dict(codes) or 0}")
        print(f"- reads: {len(self.reads)} ({len(self.reads) / self.args.duration:.1f}/s), "
              f"p50 {whole['read_p50']:.1f} ms, errors {dict(read_codes) or 0}")
        print(f"- deliveries: {whole['deliveries']} of {expected} expected on "
              f"{len(self.streams)} streams (drained {self.drained_s:.1f} s after the load "
              f"ended); notifications received {sum(s.received for s in self.streams)}, "
              f"by type {dict(types)}")
        print(f"- e2e latency over the run: p50 {whole['e2e_p50']:.1f} ms, p99 "
              f"{whole['e2e_p99']:.1f} ms (of which RecordMilestone returned -> on the "
              f"topic: p50 {whole['topic_p50']:.1f} ms)")
        print(f"- e2e latency, first vs last window: p50 {first['e2e_p50']:.1f} -> "
              f"{last['e2e_p50']:.1f} ms ({p50_ratio:.2f}x), p99 {first['e2e_p99']:.1f} -> "
              f"{last['e2e_p99']:.1f} ms ({p99_ratio:.2f}x); RPC p50 {first['rpc_p50']:.1f} "
              f"-> {last['rpc_p50']:.1f} ms")
        print(f"- e2e p50, median of the windows of the first third vs the last third: "
              f"{early:.1f} -> {late:.1f} ms ({late / early:.2f}x)")
        print("- CPU over the run, cores: " + ", ".join(
            f"{n} {v:.2f}" for n, v in run_cpu.items())
            + f" (so other work on the machine: {other_work(run_cpu):.2f})")
        cut = self.drained_s >= DRAIN_MAX_S
        print("- lost (acknowledged, not on a stream that should have it "
              + (f"when the drain stopped at {DRAIN_MAX_S:g} s with some still arriving: late "
                 f"or lost" if cut else f"{DRAIN_S:g} s after the last arrival")
              + f"): {lost}; "
              f"duplicates: {duplicates} writes, {duplicate_events} event ids; "
              f"wrong study: {wrong}; unacknowledged but delivered: {unacked_delivered}; "
              f"stream breaks (resumed by cursor): {dict(breaks) or 0}")
        sizes = self.database_sizes()
        if sizes:
            print("- database files at the end: " + ", ".join(
                f"{n} {mb:.1f} MB" for n, mb in sizes.items()))
        failed = bool(lost or duplicates or duplicate_events or wrong)
        print(f"\nverdict: memory {'FLAT' if flat else 'GROWS'} (each service's last window "
              f"within {RSS_GROWTH_LIMIT:.0%} or {RSS_GROWTH_FLOOR_MB:g} MB of its first); "
              f"latency {'NO DRIFT' if steady else 'DRIFTS'} (e2e p50 of the last third within "
              f"{DRIFT_LIMIT:g}x or {DRIFT_FLOOR_MS:g} ms of the first third's); "
              f"{'FAILED' if failed else 'nothing lost, duplicated or misdelivered'} "
              f"({lost} lost, {duplicates + duplicate_events} duplicated, {wrong} wrong study)")
        if self.args.json:
            Path(self.args.json).write_text(json.dumps({
                "command": command, "args": vars(self.args), "windows": rows,
                "samples": self.samples, "memory": memory, "cpu": run_cpu, "lost": lost,
                "duplicates": duplicates, "duplicate_events": duplicate_events,
                "wrong_study": wrong, "errors": dict(codes), "read_errors": dict(read_codes),
                "p50_ratio": p50_ratio, "p99_ratio": p99_ratio, "early_p50": early,
                "late_p50": late, "flat": flat,
                "steady": steady}, indent=1, default=str))
        return 1 if failed else 0

    def database_sizes(self) -> dict[str, float]:
        data_dir = self.client.settings.data_dir
        sizes: dict[str, float] = {}
        for db in sorted(data_dir.glob("*.db")):
            sizes[db.stem] = sum(p.stat().st_size for p in data_dir.glob(db.name + "*")) / 2**20
        return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=40.0, help="RecordMilestone calls/s")
    parser.add_argument("--streams", type=int, default=20, help="sponsors' streams")
    parser.add_argument("--writers", type=int, default=8, help="site staff writing at once")
    parser.add_argument("--read-rate", type=float, default=10.0, help="sponsors' reads/s")
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--window", type=float, default=0.0,
                        help="seconds per table row (default 60, or 10 under 5 minutes)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", default="", help="also write the figures to this file")
    parser.add_argument("--tracemalloc", type=float, default=0.0, metavar="SECONDS",
                        help="diagnosis: trace the services' allocations, snapshot every "
                        "SECONDS, and list what grew after the first window (slows them)")
    parser.add_argument("--tracemalloc-only", default="", metavar="NAMES",
                        help="comma-separated services to trace (default: all three)")
    args = parser.parse_args()
    if args.writers > SITES:
        parser.error(f"at most {SITES} writers (one site each at least)")
    command = " ".join([".venv/bin/python -m bench.soak", *map(shlex.quote, sys.argv[1:])])

    from services.common.config import ServiceName

    def soak(extra_env: dict[str, str]) -> int:
        snaps = None
        if args.tracemalloc:
            traced, snaps = memtrace.environment(args.tracemalloc, args.tracemalloc_only)
            extra_env = {**extra_env, **traced}
        with running_system(PORTS, prefix="sitenet-soak-", extra_env=extra_env) as system:
            assert system.broker is not None and system.broker.pid is not None
            pids = {s.value: p.pid for s, p in system.processes.items()}
            pids["broker"] = system.broker.pid
            bench = Soak(args, pids)
            asyncio.run(bench.run())
            code = bench.report(command)
        if snaps is not None:
            print("\n## Allocations that grew (tracemalloc), after the first window")
            rows = bench.windows()
            memtrace.report(snaps, {pid: n for n, pid in pids.items() if n != "broker"},
                            bench.t0_wall + rows[0]["to_s"])
        return code

    if args.backend == "postgres":
        with postgres_databases([s.value for s in ServiceName]) as env:
            code = soak(env)
    else:
        code = soak({})
    sys.exit(code)


if __name__ == "__main__":
    main()
