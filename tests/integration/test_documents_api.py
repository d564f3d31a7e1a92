"""Essential documents and the greenlight through gRPC, on SQLite and PostgreSQL, with
"today" pinned (2026-06-30, noon in Seoul): the greenlight arrives with the last approval
and is withdrawn by an expiry; rejection and resubmission; who may do what; bad input of
every kind gets the right status and changes nothing; the sponsor's view."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import grpc
import pytest
from google.type import date_pb2

from services.common import topics
from sitenet.events.v1 import events_pb2
from sitenet.notifications.v1 import notifications_pb2
from sitenet.startup.v1 import startup_pb2
from tests.integration.test_tracker_api import bad_fields, fails, preconditions, snapshot
from tests.support.events import Record, read_topic
from tests.support.scenario import (
    HASH,
    add_study_site,
    complete_documents,
    create_site,
    create_study,
    day,
    receive,
    record,
    review,
)
from tests.support.system import RunningSystem

NOW = dt.datetime(2026, 6, 30, 3, 0, tzinfo=dt.UTC)
BEFORE_DOCUMENTS = [("site-selected", "2026-01-01"), ("cda-executed", "2026-01-05"),
                    ("site-qualification-visit", "2026-01-10"), ("budget-agreed", "2026-01-20"),
                    ("contract-executed", "2026-02-01"), ("irb-submitted", "2026-01-06"),
                    ("irb-approved", "2026-02-01"), ("site-initiation-visit", "2026-02-10")]
EDC = "essential-documents-complete"


JOINED = dt.datetime(2026, 1, 1, 3, 0, tzinfo=dt.UTC)


async def study_site(system: RunningSystem, sponsor: str = "acme", approve_kr: bool = True,
                     **study: Any) -> tuple[startup_pb2.Study, startup_pb2.StudySite]:
    """A KR study-site that joined on 2026-01-01 (its documents expected since then)."""
    system.tracker_app.service.clock = lambda: NOW
    site = await create_site(system, time_zone="Asia/Seoul")
    created = await create_study(system, sponsor_org=sponsor, **study)
    if approve_kr:
        await system.tracker.RecordCountryApproval(startup_pb2.RecordCountryApprovalRequest(
            name=f"{created.name}/countries/KR", approval=startup_pb2.CountryApproval(
                status=startup_pb2.DONE, decision_date=day("2026-01-20"))),
            metadata=system.admin)
    system.tracker_app.service.clock = lambda: JOINED
    added = await add_study_site(system, created.name, site.name)
    system.tracker_app.service.clock = lambda: NOW
    return created, added


async def get(system: RunningSystem, name: str) -> startup_pb2.StudySite:
    return await system.tracker.GetStudySite(startup_pb2.GetStudySiteRequest(name=name),
                                             metadata=system.admin)


def milestone(site: startup_pb2.StudySite, key: str) -> startup_pb2.Milestone:
    return next(m for m in site.milestones if m.milestone == key)


async def documents(system: RunningSystem, name: str) -> startup_pb2.ListSiteDocumentsResponse:
    return await system.tracker.ListSiteDocuments(
        startup_pb2.ListSiteDocumentsRequest(parent=name), metadata=system.admin)


async def test_greenlight_arrives_with_last_approval_and_expiry_withdraws_it(
        shared_system: RunningSystem) -> None:
    system = shared_system
    study, ss = await study_site(system)
    for key, when in BEFORE_DOCUMENTS:
        await record(system, ss.name, key, when)
    listed = await documents(system, ss.name)
    assert listed.template == "kr-essential-documents" and not listed.complete
    by_key = {d.document: d for d in listed.documents}
    assert {"irb-approval-letter", "mfds-ind-approval", "contract-executed", "icf-korean",
            "gcp-certificates", "lab-certification", "delegation-log"} <= set(by_key)
    assert all(d.status == startup_pb2.EXPECTED for d in listed.documents)
    pss = by_key["protocol-signature-page"]
    assert (pss.tmf_artifact_name, pss.tmf_artifact_number) == ("Protocol Signature Page",
                                                                "05.02.02")
    assert by_key["gcp-certificates"].expires and by_key["gcp-certificates"].required
    assert by_key["mfds-ind-approval"].provider == startup_pb2.PROVIDER_SPONSOR

    await complete_documents(system, ss.name, "2026-03-10", but=("gcp-certificates",))
    site = await get(system, ss.name)
    assert [(m.document, m.status) for m in site.missing_documents] == [
        ("gcp-certificates", startup_pb2.EXPECTED)]
    assert milestone(site, EDC).status != startup_pb2.DONE
    error = await fails(record(system, ss.name, "site-activated", "2026-03-20"),
                        grpc.StatusCode.FAILED_PRECONDITION)
    assert preconditions(error) == [("MILESTONE", f"{ss.name}/milestones/{EDC}")]
    error = await fails(system.tracker.RecordMilestone(startup_pb2.RecordMilestoneRequest(
        study_site=ss.name, milestone=EDC, status=startup_pb2.DONE,
        actual_date=day("2026-03-10")), metadata=system.admin),
        grpc.StatusCode.FAILED_PRECONDITION)
    assert preconditions(error) == [("DERIVED_MILESTONE", f"{ss.name}/milestones/{EDC}")]

    await receive(system, ss.name, "gcp-certificates", "2026-03-12", expiry="2026-07-15")
    assert milestone(await get(system, ss.name), EDC).status != startup_pb2.DONE
    await review(system, ss.name, "gcp-certificates", "2026-03-15")  # the last approval
    site = await get(system, ss.name)
    assert milestone(site, EDC).status == startup_pb2.DONE
    assert milestone(site, EDC).actual_date == day("2026-03-15")
    assert not site.missing_documents and not site.greenlight_withdrawn
    assert (await documents(system, ss.name)).complete
    await record(system, ss.name, "site-activated", "2026-03-20")

    check = system.tracker_app.service.check_documents
    assert await check(30, 3650) == 1  # 15 days before the GCP certificate expires
    assert await check(30, 3650) == 0  # each reminder once
    system.tracker_app.service.clock = lambda: dt.datetime(2026, 7, 15, 3, tzinfo=dt.UTC)
    assert await check(30, 3650) == 1  # expired
    site = await get(system, ss.name)
    assert site.greenlight_withdrawn and "gcp-certificates" in site.greenlight_reason
    assert milestone(site, EDC).status == startup_pb2.IN_PROGRESS
    assert [m.document for m in site.missing_documents] == ["gcp-certificates"]
    assert site.status == startup_pb2.ACTIVATED  # activation stands; the flag says why
    flagged = await system.tracker.ListStudySites(startup_pb2.ListStudySitesRequest(
        parent=study.name, filter="greenlight_withdrawn = true"), metadata=system.admin)
    assert [s.name for s in flagged.study_sites] == [ss.name]
    unflagged = await system.tracker.ListStudySites(startup_pb2.ListStudySitesRequest(
        parent=study.name, filter="greenlight_withdrawn = false"), metadata=system.admin)
    assert not unflagged.study_sites

    await receive(system, ss.name, "gcp-certificates", "2026-07-15", version="2.0",
                  expiry="2028-07-15")
    await review(system, ss.name, "gcp-certificates", "2026-07-15")
    site = await get(system, ss.name)
    assert not site.greenlight_withdrawn and milestone(site, EDC).status == startup_pb2.DONE
    # A document approved and found wrong later: rejected, the greenlight goes again.
    await review(system, ss.name, "lab-certification", "2026-07-15",
                 status=startup_pb2.DOCUMENT_REJECTED, reason="certificate of another lab")
    site = await get(system, ss.name)
    assert site.greenlight_withdrawn and "another lab" in site.greenlight_reason
    await receive(system, ss.name, "lab-certification", "2026-07-15", version="2.0")
    await review(system, ss.name, "lab-certification", "2026-07-15")
    assert not (await get(system, ss.name)).greenlight_withdrawn
    history = await system.tracker.ListMilestoneHistory(
        startup_pb2.ListMilestoneHistoryRequest(parent=ss.name, page_size=1000),
        metadata=system.admin)
    gcp = [e for e in history.entries if e.milestone == "document/gcp-certificates"]
    assert len(gcp) == 4 and '"2026-07-15"' in gcp[1].after_json  # nothing erased
    derived = [e for e in history.entries if e.milestone == EDC]
    # Given, withdrawn by the expiry check, given, withdrawn by the late rejection, given.
    assert [e.actor == "system:document-check" for e in derived] == [
        False, True, False, False, False]
    assert ['"DONE"' in e.after_json for e in derived] == [True, False, True, False, True]

    study_id = study.name.removeprefix("studies/")
    study_topic = system.settings.topic(topics.STUDIES.name)

    def done(records: list[Record]) -> bool:
        return sum(r.ce_type.endswith("GreenlightChanged") and r.key == study_id
                   for r in records) >= 5

    records = [r for r in await read_topic(system.settings.bootstrap_servers, study_topic,
                                           done, timeout_s=20) if r.key == study_id]
    greenlights = [events_pb2.GreenlightChanged.FromString(r.value) for r in records
                   if r.ce_type.endswith("GreenlightChanged")]
    assert [(g.granted, list(g.missing_documents)) for g in greenlights] == [
        (True, []), (False, ["gcp-certificates"]), (True, []), (False, ["lab-certification"]),
        (True, [])]
    reminders = [events_pb2.DocumentReminder.FromString(r.value) for r in records
                 if r.ce_type.endswith("DocumentReminder")]
    assert [(r.kind, r.document, r.days) for r in reminders] == [
        ("EXPIRING", "gcp-certificates", 15), ("EXPIRED", "gcp-certificates", 0)]
    statuses = [events_pb2.DocumentStatusRecorded.FromString(r.value) for r in records
                if r.ce_type.endswith("DocumentStatusRecorded")]
    # Each receipt and review, the renewal, the late rejection and the new lab certificate.
    assert len(statuses) == 2 * len(by_key) + 2 + 3
    assert statuses[0].study_site.sponsor_org == "acme"  # routes to the sponsor


async def test_rejection_resubmission_and_who_may_do_what(shared_system: RunningSystem) -> None:
    system = shared_system
    _, ss = await study_site(system)
    site_id = ss.site.removeprefix("sites/")
    own = system.auth("site", sites=[site_id])
    other_site = system.auth("site", sites=["elsewhere"])
    sponsor = system.auth("sponsor", org="acme")
    stranger = system.auth("sponsor", org="other")
    ops = system.auth("ops")
    await receive(system, ss.name, "pi-cv", "2026-06-01", metadata=own, expiry=None)
    before = await snapshot(system, ss.name)
    await fails(review(system, ss.name, "pi-cv", "2026-06-02", metadata=own),
                grpc.StatusCode.PERMISSION_DENIED)  # a site does not approve its own file
    await fails(review(system, ss.name, "pi-cv", "2026-06-02", metadata=ops),
                grpc.StatusCode.PERMISSION_DENIED)
    await fails(review(system, ss.name, "pi-cv", "2026-06-02", metadata=stranger),
                grpc.StatusCode.NOT_FOUND)  # another sponsor's study: not even its existence
    await fails(receive(system, ss.name, "delegation-log", "2026-06-02", metadata=other_site),
                grpc.StatusCode.NOT_FOUND)
    await fails(receive(system, ss.name, "mfds-ind-approval", "2026-06-02", metadata=own),
                grpc.StatusCode.PERMISSION_DENIED)  # the sponsor provides it
    await fails(system.tracker.ListSiteDocuments(startup_pb2.ListSiteDocumentsRequest(
        parent=ss.name), metadata=other_site), grpc.StatusCode.NOT_FOUND)
    assert await snapshot(system, ss.name) == before

    rejected = await review(system, ss.name, "pi-cv", "2026-06-03",
                            status=startup_pb2.DOCUMENT_REJECTED, reason="unsigned",
                            metadata=sponsor)
    assert (rejected.status, rejected.reason) == (startup_pb2.DOCUMENT_REJECTED, "unsigned")
    error = await fails(review(system, ss.name, "pi-cv", "2026-06-04", metadata=sponsor),
                        grpc.StatusCode.FAILED_PRECONDITION)
    assert preconditions(error) == [("DOCUMENT_STATUS", f"{ss.name}/documents/pi-cv")]
    again = await receive(system, ss.name, "pi-cv", "2026-06-05", metadata=own, version="1.1",
                          expiry=None)
    assert (again.status, again.version) == (startup_pb2.RECEIVED, "1.1")
    approved = await review(system, ss.name, "pi-cv", "2026-06-06", metadata=sponsor)
    assert approved.status == startup_pb2.APPROVED and approved.valid
    assert approved.actor and approved.content_hash == HASH
    listed = await system.tracker.ListSiteDocuments(
        startup_pb2.ListSiteDocumentsRequest(parent=ss.name), metadata=own)
    assert next(d for d in listed.documents if d.document == "pi-cv").version == "1.1"
    history = await system.tracker.ListMilestoneHistory(
        startup_pb2.ListMilestoneHistoryRequest(parent=ss.name), metadata=system.admin)
    cv = [e for e in history.entries if e.milestone == "document/pi-cv"]
    assert [e.role for e in cv] == ["site", "sponsor", "site", "sponsor"]
    assert '"REJECTED"' in cv[1].after_json and cv[1].reason == "unsigned"


async def test_bad_document_input_gets_the_right_status_and_changes_nothing(
        shared_system: RunningSystem) -> None:
    system = shared_system
    _, ss = await study_site(system)
    await receive(system, ss.name, "delegation-log", "2026-06-01", expiry=None)
    before = await snapshot(system, ss.name)
    listed_before = (await documents(system, ss.name)).SerializeToString(deterministic=True)
    gcp = f"{ss.name}/documents/gcp-certificates"
    ok = dict(name=gcp, status=startup_pb2.RECEIVED, version="1", uri="https://e/1",
              content_hash=HASH, expiry_date=day("2027-01-01"))

    def req(**changes: Any) -> startup_pb2.RecordDocumentStatusRequest:
        values = {**ok, **changes}
        return startup_pb2.RecordDocumentStatusRequest(
            **{k: v for k, v in values.items() if v is not None})

    invalid: list[tuple[startup_pb2.RecordDocumentStatusRequest, str]] = [
        (req(status=startup_pb2.DOCUMENT_STATUS_UNSPECIFIED), "status"),
        (req(status=99), "status"),
        (req(status=startup_pb2.EXPECTED), "status"),
        (req(uri=""), "uri"),
        (req(uri="no scheme"), "uri"),
        (req(content_hash="md5:abc"), "content_hash"),
        (req(version=""), "version"),
        (req(version="v" * 65), "version"),
        (req(expiry_date=None), "expiry_date"),
        (req(expiry_date=day("2026-06-01")), "expiry_date"),
        (req(expiry_date=date_pb2.Date(
            year=2027, month=13, day=1)), "expiry_date"),
        (req(status_date=day("2026-07-01")), "status_date"),
        (req(name=f"{ss.name}/documents/delegation-log", status=startup_pb2.DOCUMENT_REJECTED,
             version=None, uri=None, content_hash=None, expiry_date=None), "reason"),
        (req(name=f"{ss.name}/documents/delegation-log", status=startup_pb2.APPROVED,
             uri=None, content_hash=None, expiry_date=None), "version"),
        (req(name=f"{ss.name}/documents/delegation-log", status=startup_pb2.DOCUMENT_REJECTED,
             reason="x" * 501, version=None, uri=None, content_hash=None, expiry_date=None),
         "reason"),
        (req(name=f"{ss.name}/gcp-certificates"), "name"),
        (req(name="studies//sites/x/documents/y"), "name"),
    ]
    for request, field in invalid:
        error = await fails(system.tracker.RecordDocumentStatus(request, metadata=system.admin),
                            grpc.StatusCode.INVALID_ARGUMENT)
        assert field in bad_fields(error), (field, bad_fields(error))
    for request in (req(name=f"{ss.name}/documents/no-such-document"),
                    req(name=f"{ss.name.rsplit('/', 1)[0]}/nobody/documents/pi-cv")):
        await fails(system.tracker.RecordDocumentStatus(request, metadata=system.admin),
                    grpc.StatusCode.NOT_FOUND)
    for request in (req(status=startup_pb2.APPROVED, version=None, uri=None,
                        content_hash=None, expiry_date=None),
                    req(name=f"{ss.name}/documents/delegation-log", uri="https://e/2"),
                    req(name=f"{ss.name}/documents/delegation-log", status=startup_pb2.APPROVED,
                        status_date=day("2026-05-01"), version=None, uri=None,
                        content_hash=None, expiry_date=None)):
        await fails(system.tracker.RecordDocumentStatus(request, metadata=system.admin),
                    grpc.StatusCode.FAILED_PRECONDITION)
    await fails(system.tracker.ListSiteDocuments(startup_pb2.ListSiteDocumentsRequest(
        parent="studies/x"), metadata=system.admin), grpc.StatusCode.INVALID_ARGUMENT)
    assert await snapshot(system, ss.name) == before
    assert (await documents(system, ss.name)).SerializeToString(
        deterministic=True) == listed_before


async def test_sponsor_view_and_a_study_that_skips_documents(
        shared_system: RunningSystem) -> None:
    system = shared_system
    study, blocked = await study_site(system, countries=("KR",))
    await fails(system.tracker.CreateStudy(startup_pb2.CreateStudyRequest(study=startup_pb2.Study(
        protocol_number="SKIP-BAD", title="t", sponsor_org="acme", phase=startup_pb2.PHASE_2,
        template=startup_pb2.TemplateChoice(skip_documents=["nope"]))), metadata=system.admin),
        grpc.StatusCode.INVALID_ARGUMENT)
    for key, when in BEFORE_DOCUMENTS:
        await record(system, blocked.name, key, when)
    await complete_documents(system, blocked.name, "2026-03-01", but=("pi-cv",))
    fresh = await create_site(system, time_zone="Asia/Seoul")
    system.tracker_app.service.clock = lambda: JOINED
    done = await add_study_site(system, study.name, fresh.name)
    system.tracker_app.service.clock = lambda: NOW
    await complete_documents(system, done.name, "2026-06-10")
    summary = await system.tracker.GetDocumentSummary(
        startup_pb2.GetDocumentSummaryRequest(name=study.name),
        metadata=system.auth("sponsor", org="acme"))
    assert [(s.study_site, [m.document for m in s.missing]) for s in summary.by_site] == [
        (blocked.name, ["pi-cv"])]
    assert list(summary.blocked_only_by_documents) == [blocked.name]
    by_type = {t.document: t for t in summary.by_type}
    assert (by_type["pi-cv"].outstanding, by_type["pi-cv"].approved) == (1, 1)
    # Expected since 2026-01-01; approved on 2026-03-01 (59 days) and 2026-06-10 (160).
    assert by_type["delegation-log"].median_days_to_approval == pytest.approx(109.5)
    await fails(system.tracker.GetDocumentSummary(startup_pb2.GetDocumentSummaryRequest(
        name=study.name), metadata=system.auth("sponsor", org="other")),
        grpc.StatusCode.NOT_FOUND)

    skipping = await system.tracker.CreateStudy(startup_pb2.CreateStudyRequest(
        study=startup_pb2.Study(protocol_number=f"SKIP-{fresh.name[-8:]}", title="t",
                                sponsor_org="acme", phase=startup_pb2.PHASE_2,
                                template=startup_pb2.TemplateChoice(
                                    skip_documents=["pi-cv", "lab-normal-ranges"]))),
        metadata=system.admin)
    assert list(skipping.template.skip_documents) == ["pi-cv", "lab-normal-ranges"]
    ss = await add_study_site(system, skipping.name, fresh.name)
    keys = [d.document for d in (await documents(system, ss.name)).documents]
    assert "pi-cv" not in keys and "lab-normal-ranges" not in keys and "delegation-log" in keys


async def test_documents_outstanding_too_long_are_reminded_once(
        shared_system: RunningSystem) -> None:
    system = shared_system
    study, ss = await study_site(system)  # documents expected since 2026-01-01
    await receive(system, ss.name, "pi-cv", "2026-06-01", expiry=None)
    await receive(system, ss.name, "delegation-log", "2026-06-01", expiry=None)
    await review(system, ss.name, "delegation-log", "2026-06-20",
                 status=startup_pb2.DOCUMENT_REJECTED, reason="unsigned")
    check = system.tracker_app.service.check_documents
    await check(30, 30)
    await check(30, 30)  # raises nothing new
    await review(system, ss.name, "pi-cv", "2026-06-30")  # a marker after both checks
    study_id = study.name.removeprefix("studies/")
    marker = f"{ss.name}/documents/pi-cv"

    def done(records: list[Record]) -> bool:
        return sum(r.subject == marker and r.key == study_id for r in records) >= 2

    records = [r for r in await read_topic(
        system.settings.bootstrap_servers, system.settings.topic(topics.STUDIES.name), done,
        timeout_s=20) if r.key == study_id]
    assert done(records)
    reminders = [events_pb2.DocumentReminder.FromString(r.value) for r in records
                 if r.ce_type.endswith("DocumentReminder")]
    listed = await documents(system, ss.name)
    waiting = [d.document for d in listed.documents
               if d.document not in ("pi-cv", "delegation-log")]
    # 180 days since 1 January; the rejected log waits only 10 days, the CV is in review.
    assert sorted((r.document, r.kind, r.days) for r in reminders) == sorted(
        (key, "OUTSTANDING", 180) for key in waiting)
    assert all(r.study_site.sponsor_org == "acme" for r in reminders)


async def test_reminders_reach_the_sponsor_and_the_site_in_english_and_korean(
        shared_system: RunningSystem) -> None:
    system = shared_system
    study, ss = await study_site(system)
    site_id = ss.site.removeprefix("sites/")
    await receive(system, ss.name, "gcp-certificates", "2026-06-01", expiry="2026-07-10")
    await review(system, ss.name, "gcp-certificates", "2026-06-02")
    wanted = notifications_pb2.NotificationFilter(
        studies=[study.name], event_types=["sitenet.events.v1.DocumentReminder"])
    readers = {"sponsor": system.auth("sponsor", org="acme"),
               "site": system.auth("site", sites=[site_id]),
               "rival": system.auth("sponsor", org="rival")}
    await system.tracker_app.service.check_documents(30, 3650)  # 10 days before expiry

    async def first(metadata: list[tuple[str, str]], **narrower: list[str]
                    ) -> notifications_pb2.Notification | str:
        where = notifications_pb2.NotificationFilter()
        where.CopyFrom(wanted)
        for field, values in narrower.items():
            getattr(where, field).extend(values)
        stream = system.notifications.StreamNotifications(
            notifications_pb2.StreamNotificationsRequest(filter=where, cursor="0"),
            metadata=metadata)
        try:
            async for notification in stream:
                return notification
        except grpc.aio.AioRpcError as error:
            return f"{error.code()}: {error.details()}"
        finally:
            stream.cancel()
        return "the stream ended"

    async def eventually_first(who: str, **narrower: list[str]
                               ) -> notifications_pb2.Notification | str:
        """The notification service learns the study from Kafka: until then it refuses."""
        for _ in range(100):
            got = await asyncio.wait_for(first(readers[who], **narrower), timeout=15)
            if not (isinstance(got, str) and "PERMISSION_DENIED" in got):
                return got
            await asyncio.sleep(0.1)
        return got

    for who, narrower in (("sponsor", {}), ("site", {"sites": [ss.site]})):
        got = await eventually_first(who, **narrower)
        assert isinstance(got, notifications_pb2.Notification), (who, got)
        assert got.subject == f"{ss.name}/documents/gcp-certificates"
        assert "expires on 2026-07-10, in 10 days" in got.text_en
        assert "GCP 교육 이수증 2026-07-10 만료 예정, 10일 남음" in got.text_ko
    # Another sponsor may not follow acme's study (the service knows it by now).
    refused = await asyncio.wait_for(first(readers["rival"]), timeout=15)
    assert isinstance(refused, str) and "PERMISSION_DENIED" in refused, refused
