"""Webhooks (signed, retried, dead-lettered, never twice) and the alerts the service
raises itself, through gRPC against the real broker on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from services.common import topics
from services.common.events import Envelope
from services.notifications.domain.webhooks import SIGNATURE_HEADER, verify
from sitenet.events.v1 import events_pb2
from sitenet.notifications.v1 import notifications_pb2 as npb
from sitenet.startup.v1 import startup_pb2
from tests.conftest import BACKENDS
from tests.support.errors import fails, field_violations
from tests.support.notify import eventually, plan, publish, stream, webhook_receiver
from tests.support.scenario import add_study_site, create_site, create_study, record, unique
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
