"""Small steps tests share: make a site, a study, put one in the other."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import grpc
from google.type import date_pb2

from sitenet.registry.v1 import registry_pb2
from sitenet.startup.v1 import startup_pb2, startup_pb2_grpc
from tests.support.system import RunningSystem


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def day(text: str) -> date_pb2.Date:
    y, m, d = (int(p) for p in text.split("-"))
    return date_pb2.Date(year=y, month=m, day=d)


async def create_site(system: RunningSystem, site_id: str | None = None, *,
                      country: str = "KR", region: str = "KR-11",
                      name_en: str | None = None, **fields: object) -> registry_pb2.Site:
    site_id = site_id or unique("site")
    values: dict[str, object] = {
        "display_name_en": name_en or f"Hospital {site_id}", "display_name_ko": f"병원 {site_id}",
        "country_code": country, "region_code": region, "city": "Seoul", **fields}
    site = registry_pb2.Site(**values)  # type: ignore[arg-type]
    return await system.registry.CreateSite(
        registry_pb2.CreateSiteRequest(site_id=site_id, site=site), metadata=system.admin)


async def create_study(system: RunningSystem, study_id: str | None = None, *,
                       sponsor_org: str = "acme", countries: tuple[str, ...] = ("KR",)
                       ) -> startup_pb2.Study:
    study_id = study_id or unique("study")
    study = startup_pb2.Study(protocol_number=study_id.upper(), title=f"Study {study_id}",
                              sponsor_org=sponsor_org, phase=startup_pb2.PHASE_3,
                              country_codes=list(countries))
    return await system.tracker.CreateStudy(
        startup_pb2.CreateStudyRequest(study_id=study_id, study=study), metadata=system.admin)


async def add_study_site(system: RunningSystem, study: str, site: str,
                         timeout_s: float = 15.0) -> startup_pb2.StudySite:
    """Add the site once the tracker's replica has it (it arrives by Kafka, not by a call)."""
    return await add_study_site_via(system.tracker, system.admin, study, site, timeout_s)


async def add_study_site_via(tracker: startup_pb2_grpc.StartupTrackerStub,
                             auth: list[tuple[str, str]], study: str, site: str,
                             timeout_s: float = 30.0, reason: str = "") -> startup_pb2.StudySite:
    """`add_study_site` through any tracker stub (a service in its own process, say)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await tracker.AddStudySite(
                startup_pb2.AddStudySiteRequest(parent=study, site=site, reason=reason),
                metadata=auth)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


HASH = "sha256:" + "ab" * 32


async def receive(system: RunningSystem, study_site: str, document: str, when: str,
                  metadata: list[tuple[str, str]] | None = None, version: str = "1.0",
                  expiry: str | None = "2099-12-31") -> startup_pb2.SiteDocument:
    request = startup_pb2.RecordDocumentStatusRequest(
        name=f"{study_site}/documents/{document}", status=startup_pb2.RECEIVED,
        version=version, uri=f"https://edms.example/{document}/{version}", content_hash=HASH,
        status_date=day(when))
    if expiry:
        request.expiry_date.CopyFrom(day(expiry))
    return await system.tracker.RecordDocumentStatus(request, metadata=metadata or system.admin)


async def review(system: RunningSystem, study_site: str, document: str, when: str,
                 status: int = startup_pb2.APPROVED, reason: str = "",
                 metadata: list[tuple[str, str]] | None = None) -> startup_pb2.SiteDocument:
    return await system.tracker.RecordDocumentStatus(startup_pb2.RecordDocumentStatusRequest(
        name=f"{study_site}/documents/{document}", status=status, status_date=day(when),
        reason=reason), metadata=metadata or system.admin)


async def complete_documents(system: RunningSystem, study_site: str, when: str,
                             but: tuple[str, ...] = ()) -> list[str]:
    """Receive and approve every required document on `when` (except `but`); the keys."""
    listed = await system.tracker.ListSiteDocuments(
        startup_pb2.ListSiteDocumentsRequest(parent=study_site), metadata=system.admin)
    keys = [d.document for d in listed.documents if d.required and d.document not in but]
    for key in keys:
        await receive(system, study_site, key, when)
        await review(system, study_site, key, when)
    return keys


async def record(system: RunningSystem, study_site: str, milestone: str, actual: str,
                 status: int = startup_pb2.DONE,
                 metadata: list[tuple[str, str]] | None = None, **fields: object
                 ) -> startup_pb2.Milestone:
    if milestone == "essential-documents-complete" and status == startup_pb2.DONE \
            and not fields and metadata is None:
        # Derived since issue 6: scenarios that say "documents complete on D" approve
        # every required document on D, and the milestone follows.
        await complete_documents(system, study_site, actual)
        site = await system.tracker.GetStudySite(
            startup_pb2.GetStudySiteRequest(name=study_site), metadata=system.admin)
        return next(m for m in site.milestones if m.milestone == milestone)
    return await system.tracker.RecordMilestone(
        startup_pb2.RecordMilestoneRequest(study_site=study_site, milestone=milestone,
                                           status=status, actual_date=day(actual),
                                           **fields),  # type: ignore[arg-type]
        metadata=metadata or system.admin)


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0,
                     interval_s: float = 0.05) -> None:
    """Wait until `check()` is true (state that arrives through Kafka), or fail."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval_s)
    raise AssertionError(f"not true after {timeout_s}s: {check}")
