"""Every RPC, called by every kind of caller, answers what tests/support/access.py says.

The table is the documentation (docs/access-control.md is rendered from it); this
test is what keeps it true, and what refuses an RPC nobody wrote a row for.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message

from services.common.identity import Role
from sitenet.notifications.v1 import notifications_pb2 as npb
from sitenet.registry.v1 import registry_pb2 as rpb
from sitenet.startup.v1 import startup_pb2 as spb
from tests.support import access
from tests.support.scenario import add_study_site, create_site, create_study, day, unique
from tests.support.system import RunningSystem, running_system
from tests.support.tokens import claims, hs256

SERVICES = [rpb.DESCRIPTOR.services_by_name["SiteRegistry"],
            spb.DESCRIPTOR.services_by_name["StartupTracker"],
            npb.DESCRIPTOR.services_by_name["Notifications"]]
ROOT = Path(__file__).resolve().parents[2]


def service_methods() -> list[str]:
    """Every RPC the services define, read from the compiled protos."""
    return [f"{s.full_name}/{m.name}" for s in SERVICES for m in s.methods]


@dataclass
class World:
    system: RunningSystem
    site_x: str
    site_y: str
    study: str  # "studies/..." of org A, with X and Y in it
    subscription: str  # sponsor A's, on the study

    def metadata(self, caller: str) -> list[tuple[str, str]]:
        s = self.system
        x, y = self.site_x.removeprefix("sites/"), self.site_y.removeprefix("sites/")
        tokens = {
            "admin": lambda: s.token(Role.ADMIN, subject="admin-1"),
            "sponsor_a": lambda: s.token(Role.SPONSOR, org="org-a", subject="sponsor-a"),
            "sponsor_b": lambda: s.token(Role.SPONSOR, org="org-b", subject="sponsor-b"),
            "site_x": lambda: s.token(Role.SITE, sites=[x], subject="site-x"),
            "site_y": lambda: s.token(Role.SITE, sites=[y], subject="site-y"),
            "ops": lambda: s.token(Role.OPS, subject="ops-1"),
            "expired": lambda: hs256(claims(iat=int(time.time()) - 7200,
                                            nbf=int(time.time()) - 7200,
                                            exp=int(time.time()) - 3600)),
            "foreign_key": lambda: hs256(claims(), secret="another-key-" + "k" * 40),
        }
        if caller == "no_token":
            return []
        return [("authorization", f"Bearer {tokens[caller]()}")]


# --- one request per RPC; fresh resources for the ones that change something ----------

async def _fresh_study(w: World, with_x: bool = False) -> str:
    study = await create_study(w.system, unique("acc"), sponsor_org="org-a")
    if with_x:
        await add_study_site(w.system, study.name, w.site_x)
    return study.name


async def _fresh_subscription(w: World) -> str:
    sub = await w.system.notifications.CreateSubscription(
        npb.CreateSubscriptionRequest(subscription=npb.Subscription(
            filter=npb.NotificationFilter(studies=[w.study]),
            channel=npb.Channel(stream=npb.StreamChannel())),
            subscription_id=unique("sub")),
        metadata=w.metadata("sponsor_a"))
    return sub.name


async def _webhook_subscription(w: World) -> str:
    # A loopback URL where nothing listens: deliveries fail and stay on this machine.
    sub = await w.system.notifications.CreateSubscription(
        npb.CreateSubscriptionRequest(subscription=npb.Subscription(
            filter=npb.NotificationFilter(studies=[w.study]),
            channel=npb.Channel(webhook=npb.WebhookChannel(
                url="http://127.0.0.1:9/hook", secret="matrix-secret-0123456789"))),
            subscription_id=unique("hook")),
        metadata=w.metadata("sponsor_a"))
    return sub.name


def _jsonl_site() -> bytes:
    sid = unique("imp")
    return (f'{{"site_id": "{sid}", "display_name_en": "Import {sid}", '
            f'"display_name_ko": "병원 {sid}", "country_code": "KR", "region_code": "KR-11", '
            f'"city": "Seoul"}}\n').encode()


async def _call(w: World, method: str, request: Message, caller: str) -> grpc.StatusCode:
    service, name = method.rsplit("/", 1)
    stub: Any = {"SiteRegistry": w.system.registry, "StartupTracker": w.system.tracker,
                 "Notifications": w.system.notifications}[service.rsplit(".", 1)[-1]]
    call = getattr(stub, name)
    try:
        if name == "StreamNotifications":
            # A stream that is allowed stays open: no error before the deadline means OK.
            async for _ in call(request, metadata=w.metadata(caller), timeout=2.0):
                break
        else:
            await call(request, metadata=w.metadata(caller), timeout=30)
    except grpc.aio.AioRpcError as error:
        if name == "StreamNotifications" and error.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return grpc.StatusCode.OK
        return error.code()
    return grpc.StatusCode.OK


Builder = Callable[[World], Awaitable[Message]]


async def _site_update(w: World) -> Message:
    site = await create_site(w.system)
    return rpb.UpdateSiteRequest(site=rpb.Site(name=site.name, city="Busan"),
                                 update_mask=field_mask_pb2.FieldMask(paths=["city"]),
                                 reason="access matrix")


async def _site_suspend(w: World) -> Message:
    return rpb.SuspendSiteRequest(name=(await create_site(w.system)).name, reason="matrix")


async def _site_reactivate(w: World) -> Message:
    site = await create_site(w.system)
    await w.system.registry.SuspendSite(rpb.SuspendSiteRequest(name=site.name, reason="x"),
                                        metadata=w.system.admin)
    return rpb.ReactivateSiteRequest(name=site.name, reason="matrix")


async def _site_close(w: World) -> Message:
    return rpb.CloseSiteRequest(name=(await create_site(w.system)).name, reason="matrix")


async def _create_study(w: World) -> Message:
    sid = unique("new")
    return spb.CreateStudyRequest(study_id=sid, study=spb.Study(
        protocol_number=sid.upper(), title="Matrix", sponsor_org="org-a",
        phase=spb.PHASE_2, country_codes=["KR"]))


async def _add_study_site(w: World) -> Message:
    return spb.AddStudySiteRequest(parent=await _fresh_study(w), site=w.site_x)


async def _record_milestone(w: World) -> Message:
    study = await _fresh_study(w, with_x=True)
    return spb.RecordMilestoneRequest(
        study_site=f"{study}/{w.site_x}", milestone="site-selected", status=spb.DONE,
        actual_date=day("2026-01-05"), reason="access matrix")


async def _deliveries(w: World) -> Message:
    return npb.ListDeliveriesRequest(parent=await _webhook_subscription(w))


async def _record_document(w: World) -> Message:
    study = await _fresh_study(w, with_x=True)
    return spb.RecordDocumentStatusRequest(
        name=f"{study}/{w.site_x}/documents/protocol-signature-page", status=spb.RECEIVED,
        version="1.0", uri="https://tmf.example/doc/1",
        content_hash="sha256:" + "0" * 64, status_date=day("2026-01-05"))


async def _update_study(w: World) -> Message:
    return spb.UpdateStudyRequest(study=spb.Study(name=await _fresh_study(w), title="Renamed"),
                                  update_mask=field_mask_pb2.FieldMask(paths=["title"]))


async def _country_approval(w: World) -> Message:
    return spb.RecordCountryApprovalRequest(
        name=f"{await _fresh_study(w)}/countries/KR",
        approval=spb.CountryApproval(status=spb.IN_PROGRESS,
                                     submitted_date=day("2026-01-05")),
        reason="access matrix")


async def _create_subscription(w: World) -> Message:
    return npb.CreateSubscriptionRequest(
        subscription=npb.Subscription(
            filter=npb.NotificationFilter(studies=[w.study], sites=[w.site_x]),
            channel=npb.Channel(stream=npb.StreamChannel())),
        subscription_id=unique("sub"))


async def _delete_subscription(w: World) -> Message:
    return npb.DeleteSubscriptionRequest(name=await _fresh_subscription(w))


def _fixed(make: Callable[[World], Message]) -> Builder:
    async def build(w: World) -> Message:
        return make(w)
    return build


REQUESTS: dict[str, Builder] = {
    "sitenet.registry.v1.SiteRegistry/CreateSite": _fixed(lambda w: rpb.CreateSiteRequest(
        site_id=(sid := unique("new")), site=rpb.Site(
            display_name_en=f"New {sid}", display_name_ko=f"새 {sid}", country_code="KR",
            region_code="KR-11", city="Seoul"))),
    "sitenet.registry.v1.SiteRegistry/GetSite": _fixed(
        lambda w: rpb.GetSiteRequest(name=w.site_x)),
    "sitenet.registry.v1.SiteRegistry/ListSites": _fixed(
        lambda w: rpb.ListSitesRequest(page_size=5)),
    "sitenet.registry.v1.SiteRegistry/UpdateSite": _site_update,
    "sitenet.registry.v1.SiteRegistry/SuspendSite": _site_suspend,
    "sitenet.registry.v1.SiteRegistry/ReactivateSite": _site_reactivate,
    "sitenet.registry.v1.SiteRegistry/CloseSite": _site_close,
    "sitenet.registry.v1.SiteRegistry/ImportSites": _fixed(lambda w: rpb.ImportSitesRequest(
        content=_jsonl_site(), format=rpb.ImportSitesRequest.JSONL)),
    "sitenet.registry.v1.SiteRegistry/ListSiteAuditEntries": _fixed(
        lambda w: rpb.ListSiteAuditEntriesRequest(parent=w.site_x)),
    "sitenet.startup.v1.StartupTracker/CreateStudy": _create_study,
    "sitenet.startup.v1.StartupTracker/GetStudy": _fixed(
        lambda w: spb.GetStudyRequest(name=w.study)),
    "sitenet.startup.v1.StartupTracker/ListStudies": _fixed(
        lambda w: spb.ListStudiesRequest(page_size=5)),
    "sitenet.startup.v1.StartupTracker/AddStudySite": _add_study_site,
    "sitenet.startup.v1.StartupTracker/GetStudySite": _fixed(
        lambda w: spb.GetStudySiteRequest(name=f"{w.study}/{w.site_x}")),
    "sitenet.startup.v1.StartupTracker/ListStudySites": _fixed(
        lambda w: spb.ListStudySitesRequest(parent=w.study)),
    "sitenet.startup.v1.StartupTracker/RecordMilestone": _record_milestone,
    "sitenet.startup.v1.StartupTracker/UpdateStudy": _update_study,
    "sitenet.startup.v1.StartupTracker/RecordCountryApproval": _country_approval,
    "sitenet.startup.v1.StartupTracker/ListMilestoneHistory": _fixed(
        lambda w: spb.ListMilestoneHistoryRequest(parent=f"{w.study}/{w.site_x}")),
    "sitenet.startup.v1.StartupTracker/ListSiteDocuments": _fixed(
        lambda w: spb.ListSiteDocumentsRequest(parent=f"{w.study}/{w.site_x}")),
    "sitenet.startup.v1.StartupTracker/RecordDocumentStatus": _record_document,
    "sitenet.startup.v1.StartupTracker/GetDocumentSummary": _fixed(
        lambda w: spb.GetDocumentSummaryRequest(name=w.study)),
    "sitenet.notifications.v1.Notifications/ListDeliveries": _deliveries,
    "sitenet.startup.v1.StartupTracker/GetActivationSummary": _fixed(
        lambda w: spb.GetActivationSummaryRequest(name=w.study)),
    "sitenet.notifications.v1.Notifications/CreateSubscription": _create_subscription,
    "sitenet.notifications.v1.Notifications/GetSubscription": _fixed(
        lambda w: npb.GetSubscriptionRequest(name=w.subscription)),
    "sitenet.notifications.v1.Notifications/ListSubscriptions": _fixed(
        lambda w: npb.ListSubscriptionsRequest(page_size=5)),
    "sitenet.notifications.v1.Notifications/DeleteSubscription": _delete_subscription,
    "sitenet.notifications.v1.Notifications/StreamNotifications": _fixed(
        lambda w: npb.StreamNotificationsRequest(filter=npb.NotificationFilter(
            studies=[w.study], sites=[w.site_x]))),
    "sitenet.notifications.v1.Notifications/ListNotifications": _fixed(
        lambda w: npb.ListNotificationsRequest(parent=w.subscription)),
}


@pytest.fixture(scope="module")
async def world(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[World]:
    directory = tmp_path_factory.mktemp("access")
    async with running_system("sqlite", kafka_bootstrap, directory) as system:
        x, y = await create_site(system), await create_site(system)
        study = await create_study(system, unique("s"), sponsor_org="org-a")
        await add_study_site(system, study.name, x.name)
        await add_study_site(system, study.name, y.name)
        w = World(system, x.name, y.name, study.name, "")
        # The notification service learns the study's sponsor from the event stream.
        deadline = time.monotonic() + 30
        while True:
            try:
                w.subscription = await _fresh_subscription(w)
                break
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.PERMISSION_DENIED \
                        or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        yield w


def test_every_rpc_of_every_service_has_a_row_and_a_request() -> None:
    methods = service_methods()
    assert len(methods) >= 26
    missing = [m for m in methods if m not in access.ACCESS]
    assert not missing, f"RPCs without a row in tests/support/access.py: {missing}"
    stale = [m for m in access.ACCESS if m not in methods]
    assert not stale, f"rows for RPCs that do not exist: {stale}"
    no_request = [m for m in methods if m not in REQUESTS]
    assert not no_request, f"RPCs the matrix test has no request for: {no_request}"
    for method, rule in access.ACCESS.items():
        assert len(rule.expect) == len(access.CALLERS), method


def test_the_documented_table_is_the_tested_table() -> None:
    doc = (ROOT / "docs" / "access-control.md").read_text(encoding="utf-8")
    assert doc == access.render(), (
        "docs/access-control.md is stale: "
        ".venv/bin/python -m tests.support.access > docs/access-control.md")


async def test_every_caller_gets_what_the_table_says(world: World) -> None:
    gate = asyncio.Semaphore(8)

    async def one(method: str, caller: str) -> tuple[str, str, grpc.StatusCode]:
        async with gate:
            request = await REQUESTS[method](world)
            return method, caller, await _call(world, method, request, caller)

    results = await asyncio.gather(*(one(m, c) for m in service_methods()
                                     for c in access.CALLERS))
    wrong = [f"{m} as {c}: got {got.name}, table says {access.ACCESS[m].code(c).name}"
             for m, c, got in results if got != access.ACCESS[m].code(c)]
    assert len(results) == len(service_methods()) * len(access.CALLERS)
    assert not wrong, "\n".join(wrong)


async def test_lists_show_each_caller_only_its_own(world: World) -> None:
    """OK on a list is not a licence to see everything: the scoped callers' lists hold
    only what is theirs."""
    s = world.system

    async def studies(caller: str) -> set[str]:
        reply = await s.tracker.ListStudies(spb.ListStudiesRequest(page_size=1000),
                                            metadata=world.metadata(caller))
        return {st.name for st in reply.studies}

    assert world.study in await studies("sponsor_a")
    assert world.study not in await studies("sponsor_b")
    assert world.study in await studies("site_y")
    sites_of_s = await s.tracker.ListStudySites(spb.ListStudySitesRequest(parent=world.study),
                                                metadata=world.metadata("site_y"))
    assert [ss.site for ss in sites_of_s.study_sites] == [world.site_y]
    subs = await s.notifications.ListSubscriptions(npb.ListSubscriptionsRequest(page_size=1000),
                                                   metadata=world.metadata("sponsor_b"))
    assert world.subscription not in {sub.name for sub in subs.subscriptions}
