"""`sitenet demo`: a multi-regional oncology study played across the Korean network and
Japan through the real APIs of a running system (`make run` in another terminal).

It reads the sample Korean network from services/site_registry/sample_data/kr_sites.jsonl
when present (one JSON object a line: "site_id" plus proto3-JSON fields of
sitenet.registry.v1.Site), else uses a few real Korean hospitals built in here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import grpc
import typer
from google.protobuf import json_format
from google.type import date_pb2

from services.cli.client import bearer, channel, reporting_errors
from services.cli.documents import print_checklist, print_document_summary
from services.cli.startup import console, print_study_sites, print_summary
from services.common.config import ServiceName, Settings
from sitenet.registry.v1 import registry_pb2, registry_pb2_grpc
from sitenet.startup.v1 import startup_pb2, startup_pb2_grpc

SAMPLE = Path(__file__).resolve().parents[1] / "site_registry" / "sample_data" / "kr_sites.jsonl"
MAX_KR_SITES = 8

BUILT_IN: list[dict[str, Any]] = [
    {"site_id": "snuh", "displayNameEn": "Seoul National University Hospital",
     "displayNameKo": "서울대학교병원", "institution": "Seoul National University Hospital",
     "countryCode": "KR", "regionCode": "KR-11", "city": "Seoul",
     "therapeuticAreas": ["oncology"]},
    {"site_id": "amc", "displayNameEn": "Asan Medical Center", "displayNameKo": "서울아산병원",
     "institution": "Asan Medical Center", "countryCode": "KR", "regionCode": "KR-11",
     "city": "Seoul", "therapeuticAreas": ["oncology"]},
    {"site_id": "pnuh", "displayNameEn": "Pusan National University Hospital",
     "displayNameKo": "부산대학교병원", "institution": "Pusan National University Hospital",
     "countryCode": "KR", "regionCode": "KR-26", "city": "Busan",
     "therapeuticAreas": ["oncology"]},
    {"site_id": "cnuh", "displayNameEn": "Chonnam National University Hwasun Hospital",
     "displayNameKo": "화순전남대학교병원",
     "institution": "Chonnam National University Hwasun Hospital", "countryCode": "KR",
     "regionCode": "KR-46", "city": "Hwasun", "therapeuticAreas": ["oncology"]},
]
OTHER_COUNTRIES: list[dict[str, Any]] = [
    {"site_id": "utokyo", "displayNameEn": "The University of Tokyo Hospital",
     "displayNameKo": "도쿄대학병원", "institution": "The University of Tokyo Hospital",
     "countryCode": "JP", "regionCode": "JP-13", "city": "Tokyo",
     "therapeuticAreas": ["oncology"]},
    {"site_id": "ncc-east", "displayNameEn": "National Cancer Center Hospital East",
     "displayNameKo": "일본 국립암센터 동병원",
     "institution": "National Cancer Center Hospital East", "countryCode": "JP",
     "regionCode": "JP-12", "city": "Kashiwa", "therapeuticAreas": ["oncology"]},
]

# Days after selection each milestone happened, per site profile. Essential documents
# complete is not recorded: the documents are (received, then approved by the sponsor),
# and the greenlight follows from them; the third profile has its Korean consent form
# rejected, so its greenlight waits. The fast profile is the
# Korean parallel path: IRB review alongside budget and contract, activation in about two
# months; the others show a rejected IRB, a slow contract, a late starter.
PROFILES: list[list[tuple[str, int, str]]] = [
    [("cda-executed", 4, "DONE"), ("irb-submitted", 7, "DONE"),
     ("site-qualification-visit", 10, "DONE"), ("budget-agreed", 21, "DONE"),
     ("irb-approved", 30, "DONE"), ("contract-executed", 35, "DONE"),
     ("essential-documents-complete", 44, "DONE"), ("site-initiation-visit", 52, "DONE"),
     ("site-activated", 58, "DONE"), ("first-patient-in", 74, "DONE")],
    [("cda-executed", 10, "DONE"), ("site-qualification-visit", 20, "DONE"),
     ("irb-submitted", 25, "DONE"), ("budget-agreed", 42, "DONE"),
     ("irb-approved", 55, "DONE"), ("contract-executed", 66, "DONE"),
     ("essential-documents-complete", 75, "DONE"), ("site-initiation-visit", 84, "DONE"),
     ("site-activated", 92, "DONE")],
    [("cda-executed", 6, "DONE"), ("irb-submitted", 12, "DONE"),
     ("site-qualification-visit", 15, "DONE"), ("budget-agreed", 30, "DONE"),
     ("irb-approved", 40, "REJECTED"), ("irb-submitted", 48, "DONE"),
     ("contract-executed", 52, "DONE"), ("irb-approved", 70, "APPROVED_WITH_CONDITIONS"),
     ("essential-documents-complete", 80, "REJECTED")],
    [("cda-executed", 20, "DONE"), ("site-qualification-visit", 45, "DONE"),
     ("irb-submitted", 50, "DONE")],
]


def _date(day: dt.date) -> date_pb2.Date:
    return date_pb2.Date(year=day.year, month=day.month, day=day.day)


def load_sites() -> list[dict[str, Any]]:
    korean = BUILT_IN
    if SAMPLE.exists():
        rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines()
                if line.strip()]
        korean = [r for r in rows if r.get("countryCode", r.get("country_code")) == "KR"]
        korean = korean[:MAX_KR_SITES] or BUILT_IN
    return [*korean, *OTHER_COUNTRIES]


def demo(token: Annotated[str | None, typer.Option(help="Admin bearer token")] = None) -> None:
    """Play a multi-regional study across the Korean network and Japan (needs `make run`)."""
    settings = Settings()
    auth = bearer(settings, token)
    started = time.monotonic()
    sites = load_sites()
    with reporting_errors(), channel(settings, ServiceName.SITE_REGISTRY) as reg_ch, \
            channel(settings, ServiceName.STARTUP_TRACKER) as trk_ch:
        registry = registry_pb2_grpc.SiteRegistryStub(reg_ch)
        tracker = startup_pb2_grpc.StartupTrackerStub(trk_ch)
        console.print(f"[bold]1. The registry[/bold]: {len(sites)} sites "
                      f"({'sample network file' if SAMPLE.exists() else 'built-in list'})")
        for row in sites:
            fields = {k: v for k, v in row.items() if k != "site_id"}
            site = json_format.ParseDict(fields, registry_pb2.Site(), ignore_unknown_fields=True)
            site.ClearField("name")
            try:
                registry.CreateSite(registry_pb2.CreateSiteRequest(
                    site_id=row["site_id"], site=site), metadata=auth)
                console.print(f"   registered sites/{row['site_id']}")
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise
                console.print(f"   sites/{row['site_id']} already registered")

        suffix = uuid.uuid4().hex[:6]
        countries = sorted({r.get("countryCode", "KR") for r in sites})
        study = tracker.CreateStudy(startup_pb2.CreateStudyRequest(
            study_id=f"demo-onc-{suffix}", study=startup_pb2.Study(
                protocol_number=f"DEMO-ONC-301-{suffix.upper()}",
                title="A phase 3 study of drug X versus standard of care in advanced gastric "
                      "cancer", sponsor_org="demo-pharma", phase=startup_pb2.PHASE_3,
                therapeutic_area="oncology", country_codes=countries,
                target_active_sites=len(sites))), metadata=auth)
        console.print(f"[bold]2. The study[/bold] {study.name} ({study.protocol_number}) "
                      f"in {', '.join(countries)}")

        today = dt.datetime.now(ZoneInfo("Asia/Seoul")).date()
        base = today - dt.timedelta(days=150)
        names = []
        for row in sites:
            names.append(_add(tracker, auth, study.name, row["site_id"]))
        console.print(f"   {len(names)} sites added (the tracker learns sites from Kafka)")

        for code, offset, reference in (("KR", 38, "MFDS IND 2026-0301"),
                                        ("JP", 45, "PMDA 2026-0417")):
            if code in countries:
                approval = tracker.RecordCountryApproval(startup_pb2.RecordCountryApprovalRequest(
                    name=f"{study.name}/countries/{code}", approval=startup_pb2.CountryApproval(
                        status=startup_pb2.DONE, submitted_date=_date(base),
                        decision_date=_date(base + dt.timedelta(days=offset)),
                        reference=reference)), metadata=auth)
                console.print(f"[bold]3. Regulatory approval[/bold] {code}: {approval.authority} "
                              f"on {base + dt.timedelta(days=offset)}")

        console.print("[bold]4. Sites record their milestones[/bold]")
        count = 0
        for i, name in enumerate(names):
            late_starter = i == len(names) - 1
            selected = today - dt.timedelta(days=20) if late_starter else \
                base + dt.timedelta(days=3 * i)
            profile = [("cda-executed", 9, "DONE")] if late_starter else \
                PROFILES[i % len(PROFILES)]
            steps = [("site-selected", 0, "DONE"), *profile]
            for key, days, status in steps:
                on = selected + dt.timedelta(days=days)
                if key == "essential-documents-complete":
                    count += _documents(tracker, auth, name, on, today,
                                        reject="icf-korean" if status == "REJECTED" else "",
                                        expiring_soon=i == 0)
                    continue
                tracker.RecordMilestone(startup_pb2.RecordMilestoneRequest(
                    study_site=name, milestone=key,
                    status=startup_pb2.MilestoneStatus.Value(status), actual_date=_date(on),
                    note="rejected: consent form wording" if status == "REJECTED" else ""),
                    metadata=auth)
                count += 1
            if not any(k == "site-activated" for k, _, _ in profile):
                # The first plan becomes the baseline; re-planning moves only the plan, so
                # the slip stays visible. The slow site has not re-planned: it is overdue.
                plans = [selected + dt.timedelta(days=60)]
                if i % len(PROFILES) != 3:
                    plans.append(max(today + dt.timedelta(days=10 + 15 * (i % 4)), plans[0]))
                for plan in plans:
                    tracker.RecordMilestone(startup_pb2.RecordMilestoneRequest(
                        study_site=name, milestone="site-activated", status=startup_pb2.PLANNED,
                        planned_date=_date(plan)), metadata=auth)
                    count += 1
        console.print(f"   {count} milestones and document statuses recorded")

        rows = list(tracker.ListStudySites(startup_pb2.ListStudySitesRequest(
            parent=study.name, page_size=1000), metadata=auth).study_sites)
        console.print("[bold]5. Where every site stands[/bold]")
        print_study_sites(rows)
        summary = tracker.GetActivationSummary(startup_pb2.GetActivationSummaryRequest(
            name=study.name), metadata=auth)
        console.print("[bold]6. The sponsor's summary[/bold]")
        print_summary(summary)
        waiting = names[2 % len(names)]
        console.print(f"[bold]7. Essential documents[/bold] of {waiting}: the greenlight "
                      "waits for the consent form the sponsor rejected")
        print_checklist(tracker.ListSiteDocuments(startup_pb2.ListSiteDocumentsRequest(
            parent=waiting), metadata=auth), waiting)
        print_document_summary(tracker.GetDocumentSummary(startup_pb2.GetDocumentSummaryRequest(
            name=study.name), metadata=auth))
    console.print(f"Done in {time.monotonic() - started:.1f} s. Try: sitenet study-sites list "
                  f"{study.name.removeprefix('studies/')} --filter 'overdue = true'")


def _add(tracker: startup_pb2_grpc.StartupTrackerStub, auth: list[tuple[str, str]],
         study: str, site_id: str, timeout_s: float = 30.0) -> str:
    """Add a site once the tracker's replica has it (it arrives by Kafka, not by a call)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return str(tracker.AddStudySite(startup_pb2.AddStudySiteRequest(
                parent=study, site=f"sites/{site_id}"), metadata=auth).name)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _documents(tracker: startup_pb2_grpc.StartupTrackerStub, auth: list[tuple[str, str]],
               study_site: str, on: dt.date, today: dt.date, reject: str = "",
               expiring_soon: bool = False) -> int:
    """Receive every required document five days before `on` and approve it on `on`
    (reject `reject` instead); the greenlight follows. Returns the statuses recorded."""
    listed = tracker.ListSiteDocuments(startup_pb2.ListSiteDocumentsRequest(parent=study_site),
                                       metadata=auth)
    count = 0
    for d in listed.documents:
        if not d.required:
            continue
        expiry = None
        if d.expires:  # one site's GCP certificates lapse soon: a reminder is due
            soon = expiring_soon and d.document == "gcp-certificates"
            expiry = today + dt.timedelta(days=20) if soon else on + dt.timedelta(days=730)
        request = startup_pb2.RecordDocumentStatusRequest(
            name=d.name, status=startup_pb2.RECEIVED, version="1.0",
            uri=f"https://edms.demo-pharma.example/{d.name}/1.0",
            content_hash="sha256:" + hashlib.sha256(d.name.encode()).hexdigest(),
            status_date=_date(on - dt.timedelta(days=5)))
        if expiry is not None:
            request.expiry_date.CopyFrom(_date(expiry))
        tracker.RecordDocumentStatus(request, metadata=auth)
        rejected = d.document == reject
        tracker.RecordDocumentStatus(startup_pb2.RecordDocumentStatusRequest(
            name=d.name, status=startup_pb2.DOCUMENT_REJECTED if rejected else startup_pb2.APPROVED,
            reason="consent form wording differs from the IRB-approved version" if rejected
            else "", status_date=_date(on)), metadata=auth)
        count += 2
    return count
