"""The sponsor's view against a hand-computed fixture, the events every change raises, and
a registry suspension flagging a study-site — on a fresh system per backend, with "today"
pinned to 2026-06-30 (12:00 in Seoul and Tokyo)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import grpc
import pytest
from google.protobuf import field_mask_pb2

from services.common import topics
from services.common.events import Envelope
from services.common.kafka import KafkaPublisher
from sitenet.events.v1 import events_pb2
from sitenet.startup.v1 import startup_pb2
from tests.support.events import Record, read_topic
from tests.support.scenario import add_study_site, create_site, create_study, day, record
from tests.support.system import RunningSystem

NOW = dt.datetime(2026, 6, 30, 3, 0, tzinfo=dt.UTC)

# Sites A..F and what each recorded (all DONE unless said). Targets: default template.
FIXTURE: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "a": ("KR", "KR-11", [("site-selected", "2026-01-01"), ("cda-executed", "2026-01-10"),
                          ("site-qualification-visit", "2026-01-20"),
                          ("budget-agreed", "2026-02-10"), ("contract-executed", "2026-03-01"),
                          ("irb-submitted", "2026-01-15"), ("irb-approved", "2026-02-15"),
                          ("essential-documents-complete", "2026-03-05"),
                          ("site-initiation-visit", "2026-03-10"),
                          ("site-activated", "2026-03-15"), ("first-patient-in", "2026-04-01")]),
    "b": ("KR", "KR-11", [("site-selected", "2026-01-01"), ("cda-executed", "2026-01-05"),
                          ("site-qualification-visit", "2026-01-25"),
                          ("budget-agreed", "2026-02-20"), ("contract-executed", "2026-03-20"),
                          ("irb-submitted", "2026-01-20"), ("irb-approved", "2026-02-25"),
                          ("essential-documents-complete", "2026-03-25"),
                          ("site-initiation-visit", "2026-03-28"),
                          ("site-activated", "2026-04-05")]),
    "c": ("KR", "KR-26", [("site-selected", "2026-02-01"), ("cda-executed", "2026-02-11"),
                          ("site-qualification-visit", "2026-02-21"),
                          ("budget-agreed", "2026-03-10"), ("irb-submitted", "2026-02-20"),
                          ("irb-approved", "2026-03-30")]),
    "d": ("KR", "KR-46", [("site-selected", "2026-06-01"), ("cda-executed", "2026-06-20")]),
    "e": ("JP", "JP-13", [("site-selected", "2026-03-01"), ("cda-executed", "2026-03-15"),
                          ("irb-submitted", "2026-04-01"), ("irb-approved", "2026-05-01")]),
    "f": ("KR", "KR-11", []),
}


async def build_fixture(system: RunningSystem) -> tuple[str, dict[str, str]]:
    system.tracker_app.service.clock = lambda: NOW
    zones = {"KR": "Asia/Seoul", "JP": "Asia/Tokyo"}
    sites = {k: await create_site(system, f"site-{k}", country=c, region=r, time_zone=zones[c])
             for k, (c, r, _) in FIXTURE.items()}
    study = await create_study(system, "fixture", sponsor_org="acme", countries=("KR", "JP"))
    await system.tracker.RecordCountryApproval(startup_pb2.RecordCountryApprovalRequest(
        name=f"{study.name}/countries/KR", approval=startup_pb2.CountryApproval(
            status=startup_pb2.DONE, decision_date=day("2026-03-01"))), metadata=system.admin)
    names = {}
    for key, (_, _, steps) in FIXTURE.items():
        ss = await add_study_site(system, study.name, sites[key].name)
        names[key] = ss.name
        for milestone, when in steps:
            status = startup_pb2.REJECTED if (key, milestone) == ("e", "irb-approved") \
                else startup_pb2.DONE
            await record(system, ss.name, milestone, when, status=status)
    await system.tracker.RecordMilestone(startup_pb2.RecordMilestoneRequest(
        study_site=names["d"], milestone="site-activated", status=startup_pb2.PLANNED,
        planned_date=day("2026-07-20")), metadata=system.admin)
    return study.name, names


async def test_summary_matches_hand_computed_fixture_and_every_change_is_an_event(
        system: RunningSystem) -> None:
    study, n = await build_fixture(system)
    summary = await system.tracker.GetActivationSummary(
        startup_pb2.GetActivationSummaryRequest(name=study), metadata=system.admin)
    total = summary.total
    assert summary.as_of == day("2026-06-30") and summary.due_within_days == 30
    assert total.site_count == 6
    funnel = {f.milestone: (f.sites_done, f.sites_current) for f in total.funnel}
    assert funnel == {
        "site-selected": (5, 0), "cda-executed": (5, 1), "site-qualification-visit": (3, 0),
        "budget-agreed": (3, 0), "contract-executed": (2, 0), "irb-submitted": (4, 1),
        "irb-approved": (3, 1), "essential-documents-complete": (2, 0),
        "site-initiation-visit": (2, 0), "site-activated": (2, 1), "first-patient-in": (1, 1)}
    cycles = {(c.from_milestone, c.to_milestone): (c.count, c.median_days, c.p75_days,
                                                   c.p90_days) for c in total.cycle_times}
    # IRB review: A 31, B 36, C 38 days (E was rejected: no approval date to count).
    assert cycles[("irb-submitted", "irb-approved")] == pytest.approx((3, 36.0, 37.0, 37.6))
    # Selection to activation: A 73, B 94.
    assert cycles[("site-selected", "site-activated")] == pytest.approx((2, 83.5, 88.75, 91.9))
    assert cycles[("site-selected", "first-patient-in")] == pytest.approx((1, 90, 90, 90))
    # Contract (budget -> contract): A 19, B 28.
    assert cycles[("budget-agreed", "contract-executed")] == pytest.approx((2, 23.5, 25.75,
                                                                            27.1))
    overdue = [(o.study_site, o.milestone, o.days_overdue) for o in total.overdue]
    assert overdue == [
        (n["e"], "site-qualification-visit", 91), (n["c"], "contract-executed", 89),
        (n["e"], "budget-agreed", 76), (n["c"], "essential-documents-complete", 74),
        (n["c"], "site-initiation-visit", 64), (n["e"], "contract-executed", 61),
        (n["e"], "irb-approved", 61), (n["b"], "first-patient-in", 60),
        (n["c"], "site-activated", 59), (n["e"], "essential-documents-complete", 46),
        (n["e"], "site-initiation-visit", 36), (n["e"], "site-activated", 31),
        (n["c"], "first-patient-in", 29), (n["e"], "first-patient-in", 1)]
    assert total.sites_overdue == 3
    a = total.activation
    assert (a.overdue, a.due_soon, a.planned_later, a.activated, a.unplanned) == (2, 1, 0, 2, 1)

    by_country = {g.scope: g for g in summary.by_country}
    assert {k: g.site_count for k, g in by_country.items()} == {"JP": 1, "KR": 5}
    assert by_country["JP"].sites_overdue == 1 and by_country["KR"].sites_overdue == 2
    assert by_country["KR"].activation.activated == 2
    by_region = {g.scope: (g.site_count, g.activation.activated, g.sites_overdue)
                 for g in summary.by_region}
    assert by_region == {"JP-13": (1, 0, 1), "KR-11": (3, 2, 1), "KR-26": (1, 0, 1),
                         "KR-46": (1, 0, 0)}
    narrow = await system.tracker.GetActivationSummary(startup_pb2.GetActivationSummaryRequest(
        name=study, due_within_days=10), metadata=system.admin)
    assert narrow.total.activation.due_soon == 0 and narrow.total.activation.planned_later == 1

    await system.tracker.UpdateStudy(startup_pb2.UpdateStudyRequest(
        study=startup_pb2.Study(name=study, title="Fixture study"),
        update_mask=field_mask_pb2.FieldMask(paths=["title"])), metadata=system.admin)
    wanted = {"StudyCreated", "StudySiteAdded", "MilestoneRecorded", "CountryApprovalRecorded",
              "StudySiteActivated", "StudyUpdated"}

    def complete(records: list[Record]) -> bool:
        return wanted <= {r.ce_type.rsplit(".", 1)[-1] for r in records}

    records = await read_topic(system.settings.bootstrap_servers,
                               system.settings.topic(topics.STUDIES.name), complete)
    assert complete(records)
    assert {r.key for r in records} == {"fixture"}  # keyed by study
    activated = [events_pb2.StudySiteActivated.FromString(r.value) for r in records
                 if r.ce_type.endswith("StudySiteActivated")]
    assert sorted((e.study_site.name, e.startup_day) for e in activated) == \
        [(n["a"], 74), (n["b"], 95)]
    cda = next(events_pb2.MilestoneRecorded.FromString(r.value) for r in records
               if r.subject == f"{n['a']}/milestones/cda-executed")
    assert cda.after.due_date == day("2026-01-15")


async def test_suspended_site_is_flagged_and_cannot_be_activated(
        system: RunningSystem) -> None:
    system.tracker_app.service.clock = lambda: NOW
    site = await create_site(system, "snuh")
    study = await create_study(system, "flagged")
    ss = await add_study_site(system, study.name, site.name)
    state = events_pb2.SiteState(name=site.name, display_name_en=site.display_name_en,
                                 display_name_ko=site.display_name_ko, country_code="KR",
                                 region_code="KR-11", status="SUSPENDED",
                                 time_zone="Asia/Seoul", version=2)
    await publish_site(system, state)
    deadline = time.monotonic() + 15
    while True:
        got = await system.tracker.GetStudySite(startup_pb2.GetStudySiteRequest(name=ss.name),
                                                metadata=system.admin)
        if got.flagged or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert got.flagged and "SUSPENDED" in got.flag_reason
    listed = await system.tracker.ListStudySites(startup_pb2.ListStudySitesRequest(
        parent=study.name, filter="flagged = true"), metadata=system.admin)
    assert [s.name for s in listed.study_sites] == [ss.name]
    records = await read_topic(
        system.settings.bootstrap_servers, system.settings.topic(topics.STUDIES.name),
        lambda rs: any(r.ce_type.endswith("StudySiteFlagged") for r in rs))
    flagged = [events_pb2.StudySiteFlagged.FromString(r.value) for r in records
               if r.ce_type.endswith("StudySiteFlagged")]
    assert [(f.study_site.name, f.flagged, f.site_status) for f in flagged] == \
        [(ss.name, True, "SUSPENDED")]
    assert {r.key for r in records} == {"flagged"}

    # A suspended site cannot join another study, nor be activated in this one (below);
    # active again, the flag is cleared with an event.
    other = await create_study(system, "other")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await add_study_site(system, other.name, site.name)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await system.tracker.RecordCountryApproval(startup_pb2.RecordCountryApprovalRequest(
        name=f"{study.name}/countries/KR", approval=startup_pb2.CountryApproval(
            status=startup_pb2.DONE, decision_date=day("2026-01-02"))), metadata=system.admin)
    for milestone, when in FIXTURE["a"][2][:9]:
        await record(system, ss.name, milestone, when)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(system, ss.name, "site-activated", "2026-03-15")
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "SUSPENDED" in (caught.value.details() or "")

    await publish_site(system, state, status="ACTIVE", version=3)
    records = await read_topic(
        system.settings.bootstrap_servers, system.settings.topic(topics.STUDIES.name),
        lambda rs: sum(r.ce_type.endswith("StudySiteFlagged") for r in rs) == 2)
    flags = [events_pb2.StudySiteFlagged.FromString(r.value).flagged for r in records
             if r.ce_type.endswith("StudySiteFlagged")]
    assert flags == [True, False]
    activated = await record(system, ss.name, "site-activated", "2026-03-15")
    assert activated.status == startup_pb2.DONE


async def publish_site(system: RunningSystem, state: events_pb2.SiteState, **change: object
                       ) -> None:
    """What the registry publishes when a site's status changes (its RPC is issue 3's)."""
    site = events_pb2.SiteState()
    site.CopyFrom(state)
    for field, value in change.items():
        setattr(site, field, value)
    publisher = KafkaPublisher(system.settings.bootstrap_servers, "test-registry")
    await publisher.publish([Envelope(
        type="sitenet.events.v1.SiteUpdated", source="//sitenet/site-registry",
        subject=site.name, topic=system.settings.topic(topics.SITES.name),
        key=site.name.removeprefix("sites/"),
        data=events_pb2.SiteUpdated(site=site, changed_fields=["status"]).SerializeToString())])
    await publisher.close()
