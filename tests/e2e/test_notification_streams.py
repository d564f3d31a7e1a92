"""Streams and subscriptions through gRPC against the real broker, on SQLite and
PostgreSQL: cursors, reconnects, duplicates, slow readers, restarts, permissions."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import grpc
import pytest

from services.common import topics
from services.common.events import Envelope
from services.notifications.bootstrap import build as build_notifications
from sitenet.events.v1 import events_pb2
from sitenet.notifications.v1 import notifications_pb2 as npb
from sitenet.notifications.v1 import notifications_pb2_grpc
from tests.support.notify import eventually, plan, publish, stream
from tests.support.scenario import add_study_site, create_site, create_study, unique
from tests.support.system import RunningSystem

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
