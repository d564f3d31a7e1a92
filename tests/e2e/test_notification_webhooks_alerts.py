"""Webhooks (signed, retried, dead-lettered, never twice) and the alerts the service
raises itself, through gRPC against the real broker on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2

from services.common import topics
from services.common.events import Envelope
from services.notifications.domain.webhooks import SIGNATURE_HEADER, verify
from sitenet.events.v1 import events_pb2
from sitenet.notifications.v1 import notifications_pb2 as npb
from sitenet.registry.v1 import registry_pb2
from sitenet.startup.v1 import startup_pb2
from tests.conftest import BACKENDS
from tests.support.errors import fails, field_violations
from tests.support.notify import eventually, plan, publish, stream, webhook_receiver
from tests.support.scenario import (
    add_study_site,
    create_site,
    create_study,
    day,
    record,
    unique,
)
from tests.support.system import RunningSystem, running_system

SECRET = "whsec-0123456789abcdef"
ALERT = "sitenet.notifications.v1.Alert"
FAST = {"webhook_backoff_base_s": 0.1, "webhook_backoff_max_s": 0.4,
        "webhook_max_attempts": 3, "webhook_timeout_s": 0.5, "webhook_poll_interval_s": 0.05,
        "alert_check_interval_s": 0.2, "alert_blocked_after_s": 1.0}


@pytest.fixture(scope="module", params=BACKENDS)
async def fast(request: pytest.FixtureRequest, kafka_bootstrap: str,
               tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSystem]:
    """One system per backend for this module's tests (each makes its own study), whose
    retries and alert timer are quick enough for tests."""
    directory = tmp_path_factory.mktemp(f"fast-{request.param}")
    async with running_system(str(request.param), kafka_bootstrap, directory,
                              **FAST) as running:
        yield running


async def webhook(system: RunningSystem, url: str, **flt: list[str]) -> npb.Subscription:
    return await system.notifications.CreateSubscription(npb.CreateSubscriptionRequest(
        subscription=npb.Subscription(
            filter=npb.NotificationFilter(**flt),
            channel=npb.Channel(webhook=npb.WebhookChannel(url=url, secret=SECRET)))),
        metadata=system.admin)


async def deliveries(system: RunningSystem, sub: str) -> list[npb.Delivery]:
    page = await system.notifications.ListDeliveries(
        npb.ListDeliveriesRequest(parent=sub, page_size=100), metadata=system.admin)
    return list(page.deliveries)


async def test_webhook_fails_twice_then_succeeds_and_is_signed(fast: RunningSystem) -> None:
    system = fast
    site = await create_site(system)
    study = await create_study(system)
    async with webhook_receiver(statuses=(500, 503, 200)) as receiver:
        sub = await webhook(system, receiver.url, studies=[study.name],
                            event_types=["sitenet.events.v1.MilestoneRecorded"])
        assert not sub.channel.webhook.secret  # never shown again
        ss = await add_study_site(system, study.name, site.name)
        await plan(system, ss.name, "site-selected", "2027-03-01")

        async def delivered() -> list[npb.Delivery]:
            rows = await deliveries(system, sub.name)
            return rows if rows and rows[0].state == npb.Delivery.DELIVERED else []

        (delivery,) = await eventually(delivered)
        assert [(a.attempt, a.outcome, a.http_status) for a in delivery.attempts] == [
            (1, "HTTP_ERROR", 500), (2, "HTTP_ERROR", 503), (3, "OK", 200)]
        waits = [(b.attempt_time.ToDatetime() - a.attempt_time.ToDatetime()).total_seconds()
                 for a, b in zip(delivery.attempts, delivery.attempts[1:], strict=False)]
        assert waits[0] >= 0.05 and waits[1] >= 0.1  # backed off, jittered within [c/2, c]
        assert len(receiver.received) == 3
        await asyncio.sleep(0.5)
        assert len(receiver.received) == 3  # acknowledged: never sent again

        last = receiver.received[-1]
        assert verify(SECRET, last.headers[SIGNATURE_HEADER], last.body, int(time.time()))
        assert not verify("another-secret-entirely", last.headers[SIGNATURE_HEADER],
                          last.body, int(time.time()))
        assert not verify(SECRET, last.headers[SIGNATURE_HEADER], last.body + b" ",
                          int(time.time()))
        body = json.loads(last.body)
        assert body["event_type"] == "sitenet.events.v1.MilestoneRecorded"
        assert body["delivery"] == delivery.name and body["cursor"] == delivery.cursor
        assert body["event"]["after"]["status"] == "PLANNED"
        assert body["text_ko"] and body["subscription"] == sub.name
        assert last.headers["Sitenet-Attempt"] == "3"


async def test_webhook_dead_letters_after_bounded_attempts_and_timeouts(
        fast: RunningSystem) -> None:
    system = fast
    study = await create_study(system)
    async with webhook_receiver(statuses=(502,)) as failing, \
            webhook_receiver(delay_s=2.0) as slow:
        added = ["sitenet.events.v1.StudySiteAdded"]
        down = await webhook(system, failing.url, studies=[study.name], event_types=added)
        hung = await webhook(system, slow.url, studies=[study.name], event_types=added)
        site = await create_site(system)
        await add_study_site(system, study.name, site.name)

        async def dead(sub: str) -> list[npb.Delivery]:
            rows = await deliveries(system, sub)
            return rows if rows and all(
                r.state == npb.Delivery.DEAD_LETTER for r in rows) else []

        (down_row,) = await eventually(lambda: dead(down.name))
        assert [a.outcome for a in down_row.attempts] == ["HTTP_ERROR"] * 3
        (hung_row,) = await eventually(lambda: dead(hung.name))
        assert [a.outcome for a in hung_row.attempts] == ["TIMEOUT"] * 3
        await asyncio.sleep(0.5)
        assert len(failing.received) == 3  # bounded


async def test_a_webhook_to_an_internal_address_is_refused_and_changes_nothing(
        fast: RunningSystem) -> None:
    """A subscriber picks the URL; the service must not become its way into the network
    (cloud metadata, the cluster's own services). Loopback is allowed here only because
    the test settings keep the default SITENET_WEBHOOK_ALLOWED_NETWORKS."""
    system = fast
    before = await system.notifications.ListSubscriptions(
        npb.ListSubscriptionsRequest(page_size=1000), metadata=system.admin)
    for url in ("https://169.254.169.254/latest/meta-data/", "https://10.0.0.8/hook",
                "https://[fd00::1]/hook"):
        error = await fails(webhook(system, url), grpc.StatusCode.INVALID_ARGUMENT)
        violation = field_violations(error)["subscription.channel.webhook.url"]
        assert "not a public address" in violation and "ALLOWED_NETWORKS" in violation
    after = await system.notifications.ListSubscriptions(
        npb.ListSubscriptionsRequest(page_size=1000), metadata=system.admin)
    assert len(after.subscriptions) == len(before.subscriptions)


async def test_duplicated_event_makes_one_webhook_delivery(fast: RunningSystem) -> None:
    system = fast
    async with webhook_receiver() as receiver:
        study_id = unique("dupwh")
        sub = await webhook(system, receiver.url, studies=[f"studies/{study_id}"])
        event = events_pb2.StudyCreated(study=events_pb2.StudyState(
            name=f"studies/{study_id}", protocol_number="DW-1", sponsor_org="acme"))
        envelope = Envelope(type="sitenet.events.v1.StudyCreated", source="//sitenet/test",
                            subject=f"studies/{study_id}",
                            topic=system.settings.topic(topics.STUDIES.name), key=study_id,
                            data=event.SerializeToString())
        await publish(system, [envelope, envelope])
        await publish(system, [envelope])
        await eventually(lambda: _count(receiver, 1))
        await asyncio.sleep(1.0)
        assert len(receiver.received) == 1
        assert len(await deliveries(system, sub.name)) == 1


async def _count(receiver: object, n: int) -> bool:
    return len(receiver.received) >= n  # type: ignore[attr-defined]


async def test_alerts_overdue_irb_rejection_blocked_and_suspension(
        fast: RunningSystem) -> None:
    system = fast
    site = await create_site(system, name_en="Asan Medical Center")
    study = await create_study(system)
    alerts = stream(system, cursor="0", studies=[study.name], event_types=[ALERT])
    ss = (await add_study_site(system, study.name, site.name)).name

    # Overdue: planned in the past, not done; raised once by the timer, cleared when done.
    await plan(system, ss, "site-selected", "2020-01-10")
    first = await alerts.wait_for(1)
    alert = npb.Alert.FromString(first[0].event.value)
    assert alert.kind == npb.Alert.MILESTONE_OVERDUE and alert.due_date == "2020-01-10"
    assert "Asan Medical Center" in first[0].text_en and "2020-01-10" in first[0].text_en
    assert "지연" in first[0].text_ko
    await asyncio.sleep(0.6)  # several timer ticks: still once
    assert len(alerts.items) == 1
    await record(system, ss, "site-selected", "2020-02-01")
    await record(system, ss, "cda-executed", "2020-02-10")
    await record(system, ss, "irb-submitted", "2020-02-20")
    cleared = (await alerts.wait_for(2))[1]
    assert npb.Alert.FromString(cleared.event.value).kind == npb.Alert.MILESTONE_OVERDUE_CLEARED

    # IRB rejection: at once; blocked longer than the threshold (1 s here): by the timer.
    await record(system, ss, "irb-approved", "2020-03-01", status=startup_pb2.REJECTED)
    items = await alerts.wait_for(4)
    kinds = [npb.Alert.FromString(n.event.value).kind for n in items[2:4]]
    assert kinds == [npb.Alert.IRB_REJECTED, npb.Alert.STUDY_SITE_BLOCKED]
    assert "IRB" in items[2].text_en and "반려" in items[2].text_ko

    # A site suspended while it is in a study (the registry's SiteUpdated event).
    site_id = site.name.removeprefix("sites/")
    before = events_pb2.SiteState(name=site.name, display_name_en="Asan Medical Center",
                                  country_code="KR", region_code="KR-11", status="ACTIVE")
    after = events_pb2.SiteState()
    after.CopyFrom(before)
    after.status = "SUSPENDED"
    suspended = Envelope(
        type="sitenet.events.v1.SiteUpdated", source="//sitenet/site-registry",
        subject=site.name, topic=system.settings.topic(topics.SITES.name), key=site_id,
        data=events_pb2.SiteUpdated(site=after, before=before, changed_fields=["status"],
                                    reason="audit finding").SerializeToString(),
        id=str(uuid.uuid4()))
    await publish(system, [suspended, suspended])  # the duplicate raises nothing more
    items = await alerts.wait_for(5)
    assert npb.Alert.FromString(items[4].event.value).kind == npb.Alert.SITE_SUSPENDED
    assert items[4].study == study.name
    await asyncio.sleep(0.8)
    await alerts.close()
    assert len(alerts.items) == 5
    assert len({n.event_id for n in alerts.items}) == 5


MINUTE = dt.timedelta(minutes=1)
# A milestone due 2026-03-10 is overdue from 00:00 on 03-11 at the site:
SEOUL_MIDNIGHT = dt.datetime(2026, 3, 10, 15, 0, tzinfo=dt.UTC)  # 00:00 KST (UTC+9)
UTC_MIDNIGHT = dt.datetime(2026, 3, 11, 0, 0, tzinfo=dt.UTC)
LA_MIDNIGHT = dt.datetime(2026, 3, 11, 7, 0, tzinfo=dt.UTC)  # 00:00 PDT (UTC-7 since 03-08)


async def test_overdue_alert_comes_when_the_date_at_the_site_is_past_due(
        fast: RunningSystem) -> None:
    """The alert comes at the instant the tracker starts counting the milestone overdue
    (days_overdue 1): at midnight after the due date in the site's time zone, once."""
    system = fast
    notifications, tracker = system.notifications_app.service, system.tracker_app.service
    clocks = notifications.clock, tracker.clock

    def at(moment: dt.datetime) -> None:
        notifications.clock = tracker.clock = lambda: moment

    at(SEOUL_MIDNIGHT - MINUTE)
    try:
        seoul = await create_site(system, time_zone="Asia/Seoul")
        la = await create_site(system, country="US", region="US-CA",
                               time_zone="America/Los_Angeles")
        moved = await create_site(system, time_zone="Asia/Seoul")  # to Los Angeles, below
        study = await create_study(system, countries=("KR", "US"))
        events = stream(system, cursor="0", studies=[study.name])
        alerts = stream(system, cursor="0", studies=[study.name], event_types=[ALERT])
        kr, us, mv = [(await add_study_site(system, study.name, site.name)).name
                      for site in (seoul, la, moved)]
        for ss in (kr, us, mv):
            await record(system, ss, "site-selected", "2026-02-24")
            await plan(system, ss, "cda-executed", "2026-03-20")  # target: +14 d, 03-10

        # A study-site told of by a tracker from before events carried the zone: UTC.
        old_site = unique("old")
        ref = events_pb2.StudySiteRef(
            name=f"{study.name}/sites/{old_site}", study=study.name, site=f"sites/{old_site}",
            sponsor_org="acme", country_code="KR", region_code="KR-11",
            site_display_name_en="Old Hospital", protocol_number=study.protocol_number)
        due = events_pb2.MilestoneState(milestone="cda-executed", display_name="CDA executed",
                                        status="PLANNED", due_date=day("2026-03-10"))
        study_id = study.name.removeprefix("studies/")
        await publish(system, [Envelope(
            type=f"sitenet.events.v1.{type(message).__name__}", source="//sitenet/test",
            subject=subject, topic=system.settings.topic(topics.STUDIES.name), key=study_id,
            data=message.SerializeToString()) for message, subject in (
                (events_pb2.StudySiteAdded(study_site=ref), ref.name),
                (events_pb2.MilestoneRecorded(study_site=ref, after=due),
                 f"{ref.name}/milestones/cda-executed"))])

        # The registry moves a site to another zone: both services follow.
        site_events = stream(system, cursor="0", sites=[moved.name],
                             event_types=["sitenet.events.v1.SiteUpdated"])
        await system.registry.UpdateSite(registry_pb2.UpdateSiteRequest(
            site=registry_pb2.Site(name=moved.name, etag=moved.etag,
                                   time_zone="America/Los_Angeles"),
            update_mask=field_mask_pb2.FieldMask(paths=["time_zone"])), metadata=system.admin)
        await site_events.wait_for(1)

        old = ref.name
        await eventually(lambda: _all_recorded(events, {kr, us, mv, old}), timeout_s=15)
        added = next(n for n in events.items if n.subject == kr
                     and n.event_type == "sitenet.events.v1.StudySiteAdded")
        assert events_pb2.StudySiteAdded.FromString(
            added.event.value).study_site.time_zone == "Asia/Seoul"

        async def days_overdue(ss: str) -> int:
            got = await system.tracker.GetStudySite(
                startup_pb2.GetStudySiteRequest(name=ss), metadata=system.admin)
            return next(m.days_overdue for m in got.milestones if m.milestone == "cda-executed")

        async def tracker_days() -> dict[str, int]:
            return {ss: await days_overdue(ss) for ss in (kr, us, mv)}

        # The tracker learns of the move by its own consumer: at 00:00 in Seoul, the site
        # that moved is not overdue there once it has.
        tracker.clock = lambda: SEOUL_MIDNIGHT
        await eventually(lambda: _is(days_overdue(mv), 0))
        tracker.clock = lambda: SEOUL_MIDNIGHT - MINUTE

        async def raised(count: int) -> set[str]:
            """The study-sites alerted overdue, once `count` alerts are in and several timer
            ticks (and a check of our own) raise no more."""
            await alerts.wait_for(count)
            await notifications.check_alerts()
            await asyncio.sleep(0.8)
            assert len(alerts.items) == count, [n.text_en for n in alerts.items]
            decoded = [npb.Alert.FromString(n.event.value) for n in alerts.items]
            assert all(x.kind == npb.Alert.MILESTONE_OVERDUE and x.due_date == "2026-03-10"
                       for x in decoded)
            return {x.study_site for x in decoded}

        # 23:59 in Seoul on the due date: due today, overdue nowhere.
        assert await raised(0) == set()
        assert await tracker_days() == {kr: 0, us: 0, mv: 0}
        # 00:00 in Seoul: Seoul only (the site that moved is on Los Angeles time now).
        at(SEOUL_MIDNIGHT)
        assert await raised(1) == {kr}
        assert await tracker_days() == {kr: 1, us: 0, mv: 0}
        at(UTC_MIDNIGHT - MINUTE)
        assert await raised(1) == {kr}
        # 00:00 UTC: the study-site whose zone no event told.
        at(UTC_MIDNIGHT)
        assert await raised(2) == {kr, old}
        # 23:59 in Los Angeles, already 03-11 in UTC: not yet.
        at(LA_MIDNIGHT - MINUTE)
        assert await raised(2) == {kr, old}
        assert await tracker_days() == {kr: 1, us: 0, mv: 0}
        at(LA_MIDNIGHT)
        assert await raised(4) == {kr, old, us, mv}
        assert await tracker_days() == {kr: 1, us: 1, mv: 1}

        # Done: cleared, as before.
        await record(system, kr, "cda-executed", "2026-03-11")
        cleared = (await alerts.wait_for(5))[4]
        assert npb.Alert.FromString(cleared.event.value).kind == \
            npb.Alert.MILESTONE_OVERDUE_CLEARED
        for collector in (events, alerts, site_events):
            await collector.close()
    finally:
        notifications.clock, tracker.clock = clocks


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def _all_recorded(events: object, study_sites: set[str]) -> bool:
    """Every study-site's cda-executed has reached the notification service."""
    seen = {n.subject.rsplit("/milestones/", 1)[0]
            for n in events.items  # type: ignore[attr-defined]
            if n.event_type == "sitenet.events.v1.MilestoneRecorded"
            and n.subject.endswith("/milestones/cda-executed")}
    return set(study_sites) <= seen


async def test_restart_resumes_pending_webhook_deliveries(
        backend: str, kafka_bootstrap: str, tmp_path: Path) -> None:
    import grpc

    from services.notifications.bootstrap import build as build_notifications
    from sitenet.notifications.v1 import notifications_pb2_grpc

    slow_retry = {**FAST, "webhook_backoff_base_s": 2.0, "webhook_backoff_max_s": 2.0,
                  "webhook_max_attempts": 5}
    async with running_system(backend, kafka_bootstrap, tmp_path, **slow_retry) as system, \
            webhook_receiver(statuses=(503, 503, 200)) as receiver:
        study = await create_study(system)
        sub = await webhook(system, receiver.url, studies=[study.name],
                            event_types=["sitenet.events.v1.StudySiteAdded"])
        site = await create_site(system)
        await add_study_site(system, study.name, site.name)

        async def tried_once() -> list[npb.Delivery]:
            rows = await deliveries(system, sub.name)
            return rows if rows and len(rows[0].attempts) == 1 else []

        await eventually(tried_once)
        await system.notifications_app.runtime.stop()  # the retry is pending, 1-2 s away
        assert len(receiver.received) == 1

        second = build_notifications(system.settings.model_copy(
            update={"notifications_port": 0}))
        await second.runtime.start()
        try:
            async with grpc.aio.insecure_channel(
                    f"127.0.0.1:{second.server.port}") as channel:
                stub = notifications_pb2_grpc.NotificationsStub(channel)

                async def delivered() -> list[npb.Delivery]:
                    page = await stub.ListDeliveries(npb.ListDeliveriesRequest(
                        parent=sub.name), metadata=system.admin)
                    rows = list(page.deliveries)
                    return rows if rows and rows[0].state == npb.Delivery.DELIVERED else []

                (row,) = await eventually(delivered, timeout_s=20)
        finally:
            await second.runtime.stop()
        assert [a.http_status for a in row.attempts] == [503, 503, 200]
        assert len(receiver.received) == 3
        assert len({r.headers["Sitenet-Delivery"] for r in receiver.received}) == 1
