"""Streams and subscriptions through gRPC against the real broker, on SQLite and
PostgreSQL: cursors, reconnects, duplicates, slow readers, restarts (graceful, and a
SIGKILL of the service's process), permissions."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import grpc
import pytest

from services.common import topics
from services.common.config import ServiceName, Settings
from services.common.events import Envelope
from services.common.identity import Role
from services.common.rpc.tls import aio_channel
from services.common.tokens import TokenService
from services.notifications.bootstrap import build as build_notifications
from services.site_registry.bootstrap import build as build_registry
from services.startup_tracker.bootstrap import build as build_tracker
from sitenet.events.v1 import events_pb2
from sitenet.notifications.v1 import notifications_pb2 as npb
from sitenet.notifications.v1 import notifications_pb2_grpc
from sitenet.registry.v1 import registry_pb2 as rpb
from sitenet.registry.v1 import registry_pb2_grpc
from sitenet.startup.v1 import startup_pb2 as spb
from sitenet.startup.v1 import startup_pb2_grpc
from tests.support.databases import database
from tests.support.faults import Counts, end_service, milestone_events, service_env, start_service
from tests.support.notify import Collector, eventually, plan, publish, stream
from tests.support.ports import free_port
from tests.support.scenario import (
    add_study_site,
    add_study_site_via,
    create_site,
    create_study,
    day,
    unique,
)
from tests.support.system import TEST_SECRET, RunningSystem

MILESTONE = "sitenet.events.v1.MilestoneRecorded"


async def study_site(system: RunningSystem, sponsor: str = "acme") -> tuple[str, str]:
    site = await create_site(system)
    study = await create_study(system, sponsor_org=sponsor)
    added = await add_study_site(system, study.name, site.name)
    return study.name, added.name


def dates(n: int) -> list[str]:
    return [f"2027-{1 + i // 28:02d}-{1 + i % 28:02d}" for i in range(n)]


async def test_reconnect_with_cursor_gets_what_it_missed_in_order_once(
        shared_system: RunningSystem) -> None:
    system = shared_system
    study, ss = await study_site(system)
    first = stream(system, studies=[study], event_types=[MILESTONE])
    await asyncio.sleep(0.3)
    planned = dates(10)
    for when in planned[:4]:
        await plan(system, ss, "site-selected", when)
    got = await first.wait_for(4)
    await first.close()
    last_cursor = got[3].cursor
    for when in planned[4:]:  # while nobody listens
        await plan(system, ss, "site-selected", when)

    again = stream(system, cursor=last_cursor, studies=[study], event_types=[MILESTONE])
    resumed = await again.wait_for(6)
    await asyncio.sleep(0.5)  # nothing more arrives: no repeats
    await again.close()
    assert len(again.items) == 6
    seen = [n.event.value for n in got[:4] + resumed]
    texts = []
    for raw in seen:
        event = events_pb2.MilestoneRecorded.FromString(raw)
        texts.append(f"{event.after.planned_date.year}-{event.after.planned_date.month:02d}-"
                     f"{event.after.planned_date.day:02d}")
    assert texts == planned  # in order, each once
    cursors = [int(n.cursor) for n in got[:4] + resumed]
    assert cursors == sorted(cursors) and len(set(cursors)) == 10
    assert all(n.text_en and n.text_ko for n in resumed)


async def test_duplicated_event_is_told_once(shared_system: RunningSystem) -> None:
    system = shared_system
    study_id = unique("dup")
    event = events_pb2.StudyCreated(study=events_pb2.StudyState(
        name=f"studies/{study_id}", protocol_number="DUP-1", title="Duplicate",
        sponsor_org="acme"))
    envelope = Envelope(type="sitenet.events.v1.StudyCreated", source="//sitenet/test",
                        subject=f"studies/{study_id}",
                        topic=system.settings.topic(topics.STUDIES.name), key=study_id,
                        data=event.SerializeToString())
    marker = dataclasses.replace(envelope, id=str(uuid.uuid4()), subject=f"studies/{study_id}/m")
    watcher = stream(system, cursor="0", studies=[f"studies/{study_id}"])
    # The same CloudEvent id twice (a producer retry, a replay), then another event.
    await publish(system, [envelope])
    await publish(system, [envelope, marker])
    items = await watcher.wait_for(2)
    await asyncio.sleep(0.5)
    await watcher.close()
    assert [n.event_id for n in items] == [envelope.id, marker.id]
    assert "DUP-1" in items[0].text_en


async def test_slow_reader_holds_up_no_one(shared_system: RunningSystem) -> None:
    system = shared_system
    study, ss = await study_site(system)
    # A reader that never reads: gRPC flow control stops sending to it, nothing else.
    stalled = system.notifications.StreamNotifications(
        npb.StreamNotificationsRequest(filter=npb.NotificationFilter(studies=[study])),
        metadata=system.admin)
    brisk = stream(system, studies=[study], event_types=[MILESTONE])
    await asyncio.sleep(0.3)
    for when in dates(30):
        await plan(system, ss, "site-selected", when)
    await brisk.wait_for(30, timeout_s=15)
    # The stalled one still gets everything, in order, once it reads.
    got = []
    async for n in stalled:
        if n.event_type == MILESTONE:
            got.append(int(n.cursor))
        if len(got) == 30:
            break
    stalled.cancel()
    await brisk.close()
    assert got == [int(n.cursor) for n in brisk.items]


async def test_subscriptions_permissions_and_history(shared_system: RunningSystem) -> None:
    system = shared_system
    study, ss = await study_site(system, sponsor="acme")
    acme = system.auth("sponsor", org="acme", subject=unique("acme-user"))
    rival = system.auth("sponsor", org="rival", subject=unique("rival-user"))
    await eventually(lambda: _subscribe_ok(system, acme, study))  # the study has arrived

    # Another organisation's study: PERMISSION_DENIED; bad filters: INVALID_ARGUMENT.
    for metadata, flt, code in [
        (rival, npb.NotificationFilter(studies=[study]), grpc.StatusCode.PERMISSION_DENIED),
        (acme, npb.NotificationFilter(studies=["study-without-prefix"]),
         grpc.StatusCode.INVALID_ARGUMENT),
        (acme, npb.NotificationFilter(country_codes=["KOR"]), grpc.StatusCode.INVALID_ARGUMENT),
        (acme, npb.NotificationFilter(event_types=["not a type"]),
         grpc.StatusCode.INVALID_ARGUMENT),
        (system.auth("site", sites=["other"]), npb.NotificationFilter(sites=[
            ss.split("/sites/")[0].replace("studies", "sites")]),
         grpc.StatusCode.PERMISSION_DENIED),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await system.notifications.CreateSubscription(npb.CreateSubscriptionRequest(
                subscription=npb.Subscription(filter=flt)), metadata=metadata)
        assert caught.value.code() == code, flt
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # a webhook needs a URL and a secret
        await system.notifications.CreateSubscription(npb.CreateSubscriptionRequest(
            subscription=npb.Subscription(channel=npb.Channel(webhook=npb.WebhookChannel(
                url="http://example.com/hook", secret="short")))), metadata=acme)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    sub = await system.notifications.CreateSubscription(npb.CreateSubscriptionRequest(
        subscription=npb.Subscription(display_name="acme ops", filter=npb.NotificationFilter(
            studies=[study], event_types=[MILESTONE])), subscription_id=unique("sub")),
        metadata=acme)
    assert (await system.notifications.GetSubscription(
        npb.GetSubscriptionRequest(name=sub.name), metadata=acme)).display_name == "acme ops"
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # not the rival's to see
        await system.notifications.GetSubscription(npb.GetSubscriptionRequest(name=sub.name),
                                                   metadata=rival)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    listed = await system.notifications.ListSubscriptions(npb.ListSubscriptionsRequest(),
                                                          metadata=acme)
    assert sub.name in [s.name for s in listed.subscriptions]

    planned = dates(7)
    for when in planned:
        await plan(system, ss, "site-selected", when)

    async def history() -> list[npb.Notification]:
        out: list[npb.Notification] = []
        token = ""
        while True:
            page = await system.notifications.ListNotifications(npb.ListNotificationsRequest(
                parent=sub.name, page_size=3, page_token=token), metadata=acme)
            out += page.notifications
            token = page.next_page_token
            if not token:
                return out

    items = await eventually(lambda: _at_least(history, 7))
    assert len(items) == 7 and all(n.study == study for n in items)
    assert [int(n.cursor) for n in items] == sorted(int(n.cursor) for n in items)

    await system.notifications.DeleteSubscription(npb.DeleteSubscriptionRequest(name=sub.name),
                                                  metadata=acme)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.notifications.GetSubscription(npb.GetSubscriptionRequest(name=sub.name),
                                                   metadata=acme)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.notifications.ListNotifications(
            npb.ListNotificationsRequest(parent=sub.name), metadata=acme)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # a cursor we never gave out
        async for _ in system.notifications.StreamNotifications(
                npb.StreamNotificationsRequest(cursor="abc"), metadata=acme):
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def _subscribe_ok(system: RunningSystem, metadata: list[tuple[str, str]],
                        study: str) -> bool:
    try:
        sub = await system.notifications.CreateSubscription(npb.CreateSubscriptionRequest(
            subscription=npb.Subscription(filter=npb.NotificationFilter(studies=[study]))),
            metadata=metadata)
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.PERMISSION_DENIED:
            return False
        raise
    await system.notifications.DeleteSubscription(npb.DeleteSubscriptionRequest(name=sub.name),
                                                  metadata=metadata)
    return True


async def _at_least(history: object, n: int) -> list[npb.Notification] | None:
    items: list[npb.Notification] = await history()  # type: ignore[operator]
    return items if len(items) >= n else None


async def test_restart_in_the_middle_of_a_stream_of_events(system: RunningSystem) -> None:
    study, ss = await study_site(system)
    watcher = stream(system, cursor="0", studies=[study], event_types=[MILESTONE])
    planned = dates(24)
    for when in planned[:8]:
        await plan(system, ss, "site-selected", when)
    await watcher.wait_for(8)

    async def keep_recording() -> None:
        for when in planned[8:16]:
            await plan(system, ss, "site-selected", when)
            await asyncio.sleep(0.05)

    producer = asyncio.create_task(keep_recording())
    await asyncio.sleep(0.1)
    await system.notifications_app.runtime.stop()  # mid-stream: events keep coming
    await producer
    await watcher.close()
    for when in planned[16:]:  # while the service is down
        await plan(system, ss, "site-selected", when)
    assert len(watcher.items) < 24
    last = watcher.items[-1].cursor

    settings = system.settings.model_copy(update={"notifications_port": 0})
    second = build_notifications(settings)
    await second.runtime.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{second.server.port}") as channel:
            stub = notifications_pb2_grpc.NotificationsStub(channel)
            call = stub.StreamNotifications(npb.StreamNotificationsRequest(
                cursor=last, filter=npb.NotificationFilter(
                    studies=[study], event_types=[MILESTONE])), metadata=system.admin)
            resumed: list[npb.Notification] = []

            async def read() -> None:
                async for n in call:
                    resumed.append(n)
                    if len(watcher.items) + len(resumed) >= 24:
                        return

            await asyncio.wait_for(read(), timeout=20)
            await asyncio.sleep(0.5)
            call.cancel()
    finally:
        await second.runtime.stop()
    everything = watcher.items + resumed
    days = []
    for n in everything:
        after = events_pb2.MilestoneRecorded.FromString(n.event.value).after.planned_date
        days.append(f"{after.year}-{after.month:02d}-{after.day:02d}")
    assert days == planned  # nothing lost, nothing twice, in order


async def test_killed_with_sigkill_mid_stream_a_client_resumes_by_cursor_with_no_gap_or_repeat(
        backend: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    """The notification service as its own process (`sitenet serve notifications`),
    SIGKILLed while a client streams and milestones keep being recorded; restarted on the
    same database, the client reconnects with its last cursor. Prints the counts:

        .venv/bin/pytest -s tests/e2e/test_notification_streams.py -k sigkill
    """
    settings = Settings(
        data_dir=tmp_path, kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.", registry_port=0, tracker_port=0,
        registry_database_url=f"sqlite+aiosqlite:///{tmp_path / 'registry.db'}",
        tracker_database_url=f"sqlite+aiosqlite:///{tmp_path / 'tracker.db'}",
        jwt_secret=TEST_SECRET, relay_poll_interval_s=0.2)
    registry, tracker = build_registry(settings), build_tracker(settings)
    await asyncio.gather(registry.runtime.start(), tracker.runtime.start())
    auth = [("authorization", "Bearer " + TokenService(
        TEST_SECRET, settings.jwt_issuer, settings.jwt_audience).issue(Role.ADMIN,
                                                                        subject="writer"))]
    port = free_port()
    channels = [aio_channel(f"127.0.0.1:{p}", None)
                for p in (registry.server.port, tracker.server.port, port)]
    registry_stub = registry_pb2_grpc.SiteRegistryStub(channels[0])
    tracker_stub = startup_pb2_grpc.StartupTrackerStub(channels[1])
    notifications = notifications_pb2_grpc.NotificationsStub(channels[2])
    process: subprocess.Popen[bytes] | None = None
    writing: asyncio.Task[None] | None = None
    stop = asyncio.Event()
    try:
        async with database(backend, tmp_path, "notifications") as url:
            data_dir = tmp_path / "notifications"
            # Made here: faust creates only the last level of its directory in it (with
            # PostgreSQL nothing else would make it).
            data_dir.mkdir()
            env = service_env(settings, ServiceName.NOTIFICATIONS, port, url, data_dir)
            log = tmp_path / "notifications.log"
            process = start_service(ServiceName.NOTIFICATIONS, env, log)
            launched_at = time.monotonic()

            study = (await tracker_stub.CreateStudy(spb.CreateStudyRequest(
                study_id=unique("killed"), study=spb.Study(
                    protocol_number="KILL-1", title="Killed mid-stream", sponsor_org="acme",
                    phase=spb.PHASE_2, country_codes=["KR"])), metadata=auth)).name
            site = await registry_stub.CreateSite(rpb.CreateSiteRequest(
                site_id=unique("kill"), site=rpb.Site(
                    display_name_en="Kill", country_code="KR", region_code="KR-11",
                    city="Seoul")), metadata=auth)
            study_site = (await add_study_site_via(tracker_stub, auth, study,
                                                       site.name)).name
            await _serving(notifications, auth)
            first_start_s = time.monotonic() - launched_at

            counts = Counts()

            async def write() -> None:  # one writer: its acknowledgements are the order
                while not stop.is_set():
                    reason = f"r{counts.sent}"
                    counts.sent += 1
                    await tracker_stub.RecordMilestone(spb.RecordMilestoneRequest(
                        study_site=study_site, milestone="site-selected", status=spb.DONE,
                        actual_date=day("2026-01-05"), reason=reason, note=reason),
                        metadata=auth, timeout=10)
                    counts.acknowledged.append(reason)
                    await asyncio.sleep(0.03)

            def follow(cursor: str) -> Collector:
                return Collector(notifications.StreamNotifications(
                    npb.StreamNotificationsRequest(cursor=cursor, filter=npb.NotificationFilter(
                        studies=[study], event_types=[MILESTONE])), metadata=auth))

            first = follow("0")
            writing = asyncio.create_task(write())
            await first.wait_for(15, timeout_s=60)
            os.kill(process.pid, signal.SIGKILL)  # mid-stream, mid-write
            killed_at = time.monotonic()
            await asyncio.to_thread(process.wait, 10)
            sent_at_kill = counts.sent
            error = await first.ended()  # the stream breaks off: the client sees it
            before = list(first.items)
            assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE, error

            await asyncio.sleep(1.0)  # down; the tracker goes on recording
            process = start_service(ServiceName.NOTIFICATIONS, env, log)
            await _serving(notifications, auth)
            serving_at = time.monotonic()
            sent_while_down = counts.sent - sent_at_kill
            second = follow(before[-1].cursor)
            await asyncio.sleep(1.5)  # and after the restart
            stop.set()
            await writing
            await second.wait_for(len(counts.acknowledged) - len(before), timeout_s=90)
            caught_up_at = time.monotonic()
            await asyncio.sleep(0.5)  # a repeat would arrive now
            await second.close()

            history = await tracker_stub.ListMilestoneHistory(spb.ListMilestoneHistoryRequest(
                parent=study_site, page_size=1000), metadata=auth)
            stored = [e.reason for e in history.entries if e.milestone != "study-site"]
            events = await asyncio.to_thread(
                milestone_events, kafka_bootstrap, settings.topic(topics.STUDIES.name),
                f"{study}/", len(stored))
            told = [events_pb2.MilestoneRecorded.FromString(n.event.value).reason
                    for n in before + second.items]
            counts.report(
                f"notifications-sigkill-{backend}", first_start_ms=int(first_start_s * 1000),
                down_ms=int((serving_at - killed_at) * 1000),
                caught_up_ms=int((caught_up_at - serving_at) * 1000),
                sent_while_down=sent_while_down,
                stored=len(stored), published=len({i for i, _ in events}),
                delivered_before_kill=len(before), delivered_after=len(second.items),
                duplicates=len(told) - len(set(told)),
                missing=len(set(counts.acknowledged) - set(told)))
            assert stored == counts.acknowledged
            assert told == counts.acknowledged  # no gap, no repeat, in order
            cursors = [int(n.cursor) for n in before + second.items]
            assert cursors == sorted(set(cursors))
            # Mid-stream: milestones went on being recorded while the service was down, and
            # the resumed stream is what delivered them. (Whether the first stream had caught
            # up with the writer at the instant of the kill is a race, so it is not asserted.)
            assert sent_while_down > 0 and len(second.items) >= sent_while_down
    finally:
        stop.set()
        if writing is not None:
            await asyncio.gather(writing, return_exceptions=True)
        if process is not None:
            await asyncio.to_thread(end_service, process)
        for channel in channels:
            await channel.close()
        await asyncio.gather(registry.runtime.stop(), tracker.runtime.stop(),
                             return_exceptions=True)


async def _serving(stub: notifications_pb2_grpc.NotificationsStub,
                   auth: list[tuple[str, str]], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            await stub.ListSubscriptions(npb.ListSubscriptionsRequest(page_size=1),
                                         metadata=auth, timeout=2)
            return
        except grpc.aio.AioRpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_live_streams_each_get_what_their_reader_may_see(
        shared_system: RunningSystem) -> None:
    """Live streams are served from one shared read of the log (LiveLog); what each gets
    is still decided per reader and filter, exactly as the SQL of a replay decides."""
    system = shared_system
    study_a, ss_a = await study_site(system, sponsor="acme")
    study_b, ss_b = await study_site(system, sponsor="beta")
    site_a = "sites/" + ss_a.rsplit("/", 1)[1]
    site_b = "sites/" + ss_b.rsplit("/", 1)[1]
    mine = [study_a, study_b]
    readers = {
        "admin": stream(system, studies=mine, event_types=[MILESTONE]),
        # No study in its filter: what it gets is down to what its token may see.
        "acme": stream(system, system.auth(Role.SPONSOR, org="acme"), event_types=[MILESTONE]),
        "site_b": stream(system, system.auth(Role.SITE, sites=[site_b.removeprefix("sites/")]),
                         sites=[site_b], event_types=[MILESTONE]),
        "ops_a_only": stream(system, system.auth(Role.OPS), sites=[site_a],
                             event_types=[MILESTONE]),
    }
    twins = [stream(system, studies=mine, event_types=[MILESTONE]) for _ in range(8)]
    await asyncio.sleep(0.5)  # all live before the first event
    planned = dates(12)
    for i, when in enumerate(planned):
        await plan(system, ss_a if i % 2 == 0 else ss_b, "site-selected", when)
    await readers["admin"].wait_for(12)
    await readers["acme"].wait_for(6)
    await readers["site_b"].wait_for(6)
    await readers["ops_a_only"].wait_for(6)
    await asyncio.sleep(0.5)  # anything extra would have come by now

    def days(collector: Collector) -> list[str]:
        out = []
        for n in collector.items:
            after = events_pb2.MilestoneRecorded.FromString(n.event.value).after.planned_date
            out.append(f"{after.year}-{after.month:02d}-{after.day:02d}")
        return out

    # In order per study-site (one Kafka key); the two sites' events may interleave.
    assert sorted(days(readers["admin"])) == planned
    assert [d for d, n in zip(days(readers["admin"]), readers["admin"].items, strict=True)
            if n.site == site_b] == planned[1::2]
    assert days(readers["acme"]) == planned[0::2]
    assert {n.site for n in readers["acme"].items} == {site_a}
    assert days(readers["site_b"]) == planned[1::2]
    assert days(readers["ops_a_only"]) == planned[0::2]
    for twin in twins:
        await twin.wait_for(12)
        assert [n.cursor for n in twin.items] == [n.cursor for n in readers["admin"].items]
    for collector in [*readers.values(), *twins]:
        await collector.close()
