"""The tracker's rules through gRPC, on SQLite and PostgreSQL: each rule holds, and bad
input of every kind gets the right status and changes nothing."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import field_mask_pb2

from sitenet.startup.v1 import startup_pb2
from tests.support.errors import fails, field_violations, precondition_violations
from tests.support.scenario import add_study_site, create_site, create_study, day, record, unique
from tests.support.system import RunningSystem


def preconditions(error: grpc.aio.AioRpcError) -> list[tuple[str, str]]:
    return precondition_violations(error)


def bad_fields(error: grpc.aio.AioRpcError) -> set[str]:
    return set(field_violations(error))

SEQUENCE = [("site-selected", "2026-01-01"), ("cda-executed", "2026-01-05"),
            ("site-qualification-visit", "2026-01-10"), ("budget-agreed", "2026-01-20"),
            ("contract-executed", "2026-02-01"), ("irb-submitted", "2026-01-06"),
            ("irb-approved", "2026-02-01"), ("essential-documents-complete", "2026-02-05"),
            ("site-initiation-visit", "2026-02-10")]








async def snapshot(system: RunningSystem, name: str) -> tuple[bytes, int]:
    """A study-site's state and audit length: what a refused call must not change."""
    site = await system.tracker.GetStudySite(startup_pb2.GetStudySiteRequest(name=name),
                                             metadata=system.admin)
    history = await system.tracker.ListMilestoneHistory(
        startup_pb2.ListMilestoneHistoryRequest(parent=name, page_size=1000),
        metadata=system.admin)
    site.ClearField("update_time")
    return site.SerializeToString(deterministic=True), len(history.entries)


async def study_site(system: RunningSystem, sponsor: str = "acme",
                     countries: tuple[str, ...] = ("KR",), country: str = "KR",
                     region: str = "KR-11") -> tuple[startup_pb2.Study, startup_pb2.StudySite]:
    site = await create_site(system, country=country, region=region)
    study = await create_study(system, sponsor_org=sponsor, countries=countries)
    return study, await add_study_site(system, study.name, site.name)


async def test_create_study_refuses_bad_input_and_creates_nothing(
        shared_system: RunningSystem) -> None:
    system = shared_system
    protocol = unique("P").upper()
    base = dict(protocol_number=protocol, title="A study", sponsor_org="acme",
                phase=startup_pb2.PHASE_2, country_codes=["KR"])
    cases: list[tuple[dict[str, Any], str, dict[str, Any]]] = [
        ({"title": ""}, "", {}),
        ({"phase": startup_pb2.PHASE_UNSPECIFIED}, "", {}),
        ({"phase": 42}, "", {}),
        ({"country_codes": ["XX"]}, "", {}),
        ({"sponsor_org": "Not An Org!"}, "", {}),
        ({"target_active_sites": -1}, "", {}),
        ({}, "Bad_Id", {}),
        ({}, "", {"template": startup_pb2.TemplateChoice(skip_milestones=["nope"])}),
        ({}, "", {"template": startup_pb2.TemplateChoice(target_days={"irb-approved": -5})}),
        ({}, "", {"template": startup_pb2.TemplateChoice(extra_milestones=[
            startup_pb2.MilestoneDefinition(milestone="x-ready", display_name="X")])}),
    ]
    for fields, study_id, more in cases:
        study = startup_pb2.Study(**{**base, **fields, **more})
        await fails(system.tracker.CreateStudy(
            startup_pb2.CreateStudyRequest(study=study, study_id=study_id),
            metadata=system.admin), grpc.StatusCode.INVALID_ARGUMENT)
    listed = await system.tracker.ListStudies(
        startup_pb2.ListStudiesRequest(filter=f'protocol_number = "{protocol}"'),
        metadata=system.admin)
    assert list(listed.studies) == []

    created = await system.tracker.CreateStudy(startup_pb2.CreateStudyRequest(
        study=startup_pb2.Study(**base)), metadata=system.admin)  # type: ignore[arg-type]
    assert created.etag == '"1"'
    await fails(system.tracker.CreateStudy(startup_pb2.CreateStudyRequest(
        study=startup_pb2.Study(**base)), metadata=system.admin),  # type: ignore[arg-type]
        grpc.StatusCode.ALREADY_EXISTS)
    # The protocol number is unique per sponsor, not globally.
    await system.tracker.CreateStudy(startup_pb2.CreateStudyRequest(study=startup_pb2.Study(
        **{**base, "sponsor_org": "other"})), metadata=system.admin)  # type: ignore[arg-type]
    # A sponsor creates only for itself.
    await fails(system.tracker.CreateStudy(startup_pb2.CreateStudyRequest(
        study=startup_pb2.Study(**{**base, "protocol_number": unique("Q")})),
        metadata=system.auth("sponsor", org="rival")), grpc.StatusCode.PERMISSION_DENIED)
    await fails(system.tracker.CreateStudy(startup_pb2.CreateStudyRequest(
        study=startup_pb2.Study(**{**base, "protocol_number": unique("Q")})),
        metadata=system.auth("ops")), grpc.StatusCode.PERMISSION_DENIED)


async def test_update_study_with_mask_and_etag(shared_system: RunningSystem) -> None:
    system = shared_system
    study = await create_study(system, sponsor_org="acme", countries=("KR", "JP"))
    change = startup_pb2.Study(name=study.name, title="Renamed", target_active_sites=12,
                               target_activation_date=day("2027-03-31"), etag=study.etag)
    mask = field_mask_pb2.FieldMask(paths=["title", "target_active_sites",
                                           "target_activation_date"])
    sponsor = system.auth("sponsor", org="acme")
    updated = await system.tracker.UpdateStudy(
        startup_pb2.UpdateStudyRequest(study=change, update_mask=mask), metadata=sponsor)
    assert (updated.title, updated.target_active_sites, updated.etag) == ("Renamed", 12, '"2"')
    assert updated.target_activation_date == day("2027-03-31")
    assert updated.protocol_number == study.protocol_number  # not in the mask: kept

    stale = startup_pb2.Study(name=study.name, title="Stale", etag=study.etag)
    refusals = [
        (startup_pb2.UpdateStudyRequest(study=stale, update_mask=field_mask_pb2.FieldMask(
            paths=["title"])), sponsor, grpc.StatusCode.ABORTED),
        (startup_pb2.UpdateStudyRequest(study=change, update_mask=field_mask_pb2.FieldMask(
            paths=["sponsor_org"])), sponsor, grpc.StatusCode.INVALID_ARGUMENT),
        (startup_pb2.UpdateStudyRequest(study=change), sponsor,
         grpc.StatusCode.INVALID_ARGUMENT),
        (startup_pb2.UpdateStudyRequest(study=startup_pb2.Study(name=study.name, title=""),
                                        update_mask=field_mask_pb2.FieldMask(paths=["title"])),
         sponsor, grpc.StatusCode.INVALID_ARGUMENT),
        (startup_pb2.UpdateStudyRequest(study=startup_pb2.Study(name=study.name),
                                        update_mask=field_mask_pb2.FieldMask(paths=["phase"])),
         sponsor, grpc.StatusCode.INVALID_ARGUMENT),
        (startup_pb2.UpdateStudyRequest(study=startup_pb2.Study(name="nope/x"),
                                        update_mask=mask), sponsor,
         grpc.StatusCode.INVALID_ARGUMENT),
        (startup_pb2.UpdateStudyRequest(study=change, update_mask=mask),
         system.auth("sponsor", org="rival"), grpc.StatusCode.NOT_FOUND),
        (startup_pb2.UpdateStudyRequest(study=change, update_mask=mask),
         system.auth("ops"), grpc.StatusCode.PERMISSION_DENIED),
    ]
    for request, metadata, code in refusals:
        await fails(system.tracker.UpdateStudy(request, metadata=metadata), code)
    after = await system.tracker.GetStudy(startup_pb2.GetStudyRequest(name=study.name),
                                          metadata=system.admin)
    assert (after.title, after.etag) == ("Renamed", '"2"')
    audit = await system.tracker.ListMilestoneHistory(startup_pb2.ListMilestoneHistoryRequest(
        parent=study.name), metadata=sponsor)
    # Its creation, then the one update: refusals left no entry.
    assert [e.milestone for e in audit.entries] == ["study", "study"]
    assert audit.entries[0].before_json == "{}"
    assert '"Renamed"' in audit.entries[1].after_json
    assert f'"{study.title}"' in audit.entries[1].before_json


async def test_list_studies_scoping_paging_and_filters(shared_system: RunningSystem) -> None:
    system = shared_system
    org = unique("org")
    names = sorted([(await create_study(system, sponsor_org=org)).name for _ in range(3)])
    await create_study(system, sponsor_org=unique("org"))
    sponsor = system.auth("sponsor", org=org)
    seen, token = [], ""
    while True:
        page = await system.tracker.ListStudies(
            startup_pb2.ListStudiesRequest(page_size=2, page_token=token), metadata=sponsor)
        seen += [s.name for s in page.studies]
        token = page.next_page_token
        if not token:
            break
    assert seen == names  # its own, every one, once
    ops = await system.tracker.ListStudies(startup_pb2.ListStudiesRequest(
        filter=f'sponsor_org = "{org}"'), metadata=system.auth("ops"))
    assert sorted(s.name for s in ops.studies) == names
    for request in (startup_pb2.ListStudiesRequest(page_size=-1),
                    startup_pb2.ListStudiesRequest(page_token="garbage"),
                    startup_pb2.ListStudiesRequest(filter="nope = 1"),
                    startup_pb2.ListStudiesRequest(filter="(phase = PHASE_3")):
        await fails(system.tracker.ListStudies(request, metadata=sponsor),
                    grpc.StatusCode.INVALID_ARGUMENT)


async def test_milestone_rules_refuse_and_change_nothing(shared_system: RunningSystem) -> None:
    system = shared_system
    _, ss = await study_site(system)
    name = ss.name
    before = await snapshot(system, name)

    error = await fails(record(system, name, "irb-approved", "2026-01-10"),
                        grpc.StatusCode.FAILED_PRECONDITION)
    assert preconditions(error) == [("MILESTONE", f"{name}/milestones/irb-submitted")]
    invalid = [
        ("not-a-milestone", "2026-01-01", startup_pb2.DONE, {}),
        ("site-selected", "2099-01-01", startup_pb2.DONE, {}),  # in the future
        ("site-selected", "2026-02-30", startup_pb2.DONE, {}),  # not a date
        ("cda-executed", "2026-01-01", startup_pb2.APPROVED_WITH_CONDITIONS, {}),
        ("site-selected", "2026-01-01", startup_pb2.MILESTONE_STATUS_UNSPECIFIED, {}),
        ("site-selected", "2026-01-01", 99, {}),
        ("site-selected", "2026-01-01", startup_pb2.NOT_APPLICABLE, {}),
        ("site-selected", "2026-01-01", startup_pb2.DONE, {"note": "x" * 2001}),
        ("", "2026-01-01", startup_pb2.DONE, {}),
    ]
    for key, when, status, more in invalid:
        await fails(record(system, name, key, when, status=status, **more),
                    grpc.StatusCode.INVALID_ARGUMENT)
    await fails(system.tracker.RecordMilestone(startup_pb2.RecordMilestoneRequest(
        study_site=name, milestone="site-selected", status=startup_pb2.DONE),
        metadata=system.admin), grpc.StatusCode.INVALID_ARGUMENT)  # DONE without a date
    await fails(record(system, "studies/x", "site-selected", "2026-01-01"),
                grpc.StatusCode.INVALID_ARGUMENT)
    await fails(record(system, "studies/nope/sites/nope", "site-selected", "2026-01-01"),
                grpc.StatusCode.NOT_FOUND)
    assert await snapshot(system, name) == before

    await record(system, name, "site-selected", "2026-01-10")
    error = await fails(record(system, name, "cda-executed", "2026-01-09"),
                        grpc.StatusCode.FAILED_PRECONDITION)
    assert preconditions(error) == [("MILESTONE_DATE", f"{name}/milestones/site-selected")]
    await record(system, name, "cda-executed", "2026-01-12")
    middle = await snapshot(system, name)
    error = await fails(record(system, name, "site-selected", "2026-01-11"),
                        grpc.StatusCode.INVALID_ARGUMENT)  # a correction needs a reason
    assert bad_fields(error) == {"reason"}
    error = await fails(record(system, name, "site-selected", "2026-01-13", reason="typo"),
                        grpc.StatusCode.FAILED_PRECONDITION)
    assert preconditions(error)[0][0] == "DEPENDENT_MILESTONE_DATE"
    assert await snapshot(system, name) == middle

    corrected = await record(system, name, "site-selected", "2026-01-09",
                             reason="selection letter was dated 9 January")
    assert corrected.actual_date == day("2026-01-09")
    history = await system.tracker.ListMilestoneHistory(
        startup_pb2.ListMilestoneHistoryRequest(parent=name), metadata=system.admin)
    entries = [(e.milestone, e.reason) for e in history.entries]
    assert entries == [("study-site", ""), ("site-selected", ""), ("cda-executed", ""),
                       ("site-selected", "selection letter was dated 9 January")]
    first, last = history.entries[1], history.entries[-1]
    assert '"2026-01-10"' in first.after_json and '"2026-01-10"' in last.before_json
    assert last.actor and last.role == "admin" and last.record_time.seconds > 0
    page = await system.tracker.ListMilestoneHistory(
        startup_pb2.ListMilestoneHistoryRequest(parent=name, page_size=2), metadata=system.admin)
    rest = await system.tracker.ListMilestoneHistory(
        startup_pb2.ListMilestoneHistoryRequest(parent=name, page_token=page.next_page_token),
        metadata=system.admin)
    assert [e.entry_id for e in (*page.entries, *rest.entries)] == \
        [e.entry_id for e in history.entries]


async def test_replanning_keeps_the_baseline_and_shows_slippage(
        shared_system: RunningSystem) -> None:
    system = shared_system
    _, ss = await study_site(system)
    for planned in ("2026-02-01", "2026-02-20"):
        await system.tracker.RecordMilestone(startup_pb2.RecordMilestoneRequest(
            study_site=ss.name, milestone="site-selected", status=startup_pb2.PLANNED,
            planned_date=day(planned)), metadata=system.admin)
    done = await record(system, ss.name, "site-selected", "2026-02-25")
    assert done.baseline_date == day("2026-02-01")
    assert done.planned_date == day("2026-02-20")
    assert (done.planned_slip_days, done.actual_slip_days) == (19, 24)


async def test_irb_rejection_then_resubmission(shared_system: RunningSystem) -> None:
    system = shared_system
    _, ss = await study_site(system)
    for key, when in SEQUENCE[:2]:
        await record(system, ss.name, key, when)
    await record(system, ss.name, "irb-submitted", "2026-01-10")
    rejected = await record(system, ss.name, "irb-approved", "2026-02-01",
                            status=startup_pb2.REJECTED, note="consent form")
    assert rejected.status == startup_pb2.REJECTED
    site = await system.tracker.GetStudySite(startup_pb2.GetStudySiteRequest(name=ss.name),
                                             metadata=system.admin)
    assert site.current_milestone == "irb-submitted"
    await record(system, ss.name, "irb-submitted", "2026-02-05")  # resubmission, no reason
    approved = await record(system, ss.name, "irb-approved", "2026-02-20",
                            status=startup_pb2.APPROVED_WITH_CONDITIONS)
    assert approved.status == startup_pb2.APPROVED_WITH_CONDITIONS
    history = await system.tracker.ListMilestoneHistory(
        startup_pb2.ListMilestoneHistoryRequest(parent=ss.name), metadata=system.admin)
    assert [e.milestone for e in history.entries][-4:] == [
        "irb-submitted", "irb-approved", "irb-submitted", "irb-approved"]
    assert '"REJECTED"' in history.entries[-1].before_json  # the rejected round is kept


async def test_country_approval_gates_activation(shared_system: RunningSystem) -> None:
    system = shared_system
    study, ss = await study_site(system, countries=("KR", "JP"))
    for key, when in SEQUENCE:
        await record(system, ss.name, key, when)
    error = await fails(record(system, ss.name, "site-activated", "2026-03-01"),
                        grpc.StatusCode.FAILED_PRECONDITION)
    assert preconditions(error) == [("COUNTRY_APPROVAL", f"{study.name}/countries/KR")]

    def approval(**fields: Any) -> startup_pb2.CountryApproval:
        return startup_pb2.CountryApproval(**fields)

    kr = f"{study.name}/countries/KR"
    invalid = [
        (f"{study.name}/countries/US", approval(status=startup_pb2.DONE,
                                                decision_date=day("2026-02-01"))),
        (f"{study.name}/countries/KOR", approval(status=startup_pb2.DONE,
                                                 decision_date=day("2026-02-01"))),
        (kr, approval(status=startup_pb2.DONE)),
        (kr, approval(status=startup_pb2.DONE, decision_date=day("2099-01-01"))),
        (kr, approval(status=startup_pb2.IN_PROGRESS, decision_date=day("2026-01-01"))),
        (kr, approval(status=startup_pb2.DONE, submitted_date=day("2026-02-10"),
                      decision_date=day("2026-02-01"))),
        (kr, approval(status=startup_pb2.NOT_APPLICABLE)),
        (kr, approval()),
    ]
    for name, body in invalid:
        await fails(system.tracker.RecordCountryApproval(startup_pb2.RecordCountryApprovalRequest(
            name=name, approval=body), metadata=system.admin), grpc.StatusCode.INVALID_ARGUMENT)
    await fails(system.tracker.RecordCountryApproval(startup_pb2.RecordCountryApprovalRequest(
        name=kr, approval=approval(status=startup_pb2.DONE, decision_date=day("2026-02-15"))),
        metadata=system.auth("site", sites=[ss.site.removeprefix("sites/")])),
        grpc.StatusCode.PERMISSION_DENIED)  # a site records its own milestones only
    recorded = await system.tracker.RecordCountryApproval(startup_pb2.RecordCountryApprovalRequest(
        name=kr, approval=approval(status=startup_pb2.DONE, submitted_date=day("2026-01-05"),
                                   decision_date=day("2026-02-15"), reference="IND-2026-001")),
        metadata=system.auth("sponsor", org="acme"))
    assert (recorded.authority, recorded.name) == ("MFDS", kr)

    error = await fails(record(system, ss.name, "site-activated", "2026-02-14"),
                        grpc.StatusCode.FAILED_PRECONDITION)
    assert preconditions(error)[0][0] == "COUNTRY_APPROVAL_DATE"
    activated = await record(system, ss.name, "site-activated", "2026-02-16")
    assert activated.status == startup_pb2.DONE

    # The approval cannot now be undone or moved after the activation it allowed.
    await fails(system.tracker.RecordCountryApproval(startup_pb2.RecordCountryApprovalRequest(
        name=kr, approval=approval(status=startup_pb2.DONE, decision_date=day("2026-02-17"))),
        metadata=system.admin), grpc.StatusCode.INVALID_ARGUMENT)  # no reason
    await fails(system.tracker.RecordCountryApproval(startup_pb2.RecordCountryApprovalRequest(
        name=kr, reason="wrong date", approval=approval(
            status=startup_pb2.DONE, decision_date=day("2026-02-17"))),
        metadata=system.admin), grpc.StatusCode.FAILED_PRECONDITION)
    audit = await system.tracker.ListMilestoneHistory(startup_pb2.ListMilestoneHistoryRequest(
        parent=study.name), metadata=system.admin)
    assert [(e.milestone, e.role) for e in audit.entries] == [
        ("study", "admin"), ("country-approval/KR", "sponsor")]
    assert '"IND-2026-001"' in audit.entries[1].after_json
    await fails(system.tracker.ListMilestoneHistory(startup_pb2.ListMilestoneHistoryRequest(
        parent=study.name), metadata=system.auth("site", sites=[ss.site.removeprefix("sites/")])),
        grpc.StatusCode.NOT_FOUND)
    got = await system.tracker.GetStudy(startup_pb2.GetStudyRequest(name=study.name),
                                        metadata=system.admin)
    assert [(a.country_code, a.decision_date, a.reference) for a in got.country_approvals] == \
        [("KR", day("2026-02-15"), "IND-2026-001")]
    site = await system.tracker.GetStudySite(startup_pb2.GetStudySiteRequest(name=ss.name),
                                             metadata=system.admin)
    assert site.status == startup_pb2.ACTIVATED


async def test_access_by_role(shared_system: RunningSystem) -> None:
    system = shared_system
    study, ss = await study_site(system, sponsor="acme")
    other = await create_site(system)
    await add_study_site(system, study.name, other.name)
    site_id = ss.site.removeprefix("sites/")
    rival = system.auth("sponsor", org="rival")
    mine = system.auth("site", sites=[site_id])
    ops = system.auth("ops")
    t = system.tracker
    for call in (t.GetStudy(startup_pb2.GetStudyRequest(name=study.name), metadata=rival),
                 t.ListStudySites(startup_pb2.ListStudySitesRequest(parent=study.name),
                                  metadata=rival),
                 t.GetActivationSummary(startup_pb2.GetActivationSummaryRequest(
                     name=study.name), metadata=rival),
                 record(system, ss.name, "site-selected", "2026-01-01", metadata=rival),
                 t.GetStudySite(startup_pb2.GetStudySiteRequest(
                     name=f"{study.name}/sites/{other.name.removeprefix('sites/')}"),
                     metadata=mine),
                 record(system, f"{study.name}/sites/{other.name.removeprefix('sites/')}",
                        "site-selected", "2026-01-01", metadata=mine)):
        await fails(call, grpc.StatusCode.NOT_FOUND)
    for call in (record(system, ss.name, "site-selected", "2026-01-01", metadata=ops),
                 t.AddStudySite(startup_pb2.AddStudySiteRequest(parent=study.name,
                                                                site=other.name), metadata=ops)):
        await fails(call, grpc.StatusCode.PERMISSION_DENIED)
    await record(system, ss.name, "site-selected", "2026-01-01", metadata=mine)
    listed = await t.ListStudySites(startup_pb2.ListStudySitesRequest(parent=study.name),
                                    metadata=mine)
    assert [s.name for s in listed.study_sites] == [ss.name]
    everything = await t.ListStudySites(startup_pb2.ListStudySitesRequest(parent=study.name),
                                        metadata=ops)
    assert len(everything.study_sites) == 2
    summary = await t.GetActivationSummary(startup_pb2.GetActivationSummaryRequest(
        name=study.name), metadata=mine)
    assert summary.total.site_count == 1


async def test_study_site_filters_and_errors(shared_system: RunningSystem) -> None:
    system = shared_system
    study = await create_study(system, countries=("KR", "JP"))
    seoul = await create_site(system, region="KR-11")
    busan = await create_site(system, region="KR-26")
    tokyo = await create_site(system, country="JP", region="JP-13")
    for s in (seoul, busan, tokyo):
        await add_study_site(system, study.name, s.name)
    name = {s.name: f"{study.name}/sites/{s.name.removeprefix('sites/')}"
            for s in (seoul, busan, tokyo)}
    # Selected long ago with the CDA not done: overdue against its 14-day target.
    await record(system, name[seoul.name], "site-selected", "2025-01-01")
    await record(system, name[tokyo.name], "site-selected", "2025-01-01")
    await record(system, name[tokyo.name], "cda-executed", "2025-01-05")

    async def listed(text: str) -> set[str]:
        page = await system.tracker.ListStudySites(startup_pb2.ListStudySitesRequest(
            parent=study.name, filter=text), metadata=system.admin)
        return {s.name for s in page.study_sites}

    assert await listed('country_code = "JP"') == {name[tokyo.name]}
    assert await listed('region_code = "KR-26"') == {name[busan.name]}
    assert await listed("status = NOT_STARTED") == {name[busan.name]}
    assert await listed("current_milestone = cda-executed") == {name[tokyo.name]}
    assert await listed("overdue = true") == {name[seoul.name], name[tokyo.name]}
    assert await listed('overdue = true AND country_code = "KR"') == {name[seoul.name]}
    assert await listed("flagged = true") == set()
    pages, token = [], ""
    while True:  # filtered in memory, paged by site id
        page = await system.tracker.ListStudySites(startup_pb2.ListStudySitesRequest(
            parent=study.name, filter='country_code = "KR"', page_size=1, page_token=token),
            metadata=system.admin)
        pages.append([s.name for s in page.study_sites])
        token = page.next_page_token
        if not token:
            break
    assert pages == [[n] for n in sorted([name[seoul.name], name[busan.name]])]
    await fails(system.tracker.ListStudySites(startup_pb2.ListStudySitesRequest(
        parent=study.name, filter='country_code = "JP"', page_token=page.next_page_token or
        "x"), metadata=system.admin), grpc.StatusCode.INVALID_ARGUMENT)
    overdue = await system.tracker.GetStudySite(startup_pb2.GetStudySiteRequest(
        name=name[seoul.name]), metadata=system.admin)
    cda = next(m for m in overdue.milestones if m.milestone == "cda-executed")
    assert cda.target_date == day("2025-01-15") and cda.days_overdue > 300
    for text in ("nope = 1", "overdue = ", "free text"):
        await fails(system.tracker.ListStudySites(startup_pb2.ListStudySitesRequest(
            parent=study.name, filter=text), metadata=system.admin),
            grpc.StatusCode.INVALID_ARGUMENT)
    await fails(system.tracker.AddStudySite(startup_pb2.AddStudySiteRequest(
        parent=study.name, site="sites/does-not-exist"), metadata=system.admin),
        grpc.StatusCode.NOT_FOUND)
    await fails(system.tracker.AddStudySite(startup_pb2.AddStudySiteRequest(
        parent=study.name, site=seoul.name), metadata=system.admin),
        grpc.StatusCode.ALREADY_EXISTS)
    us = await create_site(system, country="US", region="US-CA", time_zone="America/Los_Angeles")
    await fails(add_study_site(system, study.name, us.name), grpc.StatusCode.FAILED_PRECONDITION)
    await fails(system.tracker.GetActivationSummary(startup_pb2.GetActivationSummaryRequest(
        name=study.name, due_within_days=-1), metadata=system.admin),
        grpc.StatusCode.INVALID_ARGUMENT)


async def test_custom_template_is_followed(shared_system: RunningSystem) -> None:
    system = shared_system
    site = await create_site(system)
    choice = startup_pb2.TemplateChoice(
        skip_milestones=["site-qualification-visit"], target_days={"site-activated": 70},
        extra_milestones=[startup_pb2.MilestoneDefinition(
            milestone="pharmacy-ready", display_name="Pharmacy ready",
            prerequisites=["contract-executed"], target_days=80, has_target=True)])
    study = await system.tracker.CreateStudy(startup_pb2.CreateStudyRequest(
        study=startup_pb2.Study(protocol_number=unique("C"), title="Custom",
                                sponsor_org="acme", phase=startup_pb2.PHASE_1,
                                country_codes=["KR"], template=choice)), metadata=system.admin)
    keys = [d.milestone for d in study.milestone_definitions]
    assert "site-qualification-visit" not in keys and "pharmacy-ready" in keys
    ss = await add_study_site(system, study.name, site.name)
    await record(system, ss.name, "site-selected", "2026-01-01")
    await record(system, ss.name, "cda-executed", "2026-01-02")
    await record(system, ss.name, "budget-agreed", "2026-01-03")  # no SQV needed now
    await fails(record(system, ss.name, "site-qualification-visit", "2026-01-03"),
                grpc.StatusCode.INVALID_ARGUMENT)
    error = await fails(record(system, ss.name, "pharmacy-ready", "2026-01-04"),
                        grpc.StatusCode.FAILED_PRECONDITION)
    assert preconditions(error) == [("MILESTONE", f"{ss.name}/milestones/contract-executed")]
    got = await system.tracker.GetStudySite(startup_pb2.GetStudySiteRequest(name=ss.name),
                                            metadata=system.admin)
    activated = next(m for m in got.milestones if m.milestone == "site-activated")
    assert activated.target_date == day("2026-03-12")  # 1 January + 70 days
