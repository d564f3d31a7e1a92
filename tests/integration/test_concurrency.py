"""Two writers at once on the same record: one wins, the other is told, nothing is lost.

The writers are real gRPC calls started together (asyncio.gather), on SQLite and on
PostgreSQL. What is checked afterwards is what a reviewer would check: the record's
final state and its audit trail or history hold exactly the changes acknowledged.
"""

from __future__ import annotations

import asyncio
import itertools
import json

import grpc
from google.protobuf import field_mask_pb2

from sitenet.registry.v1 import registry_pb2 as rpb
from sitenet.startup.v1 import startup_pb2 as spb
from tests.support.scenario import add_study_site, create_site, create_study, day, unique
from tests.support.system import RunningSystem

ROUNDS = 4


async def _outcome(call: object) -> tuple[grpc.StatusCode, object]:
    try:
        return grpc.StatusCode.OK, await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as error:
        return error.code(), error


async def test_two_updates_of_a_site_with_the_same_etag_one_wins(system: RunningSystem
                                                                  ) -> None:
    for round_ in range(ROUNDS):
        site = await create_site(system)
        writers = [f"Busan-{round_}", f"Daegu-{round_}"]
        outcomes = await asyncio.gather(*(_outcome(system.registry.UpdateSite(
            rpb.UpdateSiteRequest(site=rpb.Site(name=site.name, city=city, etag=site.etag),
                                  update_mask=field_mask_pb2.FieldMask(paths=["city"]),
                                  reason=f"writer {city}"),
            metadata=system.auth("admin", subject=f"writer-{city}"))) for city in writers))
        codes = sorted(code.name for code, _ in outcomes)
        assert codes == ["ABORTED", "OK"], codes
        winner = next(city for city, (code, _) in zip(writers, outcomes, strict=True)
                      if code == grpc.StatusCode.OK)
        final = await system.registry.GetSite(rpb.GetSiteRequest(name=site.name),
                                              metadata=system.admin)
        assert final.city == winner
        audit = await system.registry.ListSiteAuditEntries(
            rpb.ListSiteAuditEntriesRequest(parent=site.name), metadata=system.admin)
        updates = [e for e in audit.audit_entries if e.action != "CREATE"]
        assert [(e.after.city, e.actor, e.reason, list(e.changed_fields)) for e in updates] \
            == [(winner, f"writer-{winner}", f"writer {winner}", ["city"])]

        # The loser reads again and retries with the new etag: now it is applied, on top.
        loser = next(c for c in writers if c != winner)
        again = await system.registry.UpdateSite(
            rpb.UpdateSiteRequest(site=rpb.Site(name=site.name, city=loser, etag=final.etag),
                                  update_mask=field_mask_pb2.FieldMask(paths=["city"]),
                                  reason="retry"), metadata=system.admin)
        assert again.city == loser


async def test_suspend_and_close_with_the_same_etag_one_wins(system: RunningSystem) -> None:
    site = await create_site(system)
    outcomes = await asyncio.gather(
        _outcome(system.registry.SuspendSite(rpb.SuspendSiteRequest(
            name=site.name, reason="suspend", etag=site.etag), metadata=system.admin)),
        _outcome(system.registry.CloseSite(rpb.CloseSiteRequest(
            name=site.name, reason="close", etag=site.etag), metadata=system.admin)))
    assert sorted(code.name for code, _ in outcomes) == ["ABORTED", "OK"]
    audit = await system.registry.ListSiteAuditEntries(
        rpb.ListSiteAuditEntriesRequest(parent=site.name), metadata=system.admin)
    assert [e.action for e in audit.audit_entries][1:] in (["SUSPEND"], ["CLOSE"])


async def test_two_writers_of_the_same_milestone_no_update_is_lost(system: RunningSystem
                                                                   ) -> None:
    site = await create_site(system)
    study = await create_study(system, unique("conc"))
    study_site = await add_study_site(system, study.name, site.name)
    for round_ in range(ROUNDS):
        notes = [f"writer-a-{round_}", f"writer-b-{round_}"]
        outcomes = await asyncio.gather(*(_outcome(system.tracker.RecordMilestone(
            spb.RecordMilestoneRequest(study_site=study_site.name, milestone="site-selected",
                                       status=spb.DONE, actual_date=day("2026-01-05"),
                                       note=note, reason=f"by {note}"),
            metadata=system.auth("admin", subject=note))) for note in notes))
        codes = [code for code, _ in outcomes]
        # No etag on RecordMilestone: the writes are serialised by the row's version. A
        # writer that loses the race is told ABORTED (read again, retry); none is silently
        # overwritten, none ends in another error.
        assert all(c in (grpc.StatusCode.OK, grpc.StatusCode.ABORTED) for c in codes), codes
        assert grpc.StatusCode.OK in codes
        history = await system.tracker.ListMilestoneHistory(
            spb.ListMilestoneHistoryRequest(parent=study_site.name, page_size=1000),
            metadata=system.admin)
        this_round = [e for e in history.entries
                      if json.loads(e.after_json).get("note") in notes]
        acknowledged = [n for n, c in zip(notes, codes, strict=True)
                        if c == grpc.StatusCode.OK]
        # Exactly one history entry per acknowledged write, with its actor and reason.
        assert sorted((json.loads(e.after_json)["note"], e.actor, e.reason)
                      for e in this_round) == sorted((n, n, f"by {n}") for n in acknowledged)
        # When both landed (SQLite serialises the writers; PostgreSQL usually aborts one),
        # the second saw the first: its "before" is the first's "after".
        for earlier, later in itertools.pairwise(this_round):
            assert json.loads(later.before_json) == json.loads(earlier.after_json)
        # The final state is the last acknowledged write, as history tells it.
        current = await system.tracker.GetStudySite(
            spb.GetStudySiteRequest(name=study_site.name), metadata=system.admin)
        note = next(m.note for m in current.milestones if m.milestone == "site-selected")
        assert note == json.loads(history.entries[-1].after_json)["note"]
        assert note in acknowledged


async def test_writers_of_different_milestones_of_one_study_site_all_land(
        system: RunningSystem) -> None:
    """Concurrent writes to different milestones of the same study-site (same row): each
    acknowledged one is in the final state and the history; a refused one is ABORTED."""
    site = await create_site(system)
    study = await create_study(system, unique("conc"))
    study_site = await add_study_site(system, study.name, site.name)
    keys = ["site-selected", "cda-executed", "site-qualification-visit"]
    outcomes = await asyncio.gather(*(_outcome(system.tracker.RecordMilestone(
        spb.RecordMilestoneRequest(study_site=study_site.name, milestone=k,
                                   status=spb.PLANNED, planned_date=day("2026-03-01"),
                                   reason=f"plan {k}"), metadata=system.admin))
        for k in keys))
    codes = [code for code, _ in outcomes]
    assert all(c in (grpc.StatusCode.OK, grpc.StatusCode.ABORTED) for c in codes), codes
    acknowledged = {k for k, c in zip(keys, codes, strict=True) if c == grpc.StatusCode.OK}
    assert acknowledged
    current = await system.tracker.GetStudySite(spb.GetStudySiteRequest(name=study_site.name),
                                                metadata=system.admin)
    planned = {m.milestone for m in current.milestones if m.status == spb.PLANNED
               and m.planned_date.year == 2026}
    assert planned == acknowledged
    history = await system.tracker.ListMilestoneHistory(
        spb.ListMilestoneHistoryRequest(parent=study_site.name), metadata=system.admin)
    assert sorted(e.milestone for e in history.entries
                  if e.milestone != "study-site") == sorted(acknowledged)
