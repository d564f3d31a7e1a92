"""Every change through the API leaves an audit entry with who did it and why; no RPC can
alter or delete an audit entry.

Each RPC of every service is classified below as a change (with the check that its
audit entry is there), a read, or a change outside the regulated record; an RPC not
classified fails the test, so a new RPC cannot slip past the audit.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf import field_mask_pb2

from sitenet.notifications.v1 import notifications_pb2 as npb
from sitenet.registry.v1 import registry_pb2 as rpb
from sitenet.startup.v1 import startup_pb2 as spb
from tests.support.errors import field_violations
from tests.support.scenario import (
    add_study_site,
    add_study_site_via,
    create_site,
    create_study,
    day,
    unique,
)
from tests.support.system import RunningSystem

SERVICES = [rpb.DESCRIPTOR.services_by_name["SiteRegistry"],
            spb.DESCRIPTOR.services_by_name["StartupTracker"],
            npb.DESCRIPTOR.services_by_name["Notifications"]]
ACTOR = "auditor-check-7"

READS = {"GetSite", "ListSites", "ListSiteAuditEntries", "GetStudy", "ListStudies",
         "GetStudySite", "ListStudySites", "ListMilestoneHistory", "GetActivationSummary",
         "GetSubscription", "ListSubscriptions", "StreamNotifications", "ListNotifications",
         "ListSiteDocuments", "GetDocumentSummary", "ListDeliveries"}
# A caller's own delivery preferences, not a trial record (ICH E6 / Part 11 cover the
# sites, studies and milestones).
OUTSIDE_THE_RECORD = {"CreateSubscription", "DeleteSubscription"}

Check = Callable[[RunningSystem], Awaitable[None]]


def _who(system: RunningSystem) -> list[tuple[str, str]]:
    return system.auth("admin", subject=ACTOR)


async def _site_entries(system: RunningSystem, site: str) -> list[rpb.SiteAuditEntry]:
    reply = await system.registry.ListSiteAuditEntries(
        rpb.ListSiteAuditEntriesRequest(parent=site, page_size=1000), metadata=system.admin)
    return list(reply.audit_entries)


async def _history(system: RunningSystem, parent: str) -> list[spb.MilestoneHistoryEntry]:
    reply = await system.tracker.ListMilestoneHistory(
        spb.ListMilestoneHistoryRequest(parent=parent, page_size=1000), metadata=system.admin)
    return list(reply.entries)


async def _create_site(system: RunningSystem) -> None:
    sid = unique("aud")
    site = await system.registry.CreateSite(rpb.CreateSiteRequest(site_id=sid, site=rpb.Site(
        display_name_en=f"Audit {sid}", display_name_ko="감사", country_code="KR",
        region_code="KR-11", city="Seoul"), reason="selected at feasibility"),
        metadata=_who(system))
    entries = await _site_entries(system, site.name)
    assert [(e.action, e.actor, e.after.name, e.reason) for e in entries] == [
        ("CREATE", ACTOR, site.name, "selected at feasibility")]


async def _update_site(system: RunningSystem) -> None:
    site = await create_site(system)
    await system.registry.UpdateSite(rpb.UpdateSiteRequest(
        site=rpb.Site(name=site.name, city="Busan"),
        update_mask=field_mask_pb2.FieldMask(paths=["city"]), reason="moved"),
        metadata=_who(system))
    last = (await _site_entries(system, site.name))[-1]
    assert (last.action, last.actor, last.reason, list(last.changed_fields),
            last.before.city, last.after.city) == ("UPDATE", ACTOR, "moved", ["city"],
                                                   "Seoul", "Busan")


def _status_change(rpc: str, action: str, suspend_first: bool = False) -> Check:
    async def check(system: RunningSystem) -> None:
        site = await create_site(system)
        if suspend_first:
            await system.registry.SuspendSite(rpb.SuspendSiteRequest(name=site.name,
                                                                     reason="first"),
                                              metadata=system.admin)
        request = getattr(rpb, f"{rpc}Request")(name=site.name, reason=f"why {rpc}")
        await getattr(system.registry, rpc)(request, metadata=_who(system))
        last = (await _site_entries(system, site.name))[-1]
        assert (last.action, last.actor, last.reason) == (action, ACTOR, f"why {rpc}")
    return check


async def _import_sites(system: RunningSystem) -> None:
    sid = unique("imp")
    await system.registry.ImportSites(rpb.ImportSitesRequest(
        content=(f'{{"site_id": "{sid}", "display_name_en": "Imp {sid}", '
                 f'"country_code": "KR", "region_code": "KR-11", "city": "Seoul"}}\n').encode(),
        format=rpb.ImportSitesRequest.JSONL, reason="KR network list, 2026-11"),
        metadata=_who(system))
    entries = await _site_entries(system, f"sites/{sid}")
    assert [(e.action, e.actor, e.reason) for e in entries] == [
        ("IMPORT", ACTOR, "KR network list, 2026-11")]
    without = unique("imp")  # no reason given: the entry still says what happened
    await system.registry.ImportSites(rpb.ImportSitesRequest(
        content=(f'{{"site_id": "{without}", "display_name_en": "Imp {without}", '
                 f'"country_code": "KR", "region_code": "KR-11", "city": "Seoul"}}\n').encode(),
        format=rpb.ImportSitesRequest.JSONL), metadata=_who(system))
    entries = await _site_entries(system, f"sites/{without}")
    assert [(e.action, e.reason) for e in entries] == [("IMPORT", "bulk import")]


async def _record_milestone(system: RunningSystem) -> None:
    site = await create_site(system)
    study = await create_study(system, unique("aud"))
    ss = await add_study_site(system, study.name, site.name)
    await system.tracker.RecordMilestone(spb.RecordMilestoneRequest(
        study_site=ss.name, milestone="site-selected", status=spb.DONE,
        actual_date=day("2026-01-05"), reason="selected at feasibility"),
        metadata=_who(system))
    entries = [e for e in await _history(system, ss.name) if e.milestone == "site-selected"]
    assert [(e.actor, e.reason, json.loads(e.after_json)["status"]) for e in entries] == [
        (ACTOR, "selected at feasibility", "DONE")]


async def _record_document(system: RunningSystem) -> None:
    site = await create_site(system)
    study = await create_study(system, unique("aud"))
    ss = await add_study_site(system, study.name, site.name)
    await system.tracker.RecordDocumentStatus(spb.RecordDocumentStatusRequest(
        name=f"{ss.name}/documents/protocol-signature-page", status=spb.RECEIVED,
        version="1.0", uri="https://tmf.example/doc/1", content_hash="sha256:" + "0" * 64,
        status_date=day("2026-01-05"), reason="signed copy from the PI"),
        metadata=_who(system))
    entries = [e for e in await _history(system, ss.name)
               if e.milestone == "document/protocol-signature-page"]
    assert [(e.actor, e.reason) for e in entries] == [(ACTOR, "signed copy from the PI")]


async def _update_study(system: RunningSystem) -> None:
    study = await create_study(system, unique("aud"))
    await system.tracker.UpdateStudy(spb.UpdateStudyRequest(
        study=spb.Study(name=study.name, title="Renamed"),
        update_mask=field_mask_pb2.FieldMask(paths=["title"]), reason="protocol amendment 2"),
        metadata=_who(system))
    entries = [e for e in await _history(system, study.name) if e.milestone == "study"]
    # The first entry is the study's creation (by the admin of create_study), then the change.
    assert [(e.actor, json.loads(e.after_json)["title"], e.reason) for e in entries] == [
        ("admin", study.title, ""), (ACTOR, "Renamed", "protocol amendment 2")]


async def _country_approval(system: RunningSystem) -> None:
    study = await create_study(system, unique("aud"))
    await system.tracker.RecordCountryApproval(spb.RecordCountryApprovalRequest(
        name=f"{study.name}/countries/KR", approval=spb.CountryApproval(
            status=spb.IN_PROGRESS, submitted_date=day("2026-01-05")),
        reason="IND submitted"), metadata=_who(system))
    entries = await _history(system, study.name)
    assert [(e.milestone, e.actor, e.reason) for e in entries] == [
        ("study", "admin", ""), ("country-approval/KR", ACTOR, "IND submitted")]


async def _create_study(system: RunningSystem) -> None:
    sid = unique("aud")
    await system.tracker.CreateStudy(spb.CreateStudyRequest(study_id=sid, study=spb.Study(
        protocol_number=sid.upper(), title="t", sponsor_org="acme", phase=spb.PHASE_2,
        country_codes=["KR"]), reason="awarded 2026-11"), metadata=_who(system))
    entries = await _history(system, f"studies/{sid}")
    assert [(e.actor, e.reason) for e in entries] == [(ACTOR, "awarded 2026-11")], \
        "a study's creation is not in its history"


async def _add_study_site(system: RunningSystem) -> None:
    site = await create_site(system)
    study = await create_study(system, unique("aud"))
    await add_study_site_via(system.tracker, _who(system), study.name, site.name,
                             reason="PI confirmed interest")
    ss = f"{study.name}/{site.name}"
    entries = await _history(system, ss)
    assert [(e.milestone, e.actor, e.reason) for e in entries] == [
        ("study-site", ACTOR, "PI confirmed interest")]


CHANGES: dict[str, Check] = {
    "CreateSite": _create_site,
    "UpdateSite": _update_site,
    "SuspendSite": _status_change("SuspendSite", "SUSPEND"),
    "ReactivateSite": _status_change("ReactivateSite", "REACTIVATE", suspend_first=True),
    "CloseSite": _status_change("CloseSite", "CLOSE"),
    "ImportSites": _import_sites,
    "RecordMilestone": _record_milestone,
    "RecordDocumentStatus": _record_document,
    "UpdateStudy": _update_study,
    "RecordCountryApproval": _country_approval,
    "CreateStudy": _create_study,
    "AddStudySite": _add_study_site,
}
# Known gaps, found by this test and left to the tracker's owners (their handlers; see
# docs/reliability.md): strict, so the test says so the day they are closed.
GAPS: dict[str, str] = {}


def test_every_rpc_is_classified() -> None:
    methods = {m.name for s in SERVICES for m in s.methods}
    classified = READS | OUTSIDE_THE_RECORD | set(CHANGES)
    assert methods - classified == set(), "classify the new RPCs in test_audit_trail.py"
    assert classified - methods == set()


def test_no_rpc_alters_or_deletes_audit_entries() -> None:
    for service in SERVICES:
        for method in service.methods:
            if "Audit" in method.name or "History" in method.name:
                assert method.name.startswith("List"), f"{service.name}.{method.name}"
            # and no delete or update of anything with an audit trail
            if method.name.startswith(("Delete", "Purge", "Erase")):
                assert method.name == "DeleteSubscription", method.name


@pytest.mark.parametrize("rpc", [pytest.param(
    name, marks=[pytest.mark.xfail(reason=GAPS[name], strict=True)] if name in GAPS else [])
    for name in CHANGES])
async def test_every_change_is_in_the_audit_trail_with_actor_and_reason(
        shared_system: RunningSystem, rpc: str) -> None:
    await CHANGES[rpc](shared_system)


async def test_a_reason_longer_than_the_audit_trail_keeps_is_refused_and_changes_nothing(
        shared_system: RunningSystem) -> None:
    system = shared_system
    study = await create_study(system, unique("aud"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await system.tracker.UpdateStudy(spb.UpdateStudyRequest(
            study=spb.Study(name=study.name, title="Renamed"),
            update_mask=field_mask_pb2.FieldMask(paths=["title"]), reason="x" * 501),
            metadata=_who(system))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reason" in field_violations(caught.value)
    after = await system.tracker.GetStudy(spb.GetStudyRequest(name=study.name),
                                          metadata=system.admin)
    assert (after.title, after.etag) == (study.title, study.etag)
    assert len(await _history(system, study.name)) == 1  # its creation only
