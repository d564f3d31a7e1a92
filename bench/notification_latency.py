"""End-to-end notification latency and the highest sustained rate, beside the raw
broker's, measured in one run.

    .venv/bin/python -m bench.notification_latency            # about 4 minutes

Starts the embedded broker and the three services as separate processes (as
`sitenet run` does) on non-default loopback ports, SQLite databases in a fresh
temporary directory. The load is RecordMilestone(PLANNED, new planned date) on many
study-sites (no prerequisites). Latency is from RecordMilestone returning to the
notification arriving on a StreamNotifications stream. Then aiokafka measures the
raw produce-to-consume latency and rate on the same broker.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import struct
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from google.type import date_pb2

from bench.harness import MILESTONE, Client, pct, running_system, tap_milestones

PORTS = {"SITENET_REGISTRY_PORT": "53051", "SITENET_TRACKER_PORT": "53052",
         "SITENET_NOTIFICATIONS_PORT": "53053", "SITENET_BROKER_PORT": "19592"}
DRAIN_S = 10.0


@dataclass
class Phase:
    name: str
    target_rate: float
    sent: dict[tuple[str, str], float] = field(default_factory=dict)
    errors: int = 0
    duration_s: float = 0.0
    rpc_ms: list[float] = field(default_factory=list)

    def latencies(self, arrived: dict[tuple[str, str], float]) -> list[float]:
        return [arrived[k] - t for k, t in self.sent.items() if k in arrived]

    def lost(self, arrived: dict[tuple[str, str], float]) -> int:
        return sum(1 for k in self.sent if k not in arrived)


class Bench:
    def __init__(self, sites: int) -> None:
        self.n_sites = sites
        self.study_sites: list[str] = []
        self.next_day: dict[str, int] = {}
        self.arrived: dict[tuple[str, str], float] = {}
        self.on_topic: dict[tuple[str, str], float] = {}

    async def setup(self) -> None:
        self.client = Client()
        self.settings = self.client.settings
        self.auth = self.client.admin
        self.tracker = self.client.tracker
        self.notifications = self.client.notifications
        self.study = await self.client.create_study("bench", "bench", "BENCH-1")
        for i in range(self.n_sites):
            await self.client.create_site(f"bench-{i:03d}", i)
        for i in range(self.n_sites):
            added = await self.client.add_study_site(self.study, f"sites/bench-{i:03d}")
            self.study_sites.append(added)
            self.next_day[added] = 0

    async def listen(self) -> None:
        from sitenet.events.v1 import events_pb2
        from sitenet.notifications.v1 import notifications_pb2 as npb

        call = self.notifications.StreamNotifications(npb.StreamNotificationsRequest(
            filter=npb.NotificationFilter(studies=[self.study], event_types=[MILESTONE])),
            metadata=self.auth)
        async for n in call:
            now = time.monotonic()
            after = events_pb2.MilestoneRecorded.FromString(n.event.value).after.planned_date
            key = (n.site, f"{after.year}-{after.month:02d}-{after.day:02d}")
            self.arrived.setdefault(key, now)

    async def tap(self) -> None:
        def seen(event: Any, now: float) -> None:
            p = event.after.planned_date
            self.on_topic.setdefault(
                (event.study_site.site, f"{p.year}-{p.month:02d}-{p.day:02d}"), now)

        await tap_milestones(self.settings, seen)

    async def run_phase(self, phase: Phase, seconds: float, in_flight: int = 64) -> None:
        from sitenet.startup.v1 import startup_pb2

        slots = asyncio.Semaphore(in_flight)
        base = dt.date(2030, 1, 1)
        tasks: list[asyncio.Task[None]] = []

        async def one(i: int) -> None:
            ss = self.study_sites[i % len(self.study_sites)]
            offset = self.next_day[ss]
            self.next_day[ss] += 1
            when = base + dt.timedelta(days=offset)
            key = ("sites/" + ss.rsplit("/", 1)[1], when.isoformat())
            async with slots:
                called = time.monotonic()
                try:
                    await self.tracker.RecordMilestone(startup_pb2.RecordMilestoneRequest(
                        study_site=ss, milestone="site-selected", status=startup_pb2.PLANNED,
                        planned_date=date_pb2.Date(year=when.year, month=when.month,
                                                   day=when.day)), metadata=self.auth)
                except grpc.aio.AioRpcError:
                    phase.errors += 1
                    return
                phase.sent[key] = time.monotonic()
                phase.rpc_ms.append((phase.sent[key] - called) * 1000)

        started = time.monotonic()
        i = 0
        while True:
            due = started + i / phase.target_rate
            now = time.monotonic()
            if due - started >= seconds:
                break
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(one(i)))
            i += 1
        await asyncio.gather(*tasks)
        phase.duration_s = time.monotonic() - started

    async def drain(self, phase: Phase) -> None:
        for _ in range(int(DRAIN_S * 10)):  # bounded: a lost one must not hang the run
            if not phase.lost(self.arrived):
                return
            await asyncio.sleep(0.1)


def summary(phase: Phase, arrived: dict[tuple[str, str], float],
            on_topic: dict[tuple[str, str], float]) -> dict[str, float]:
    lat = [x * 1000 for x in phase.latencies(arrived)]
    to_topic = [(on_topic[k] - t) * 1000 for k, t in phase.sent.items() if k in on_topic]
    to_stream = [(arrived[k] - on_topic[k]) * 1000 for k in phase.sent
                 if k in on_topic and k in arrived]
    return {"rate": len(phase.sent) / phase.duration_s if phase.duration_s else 0.0,
            "target": phase.target_rate, "n": len(phase.sent), "errors": phase.errors,
            "lost": phase.lost(arrived), "p50": statistics.median(lat) if lat else float("nan"),
            "p99": pct(lat, 99), "max": max(lat) if lat else float("nan"),
            "rpc_p50": statistics.median(phase.rpc_ms) if phase.rpc_ms else float("nan"),
            "rpc_p99": pct(phase.rpc_ms, 99),
            "topic_p50": statistics.median(to_topic) if to_topic else float("nan"),
            "topic_p99": pct(to_topic, 99),
            "stream_p50": statistics.median(to_stream) if to_stream else float("nan"),
            "stream_p99": pct(to_stream, 99)}


async def raw_broker(bootstrap: str, rate: float, seconds: float,
                     burst: int) -> tuple[dict[str, float], dict[str, float]]:
    """aiokafka on the same broker: latency at `rate`, then a burst as fast as it goes."""
    from services.common.kafka import ensure_topics
    from services.common.topics import TopicSpec

    topic = f"bench.raw.{int(time.time())}"
    await asyncio.to_thread(ensure_topics, bootstrap, [TopicSpec(
        name=topic, owner="bench", key="", partitions=6, config={}, event_types=(),
        description="")])
    # acks=all as sitenet's publisher; no idempotence: aiokafka's InitProducerId
    # handshake fails on the embedded broker (kafka-python's works).
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"{topic}.g",
                                auto_offset_reset="earliest", fetch_max_wait_ms=20)
    await producer.start()
    await consumer.start()
    latencies: list[float] = []
    got = {"n": 0, "first": 0.0, "last": 0.0}

    async def consume(total: int) -> None:
        async for record in consumer:
            now = time.monotonic()
            sent_at, _phase = struct.unpack(">dI", record.value or b"")
            if _phase == 0:
                latencies.append((now - sent_at) * 1000)
            else:
                got["n"] += 1
                got["first"] = got["first"] or now
                got["last"] = now
            if len(latencies) + got["n"] >= total:
                return

    total = int(rate * seconds) + burst
    reader = asyncio.create_task(consume(total))
    await asyncio.sleep(1.0)  # joined
    started = time.monotonic()
    sends = []
    for i in range(int(rate * seconds)):
        due = started + i / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sends.append(await producer.send(topic, struct.pack(">dI", time.monotonic(), 0),
                                         key=str(i % 100).encode()))
    await asyncio.gather(*sends)
    burst_started = time.monotonic()
    futures = [await producer.send(topic, struct.pack(">dI", time.monotonic(), 1),
                                   key=str(i % 100).encode()) for i in range(burst)]
    await asyncio.gather(*futures)
    produced_s = time.monotonic() - burst_started
    await asyncio.wait_for(reader, timeout=60)
    await producer.stop()
    await consumer.stop()
    steady = {"p50": statistics.median(latencies), "p99": pct(latencies, 99),
              "n": float(len(latencies))}
    burst_stats = {"produce_rate": burst / produced_s,
                   "end_to_end_rate": burst / (got["last"] - burst_started)}
    return steady, burst_stats


async def main_async(args: argparse.Namespace) -> None:
    bench = Bench(args.sites)
    await bench.setup()
    listener = asyncio.create_task(bench.listen())
    tap = asyncio.create_task(bench.tap())
    await asyncio.sleep(1.0)
    print(f"setup done: {len(bench.study_sites)} study-sites", flush=True)

    warm = Phase("warm-up", args.rate)
    await bench.run_phase(warm, args.warmup)
    await bench.drain(warm)
    steady = Phase("steady", args.rate)
    await bench.run_phase(steady, args.seconds)
    await bench.drain(steady)
    results = {"steady": summary(steady, bench.arrived, bench.on_topic)}
    print(f"steady: {results['steady']}", flush=True)

    best = 0.0
    for rate in args.steps:
        phase = Phase(f"step {rate}", rate)
        await bench.run_phase(phase, args.step_seconds)
        await bench.drain(phase)
        s = summary(phase, bench.arrived, bench.on_topic)
        results[f"step {rate:g}"] = s
        print(f"step {rate:g}/s: {s}", flush=True)
        if s["lost"] or s["errors"] or s["rate"] < 0.95 * rate or s["p99"] > 1000:
            break
        best = rate
    listener.cancel()
    tap.cancel()
    await asyncio.gather(listener, tap, return_exceptions=True)
    await bench.client.close()

    raw_steady, raw_burst = await raw_broker(bench.settings.bootstrap_servers, args.rate,
                                             args.raw_seconds, args.raw_burst)
    st = results["steady"]
    print("\n## Results (SQLite, embedded broker, loopback)\n")
    print("| measure | sitenet (RecordMilestone -> stream) | raw broker (aiokafka) | ratio |")
    print("|---|---|---|---|")
    print(f"| latency p50 at {args.rate:g}/s | {st['p50']:.1f} ms | {raw_steady['p50']:.1f} ms "
          f"| {st['p50'] / raw_steady['p50']:.1f}x |")
    print(f"| latency p99 at {args.rate:g}/s | {st['p99']:.1f} ms | {raw_steady['p99']:.1f} ms "
          f"| {st['p99'] / raw_steady['p99']:.1f}x |")
    print(f"| of which RecordMilestone returned -> event on the topic (tracker, relay), "
          f"p50 / p99 | {st['topic_p50']:.1f} / {st['topic_p99']:.1f} ms | | |")
    print(f"| of which event on the topic -> on the stream (notifications), p50 / p99 "
          f"| {st['stream_p50']:.1f} / {st['stream_p99']:.1f} ms | | |")
    print(f"| RecordMilestone call itself, p50 / p99 | {st['rpc_p50']:.1f} / "
          f"{st['rpc_p99']:.1f} ms | | |")
    print(f"| achieved rate, lost | {st['rate']:.0f}/s for {args.seconds:g} s, "
          f"{st['n']:.0f} sent, {st['lost']:.0f} lost, {st['errors']:.0f} errors | "
          f"{raw_steady['n']:.0f} records, 0 lost | |")
    print(f"| highest sustained rate, nothing lost | {best:g}/s (steps of "
          f"{args.step_seconds:g} s: {', '.join(f'{r:g}' for r in args.steps)}) | "
          f"{raw_burst['end_to_end_rate']:.0f}/s produce-to-consume burst of "
          f"{args.raw_burst} | {raw_burst['end_to_end_rate'] / best if best else 0:.0f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--steps", type=float, nargs="*", default=[50, 100, 150, 200, 300])
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--raw-seconds", type=float, default=20.0)
    parser.add_argument("--raw-burst", type=int, default=20000)
    args = parser.parse_args()

    with running_system(PORTS):
        asyncio.run(main_async(args))

if __name__ == "__main__":
    main()
