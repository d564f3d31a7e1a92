"""The path every later capability hangs on, through the real pieces: a milestone
recorded at a site reaches the sponsor's live stream within a second."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from sitenet.events.v1 import events_pb2
from sitenet.notifications.v1 import notifications_pb2
from sitenet.startup.v1 import startup_pb2
from tests.support.scenario import add_study_site, create_site, create_study, record, unique
from tests.support.system import RunningSystem


async def test_milestone_reaches_sponsor_stream_within_a_second(system: RunningSystem) -> None:
    site = await create_site(system, "snuh", name_en="Seoul National University Hospital",
                             display_name_ko="서울대학교병원")
    study = await create_study(system, "onc-301", sponsor_org="acme")
    study_site = await add_study_site(system, study.name, site.name)
    assert study_site.name == "studies/onc-301/sites/snuh"
    assert [m.milestone for m in study_site.milestones][:2] == ["site-selected", "cda-executed"]

    site_user = system.auth("site", sites=["snuh"])
    sponsor = system.auth("sponsor", org="acme")
    stream = system.notifications.StreamNotifications(
        notifications_pb2.StreamNotificationsRequest(
            filter=notifications_pb2.NotificationFilter(
                studies=[study.name], event_types=["sitenet.events.v1.MilestoneRecorded"]),
            # From the start of the log: without a cursor a stream begins wherever the log
            # is when the server opens it, which on a loaded machine may be after the first
            # milestones below.
            cursor="0"),
        metadata=sponsor)
    received: asyncio.Queue[tuple[float, notifications_pb2.Notification]] = asyncio.Queue()

    async def listen() -> None:
        async for notification in stream:
            await received.put((time.monotonic(), notification))

    listener = asyncio.create_task(listen())
    try:
        earlier = [("site-selected", "2026-09-01"), ("cda-executed", "2026-09-05"),
                   ("irb-submitted", "2026-09-10")]
        for name, when in earlier:
            await record(system, study_site.name, name, when, metadata=site_user)
        for name, _ in earlier:  # in the order they were recorded
            _, notification = await asyncio.wait_for(received.get(), timeout=5)
            assert notification.subject.endswith(f"/milestones/{name}")

        milestone = await record(system, study_site.name, "irb-approved", "2026-10-01",
                                 metadata=site_user)
        returned = time.monotonic()
        assert milestone.status == startup_pb2.DONE

        arrived, notification = await asyncio.wait_for(received.get(), timeout=5)
        assert notification.event_type == "sitenet.events.v1.MilestoneRecorded"
        assert arrived - returned < 1.0, f"took {arrived - returned:.3f}s"
        assert notification.subject == "studies/onc-301/sites/snuh/milestones/irb-approved"
        assert notification.study == "studies/onc-301"
        assert "IRB approved" in notification.text_en
        assert "IRB 승인" in notification.text_ko
        assert "day 31" in notification.text_en  # 2026-09-01 is day 1
        event = events_pb2.MilestoneRecorded()
        assert notification.event.Unpack(event)
        assert event.after.status == "DONE"
        assert event.before.status == ""
        assert event.actor.subject == "site@snuh"
        assert received.empty()
    finally:
        listener.cancel()
        stream.cancel()


async def test_other_organisation_sees_neither_study_nor_its_events(
        system: RunningSystem) -> None:
    site = await create_site(system)
    study = await create_study(system, sponsor_org="acme")
    study_site = await add_study_site(system, study.name, site.name)

    rival = system.auth("sponsor", org="rival")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.tracker.GetStudy(startup_pb2.GetStudyRequest(name=study.name),
                                      metadata=rival)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.notifications.CreateSubscription(
            notifications_pb2.CreateSubscriptionRequest(subscription=notifications_pb2.Subscription(
                filter=notifications_pb2.NotificationFilter(studies=[study.name]))),
            metadata=rival)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # A rival's unfiltered stream gets nothing of acme's study.
    stream = system.notifications.StreamNotifications(
        notifications_pb2.StreamNotificationsRequest(cursor="0"), metadata=rival)
    await record(system, study_site.name, "site-selected", "2026-09-01")
    seen: list[str] = []

    async def listen() -> None:
        async for notification in stream:
            seen.append(notification.study)

    listener = asyncio.create_task(listen())
    await asyncio.sleep(1.5)
    listener.cancel()
    stream.cancel()
    assert study.name not in seen


async def test_calls_without_a_valid_token_are_unauthenticated(system: RunningSystem) -> None:
    from sitenet.registry.v1 import registry_pb2

    for metadata in ([], [("authorization", "Bearer not-a-jwt")],
                     [("authorization", "Basic abc")]):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await system.registry.ListSites(registry_pb2.ListSitesRequest(), metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    forged = system.tokens.issue  # a token signed with another key is refused too
    from services.common.identity import Role
    from services.common.tokens import TokenService

    other = TokenService("another-key-entirely-0123456789abcdef", "sitenet", "sitenet")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.tracker.ListStudies(
            startup_pb2.ListStudiesRequest(),
            metadata=[("authorization", f"Bearer {other.issue(Role.ADMIN)}")])
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert forged(Role.OPS)  # the system's own key still works
    await system.tracker.ListStudies(startup_pb2.ListStudiesRequest(),
                                     metadata=system.auth("ops"))
    _ = unique
