"""The site registry through gRPC, on the real broker and both databases: every
rule of the registry, and bad input of every kind changing nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.type import date_pb2

from sitenet.events.v1 import events_pb2
from sitenet.registry.v1 import registry_pb2
from tests.support.errors import fails
from tests.support.errors import field_violations as violations
from tests.support.events import site_events
from tests.support.scenario import create_site, unique
from tests.support.system import RunningSystem

Site = registry_pb2.Site






async def get(system: RunningSystem, site_id: str) -> Site:
    return await system.registry.GetSite(registry_pb2.GetSiteRequest(name=f"sites/{site_id}"),
                                         metadata=system.admin)


async def audit(system: RunningSystem, site_id: str, **kw: Any
                ) -> registry_pb2.ListSiteAuditEntriesResponse:
    metadata = kw.pop("metadata", system.admin)
    return await system.registry.ListSiteAuditEntries(
        registry_pb2.ListSiteAuditEntriesRequest(parent=f"sites/{site_id}", **kw),
        metadata=metadata)


async def list_all(system: RunningSystem, filter_text: str = "", order_by: str = "",
                   page_size: int = 0) -> list[Site]:
    out: list[Site] = []
    token = ""
    while True:
        page = await system.registry.ListSites(registry_pb2.ListSitesRequest(
            filter=filter_text, order_by=order_by, page_size=page_size, page_token=token),
            metadata=system.admin)
        out += page.sites
        token = page.next_page_token
        if not token:
            return out


async def assert_unchanged(system: RunningSystem, before: Site) -> None:
    """The site is as it was and its audit trail has no new entry."""
    site_id = before.name.removeprefix("sites/")
    assert await get(system, site_id) == before
    entries = (await audit(system, site_id, page_size=1000)).audit_entries
    assert entries[-1].after.etag == before.etag


def full_site(**overrides: Any) -> Site:
    values: dict[str, Any] = dict(
        display_name_en=f"Full Hospital {unique('h')}", display_name_ko="서울 전체 병원",
        institution="", country_code="kr", region_code="KR-52", city="Jeonju",
        address="20 Geonji-ro, Deokjin-gu", irb_of_record="Full IRB",
        mfds_designation_number="", mfds_designation_date=date_pb2.Date(year=2005, month=3,
                                                                        day=2),
        principal_investigators=[registry_pb2.PrincipalInvestigator(
            display_name="Kim Minji", specialty="medical oncology")],
        contacts=[registry_pb2.Contact(role="clinical trial centre", display_name="CTC office",
                                       email="ctc@example.org", phone="+82 63-250-1234")],
        therapeutic_areas=["Oncology", "cardiology", "oncology"],
        capabilities=["phase-1-unit", "paediatrics"])
    values.update(overrides)
    return Site(**values)


# --- create, get, and what create refuses -------------------------------------------


async def test_create_keeps_every_field_and_get_returns_it(shared_system: RunningSystem) -> None:
    site_id = unique("full")
    created = await shared_system.registry.CreateSite(
        registry_pb2.CreateSiteRequest(site_id=site_id, site=full_site()),
        metadata=shared_system.admin)
    assert created.name == f"sites/{site_id}"
    assert created.country_code == "KR" and created.region_code == "KR-52"
    assert list(created.therapeutic_areas) == ["oncology", "cardiology"]  # normalised, unique
    assert created.principal_investigators[0].specialty == "medical oncology"
    assert created.contacts[0].email == "ctc@example.org"
    assert created.mfds_designation_date == date_pb2.Date(year=2005, month=3, day=2)
    assert created.status == Site.ACTIVE and created.time_zone == "Asia/Seoul"
    assert created.etag and created.create_time == created.update_time
    assert await get(shared_system, site_id) == created

    generated = await shared_system.registry.CreateSite(
        registry_pb2.CreateSiteRequest(site=full_site()), metadata=shared_system.admin)
    assert generated.name.startswith("sites/site-")

    entries = (await audit(shared_system, site_id)).audit_entries
    assert [e.action for e in entries] == ["CREATE"]
    assert not entries[0].HasField("before") and entries[0].after == created
    assert entries[0].actor_role == "admin"


async def test_same_id_or_same_institution_twice_is_already_exists(
        shared_system: RunningSystem) -> None:
    first = await create_site(shared_system, institution=f"Inst {unique('i')}")
    site_id = first.name.removeprefix("sites/")
    await fails(create_site(shared_system, site_id), grpc.StatusCode.ALREADY_EXISTS)
    # Same institution, spelt with other case and spacing, under another id.
    twin = "  " + first.institution.upper().replace(" ", "  ")
    await fails(create_site(shared_system, institution=twin), grpc.StatusCode.ALREADY_EXISTS)
    await assert_unchanged(shared_system, first)


BAD_CREATES: list[tuple[str, dict[str, Any], str]] = [
    ("missing name", {"display_name_en": ""}, "site.display_name_en"),
    ("missing country", {"country_code": ""}, "site.country_code"),
    ("bad country", {"country_code": "XX"}, "site.country_code"),
    ("bad region", {"region_code": "KR-99"}, "site"),
    ("region of another country", {"region_code": "JP-13"}, "site"),
    ("malformed region", {"region_code": "Seoul"}, "site"),
    ("oversize name", {"display_name_en": "x" * 201}, "site.display_name_en"),
    ("oversize address", {"address": "x" * 501}, "site.address"),
    ("bad tag", {"therapeutic_areas": ["on cology!"]}, "site.therapeutic_areas"),
    ("bad time zone", {"time_zone": "Mars/Olympus"}, "site"),
    ("bad date", {"mfds_designation_date": date_pb2.Date(year=2020, month=2, day=30)},
     "site.mfds_designation_date"),
    ("bad email", {"contacts": [registry_pb2.Contact(display_name="x", email="nope")]},
     "site.contacts.email"),
    ("nameless investigator", {"principal_investigators": [
        registry_pb2.PrincipalInvestigator(specialty="cardiology")]},
     "site.principal_investigators.display_name"),
]


@pytest.mark.parametrize(("case", "change", "field"), BAD_CREATES,
                         ids=[c[0] for c in BAD_CREATES])
async def test_bad_create_is_invalid_argument_and_registers_nothing(
        shared_system: RunningSystem, case: str, change: dict[str, Any], field: str) -> None:
    site_id = unique("bad")
    error = await fails(shared_system.registry.CreateSite(
        registry_pb2.CreateSiteRequest(site_id=site_id, site=full_site(**change)),
        metadata=shared_system.admin), grpc.StatusCode.INVALID_ARGUMENT)
    assert field in violations(error), violations(error)
    await fails(get(shared_system, site_id), grpc.StatusCode.NOT_FOUND)


async def test_bad_ids_and_unknown_sites(shared_system: RunningSystem) -> None:
    reg, admin = shared_system.registry, shared_system.admin
    error = await fails(reg.CreateSite(registry_pb2.CreateSiteRequest(
        site_id="Bad_Id", site=full_site()), metadata=admin), grpc.StatusCode.INVALID_ARGUMENT)
    assert "site_id" in violations(error)
    await fails(reg.GetSite(registry_pb2.GetSiteRequest(name="hospitals/x"), metadata=admin),
                grpc.StatusCode.INVALID_ARGUMENT)
    missing = unique("missing")
    await fails(get(shared_system, missing), grpc.StatusCode.NOT_FOUND)
    await fails(reg.UpdateSite(registry_pb2.UpdateSiteRequest(
        site=Site(name=f"sites/{missing}", city="Busan"),
        update_mask=field_mask_pb2.FieldMask(paths=["city"])), metadata=admin),
        grpc.StatusCode.NOT_FOUND)
    await fails(reg.SuspendSite(registry_pb2.SuspendSiteRequest(
        name=f"sites/{missing}", reason="audit"), metadata=admin), grpc.StatusCode.NOT_FOUND)
    await fails(audit(shared_system, missing), grpc.StatusCode.NOT_FOUND)


# --- update -----------------------------------------------------------------------------


async def test_update_applies_the_mask_checks_the_etag_and_records_the_change(
        shared_system: RunningSystem) -> None:
    site = await create_site(shared_system, city="Seoul")
    site_id = site.name.removeprefix("sites/")
    reg, admin = shared_system.registry, shared_system.admin
    updated = await reg.UpdateSite(registry_pb2.UpdateSiteRequest(
        site=Site(name=site.name, etag=site.etag, city="Bundang", region_code="KR-41",
                  display_name_en="ignored, not in the mask",
                  principal_investigators=[registry_pb2.PrincipalInvestigator(
                      display_name="Lee Jiho", specialty="cardiology")]),
        update_mask=field_mask_pb2.FieldMask(paths=["city", "region_code",
                                                    "principal_investigators"]),
        reason="moved campus"), metadata=admin)
    assert (updated.city, updated.region_code) == ("Bundang", "KR-41")
    assert updated.display_name_en == site.display_name_en
    assert updated.etag != site.etag and updated.update_time.ToDatetime() > (
        site.update_time.ToDatetime())

    # A stale etag: ABORTED, nothing changed.
    await fails(reg.UpdateSite(registry_pb2.UpdateSiteRequest(
        site=Site(name=site.name, etag=site.etag, city="Incheon"),
        update_mask=field_mask_pb2.FieldMask(paths=["city"])), metadata=admin),
        grpc.StatusCode.ABORTED)
    # Bad values, bad masks: INVALID_ARGUMENT, nothing changed.
    for bad_site, paths in [
        (Site(name=site.name, region_code="KR-99"), ["region_code"]),
        (Site(name=site.name, city="x" * 201), ["city"]),
        (Site(name=site.name, display_name_en=""), ["display_name_en"]),
        (Site(name=site.name), ["status"]),
        (Site(name=site.name), ["no_such_field"]),
        (Site(name=site.name), []),
    ]:
        await fails(reg.UpdateSite(registry_pb2.UpdateSiteRequest(
            site=bad_site, update_mask=field_mask_pb2.FieldMask(paths=paths)), metadata=admin),
            grpc.StatusCode.INVALID_ARGUMENT)
    await assert_unchanged(shared_system, updated)

    entries = (await audit(shared_system, site_id)).audit_entries
    assert [e.action for e in entries] == ["CREATE", "UPDATE"]
    change = entries[1]
    assert set(change.changed_fields) == {"city", "region_code", "principal_investigators"}
    assert change.before.city == "Seoul" and change.after.city == "Bundang"
    assert change.reason == "moved campus" and change.actor_role == "admin"

    # The events on the broker: registered, then updated with the changed fields; nothing
    # from the refused calls (a later suspension proves the stream is read past them).
    await reg.SuspendSite(registry_pb2.SuspendSiteRequest(name=site.name, reason="sentinel"),
                          metadata=admin)
    events = await site_events(shared_system, site_id, 3)
    assert [t for t, _ in events] == ["sitenet.events.v1.SiteRegistered",
                                      "sitenet.events.v1.SiteUpdated",
                                      "sitenet.events.v1.SiteStatusChanged"]
    event = events_pb2.SiteUpdated.FromString(events[1][1])
    assert set(event.changed_fields) == {"city", "region_code", "principal_investigators"}
    assert (event.before.city, event.site.city) == ("Seoul", "Bundang")
    assert event.reason == "moved campus"


# --- status -----------------------------------------------------------------------------


async def test_suspend_reactivate_close_with_reasons_and_closed_is_final(
        shared_system: RunningSystem) -> None:
    site = await create_site(shared_system)
    site_id = site.name.removeprefix("sites/")
    reg, admin = shared_system.registry, shared_system.admin

    await fails(reg.SuspendSite(registry_pb2.SuspendSiteRequest(name=site.name, reason="  "),
                                metadata=admin), grpc.StatusCode.INVALID_ARGUMENT)
    await fails(reg.ReactivateSite(registry_pb2.ReactivateSiteRequest(
        name=site.name, reason="not suspended"), metadata=admin),
        grpc.StatusCode.FAILED_PRECONDITION)
    await assert_unchanged(shared_system, site)

    suspended = await reg.SuspendSite(registry_pb2.SuspendSiteRequest(
        name=site.name, reason="GCP inspection finding", etag=site.etag), metadata=admin)
    assert suspended.status == Site.SUSPENDED
    assert suspended.status_reason == "GCP inspection finding"
    assert suspended.HasField("status_change_time")
    await fails(reg.SuspendSite(registry_pb2.SuspendSiteRequest(
        name=site.name, reason="again"), metadata=admin), grpc.StatusCode.FAILED_PRECONDITION)
    await fails(reg.CloseSite(registry_pb2.CloseSiteRequest(
        name=site.name, reason="stale", etag=site.etag), metadata=admin),
        grpc.StatusCode.ABORTED)
    await assert_unchanged(shared_system, suspended)

    active = await reg.ReactivateSite(registry_pb2.ReactivateSiteRequest(
        name=site.name, reason="CAPA closed"), metadata=admin)
    assert active.status == Site.ACTIVE and active.status_reason == "CAPA closed"
    closed = await reg.CloseSite(registry_pb2.CloseSiteRequest(
        name=site.name, reason="centre merged"), metadata=admin)
    assert closed.status == Site.CLOSED
    for call in (reg.ReactivateSite(registry_pb2.ReactivateSiteRequest(
                     name=site.name, reason="undo"), metadata=admin),
                 reg.SuspendSite(registry_pb2.SuspendSiteRequest(
                     name=site.name, reason="undo"), metadata=admin),
                 reg.CloseSite(registry_pb2.CloseSiteRequest(
                     name=site.name, reason="again"), metadata=admin)):
        await fails(call, grpc.StatusCode.FAILED_PRECONDITION)
    await assert_unchanged(shared_system, closed)

    # The audit trail, paged one entry at a time, oldest first.
    seen: list[registry_pb2.SiteAuditEntry] = []
    token = ""
    while True:
        page = await audit(shared_system, site_id, page_size=1, page_token=token)
        seen += page.audit_entries
        token = page.next_page_token
        if not token:
            break
    assert [e.action for e in seen] == ["CREATE", "SUSPEND", "REACTIVATE", "CLOSE"]
    assert [e.reason for e in seen[1:]] == ["GCP inspection finding", "CAPA closed",
                                            "centre merged"]
    assert [(e.before.status, e.after.status) for e in seen[1:]] == [
        (Site.ACTIVE, Site.SUSPENDED), (Site.SUSPENDED, Site.ACTIVE), (Site.ACTIVE, Site.CLOSED)]
    await fails(audit(shared_system, site_id, page_size=-1), grpc.StatusCode.INVALID_ARGUMENT)
    await fails(audit(shared_system, site_id, page_token="garbage"),
                grpc.StatusCode.INVALID_ARGUMENT)

    # A correction after the refused calls: its event is the 5th only if they emitted none.
    await reg.UpdateSite(registry_pb2.UpdateSiteRequest(
        site=Site(name=site.name, city="Gwacheon"),
        update_mask=field_mask_pb2.FieldMask(paths=["city"])), metadata=admin)
    events = await site_events(shared_system, site_id, 5)
    assert [t.rsplit(".", 1)[1] for t, _ in events] == [
        "SiteRegistered", "SiteStatusChanged", "SiteStatusChanged", "SiteStatusChanged",
        "SiteUpdated"]
    changes = [events_pb2.SiteStatusChanged.FromString(d) for t, d in events
               if t == "sitenet.events.v1.SiteStatusChanged"]
    assert [(c.before_status, c.after_status, c.reason) for c in changes] == [
        ("ACTIVE", "SUSPENDED", "GCP inspection finding"), ("SUSPENDED", "ACTIVE", "CAPA closed"),
        ("ACTIVE", "CLOSED", "centre merged")]
    assert changes[-1].site.status == "CLOSED" and changes[-1].actor.role == "admin"


# --- who may do what --------------------------------------------------------------------


@pytest.mark.parametrize("role", ["ops", "sponsor", "site"])
async def test_only_admin_changes_the_registry_every_role_reads_it(
        shared_system: RunningSystem, role: str) -> None:
    site = await create_site(shared_system)
    site_id = site.name.removeprefix("sites/")
    claims: dict[str, Any] = {"sponsor": {"org": "acme"}, "site": {"sites": [site_id]}}.get(
        role, {})
    who = shared_system.auth(role, **claims)
    reg = shared_system.registry
    assert (await reg.GetSite(registry_pb2.GetSiteRequest(name=site.name), metadata=who)) == site
    listed = await reg.ListSites(registry_pb2.ListSitesRequest(
        filter=f'"{site.display_name_en}"'), metadata=who)
    assert [s.name for s in listed.sites] == [site.name]
    assert len((await audit(shared_system, site_id, metadata=who)).audit_entries) == 1
    for call in (
        reg.CreateSite(registry_pb2.CreateSiteRequest(site_id=unique("x"), site=full_site()),
                       metadata=who),
        reg.UpdateSite(registry_pb2.UpdateSiteRequest(
            site=Site(name=site.name, city="Busan"),
            update_mask=field_mask_pb2.FieldMask(paths=["city"])), metadata=who),
        reg.SuspendSite(registry_pb2.SuspendSiteRequest(name=site.name, reason="x"),
                        metadata=who),
        reg.ReactivateSite(registry_pb2.ReactivateSiteRequest(name=site.name, reason="x"),
                           metadata=who),
        reg.CloseSite(registry_pb2.CloseSiteRequest(name=site.name, reason="x"), metadata=who),
        reg.ImportSites(registry_pb2.ImportSitesRequest(
            content=b'{"site_id": "x"}', format=registry_pb2.ImportSitesRequest.JSONL),
            metadata=who),
    ):
        await fails(call, grpc.StatusCode.PERMISSION_DENIED)
    await assert_unchanged(shared_system, site)


# --- list: filters, order, pages --------------------------------------------------------


async def test_filters_find_by_country_region_area_capability_status_and_names(
        shared_system: RunningSystem) -> None:
    tag = unique("ta")  # a therapeutic area only this test's sites have
    word = unique("w")
    a = await create_site(shared_system, region="KR-26", city="Busan", therapeutic_areas=[tag],
                          capabilities=["phase-1-unit"], name_en=f"Alpha {word} Hospital",
                          display_name_ko=f"알파{word}병원")
    b = await create_site(shared_system, region="KR-49", city="Jeju", therapeutic_areas=[tag],
                          capabilities=["paediatrics"])
    c = await create_site(shared_system, country="JP", region="JP-13", city="Tokyo",
                          therapeutic_areas=[tag, "rare-disease"])
    await shared_system.registry.SuspendSite(registry_pb2.SuspendSiteRequest(
        name=b.name, reason="capacity"), metadata=shared_system.admin)

    async def names(expression: str) -> set[str]:
        return {s.name for s in await list_all(shared_system, f"therapeutic_areas:{tag} "
                                                              f"AND ({expression})")}

    assert await names('country_code = "KR"') == {a.name, b.name}
    assert await names("country_code = jp") == {c.name}
    assert await names('region_code = "KR-26" OR region_code = "KR-49"') == {a.name, b.name}
    assert await names("capabilities:paediatrics") == {b.name}
    assert await names("therapeutic_areas:rare-disease") == {c.name}
    assert await names("status = SUSPENDED") == {b.name}
    assert await names("NOT status = SUSPENDED") == {a.name, c.name}
    assert await names(f'"{word}"') == {a.name}  # English name
    assert await names(f"알파{word}") == {a.name}  # Korean name
    assert await names(f"{word.upper()}") == {a.name}  # case does not matter

    for bad in ['country_code = "KR" AND', "(region_code = KR-11", "colour = red",
                "country_code = ", '"unterminated', "a" * 1001, "= KR"]:
        error = await fails(shared_system.registry.ListSites(
            registry_pb2.ListSitesRequest(filter=bad), metadata=shared_system.admin),
            grpc.StatusCode.INVALID_ARGUMENT)
        assert "filter" in violations(error)


async def test_pages_stay_correct_while_sites_are_added(shared_system: RunningSystem) -> None:
    tag = unique("pg")
    made = [await create_site(shared_system, name_en=f"{letter} {tag} Hospital",
                              therapeutic_areas=[tag]) for letter in "BDFHJ"]
    query = f"therapeutic_areas:{tag}"
    for order_by, expected in [
        ("display_name_en", [s.name for s in made]),
        ("display_name_en desc", [s.name for s in reversed(made)]),
        ("", sorted(s.name for s in made)),
    ]:
        assert [s.name for s in await list_all(shared_system, query, order_by, page_size=2)
                ] == expected

    reg, admin = shared_system.registry, shared_system.admin
    first = await reg.ListSites(registry_pb2.ListSitesRequest(
        filter=query, order_by="display_name_en", page_size=2), metadata=admin)
    assert [s.display_name_en[0] for s in first.sites] == ["B", "D"]
    # Added while paging: one before the cursor (never seen), one after (seen once).
    await create_site(shared_system, name_en=f"A {tag} Hospital", therapeutic_areas=[tag])
    late = await create_site(shared_system, name_en=f"G {tag} Hospital",
                             therapeutic_areas=[tag])
    rest: list[Site] = []
    token = first.next_page_token
    while token:
        page = await reg.ListSites(registry_pb2.ListSitesRequest(
            filter=query, order_by="display_name_en", page_size=2, page_token=token),
            metadata=admin)
        rest += page.sites
        token = page.next_page_token
    assert [s.display_name_en[0] for s in rest] == ["F", "G", "H", "J"]
    assert late.name in {s.name for s in rest}

    newest = await list_all(shared_system, query, "create_time desc", page_size=3)
    assert newest[0].name == late.name and len(newest) == 7

    for request in [
        registry_pb2.ListSitesRequest(filter=query, page_token=first.next_page_token,
                                      order_by="display_name_en desc"),  # other order
        registry_pb2.ListSitesRequest(filter="", page_token=first.next_page_token,
                                      order_by="display_name_en"),  # other filter
        registry_pb2.ListSitesRequest(page_token="not-a-token"),
        registry_pb2.ListSitesRequest(order_by="etag"),
        registry_pb2.ListSitesRequest(order_by="city sideways"),
        registry_pb2.ListSitesRequest(page_size=-1),
    ]:
        await fails(reg.ListSites(request, metadata=admin), grpc.StatusCode.INVALID_ARGUMENT)


# --- import -----------------------------------------------------------------------------


def jsonl(*rows: dict[str, Any] | str) -> bytes:
    return "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)
                     for r in rows).encode()


async def test_import_with_bad_rows_writes_nothing_unless_partial(
        shared_system: RunningSystem) -> None:
    reg, admin = shared_system.registry, shared_system.admin
    good, good2 = unique("imp"), unique("imp")
    content = jsonl(
        {"site_id": good, "displayNameEn": f"Import {good}", "display_name_ko": "가져온 병원",
         "country_code": "KR", "region_code": "KR-30", "city": "Daejeon",
         "therapeutic_areas": ["oncology"],
         "mfds_designation_date": {"year": 2010, "month": 5, "day": 1}},
        {"site_id": unique("imp"), "display_name_en": "Bad region", "country_code": "KR",
         "region_code": "KR-99"},
        "{not json",
        {"site_id": "Bad Id", "display_name_en": "Bad id", "country_code": "KR"},
        {"site_id": good2, "display_name_en": f"Import {good2}", "country_code": "KR",
         "region_code": "KR-43", "city": "Cheongju"},
        {"site_id": good, "display_name_en": "Duplicate id", "country_code": "KR"},
    )
    request = registry_pb2.ImportSitesRequest(content=content,
                                              format=registry_pb2.ImportSitesRequest.JSONL)
    error = await fails(reg.ImportSites(request, metadata=admin),
                        grpc.StatusCode.INVALID_ARGUMENT)
    found = violations(error)
    assert "content.line[2]" in " ".join(found) and any(
        k.startswith("content.line[3]") for k in found)
    assert "content.line[4].site_id" in found and "content.line[6].site_id" in found
    for site_id in (good, good2):
        await fails(get(shared_system, site_id), grpc.StatusCode.NOT_FOUND)

    request.allow_partial = True
    result = await reg.ImportSites(request, metadata=admin)
    assert result.created_count == 2 and sorted(result.created_sites) == sorted(
        [f"sites/{good}", f"sites/{good2}"])
    assert [(e.line, e.field) for e in result.errors][:1] == [(2, "region_code")] or (
        result.errors[0].line == 2)
    assert [e.line for e in result.errors] == [2, 3, 4, 6]
    imported = await get(shared_system, good)
    assert imported.display_name_ko == "가져온 병원"
    assert imported.mfds_designation_date == date_pb2.Date(year=2010, month=5, day=1)
    assert [e.action for e in (await audit(shared_system, good)).audit_entries] == ["IMPORT"]

    # Importing the same rows again changes nothing and is not an error.
    again = await reg.ImportSites(registry_pb2.ImportSitesRequest(
        content=jsonl(json.loads(content.decode().splitlines()[0]),
                      json.loads(content.decode().splitlines()[4])),
        format=registry_pb2.ImportSitesRequest.JSONL), metadata=admin)
    assert (again.created_count, again.unchanged_count, len(again.errors)) == (0, 2, 0)
    await assert_unchanged(shared_system, imported)


async def test_import_csv_and_refuses_what_it_cannot_read(shared_system: RunningSystem) -> None:
    reg, admin = shared_system.registry, shared_system.admin
    a, b = unique("csv"), unique("csv")
    csv_text = (
        "site_id,display_name_en,display_name_ko,country_code,region_code,city,"
        "therapeutic_areas,capabilities,principal_investigators\n"
        f"{a},CSV {a},씨에스브이 병원,KR,KR-47,Pohang,oncology;cardiology,phase-1-unit,"
        "Park Seojun: haematology; Choi Yuna\n"
        f'{b},"CSV {b}, Annex",,KR,KR-48,Changwon,neurology,,\n'
    )
    result = await reg.ImportSites(registry_pb2.ImportSitesRequest(
        content=csv_text.encode(), format=registry_pb2.ImportSitesRequest.CSV), metadata=admin)
    assert result.created_count == 2 and not result.errors
    site = await get(shared_system, a)
    assert list(site.therapeutic_areas) == ["oncology", "cardiology"]
    assert [(p.display_name, p.specialty) for p in site.principal_investigators] == [
        ("Park Seojun", "haematology"), ("Choi Yuna", "")]
    assert (await get(shared_system, b)).display_name_en == f"CSV {b}, Annex"

    bad_csv = (f"site_id,display_name_en,country_code,region_code\n"
               f"{unique('c')},Fine,KR,KR-11\n"
               f"{unique('c')},,KR,KR-11\n"
               f"{unique('c')},Too many,KR,KR-11,extra\n")
    error = await fails(reg.ImportSites(registry_pb2.ImportSitesRequest(
        content=bad_csv.encode(), format=registry_pb2.ImportSitesRequest.CSV), metadata=admin),
        grpc.StatusCode.INVALID_ARGUMENT)
    assert {"content.line[3].display_name_en", "content.line[4]"} <= set(violations(error))
    assert "Fine" not in {s.display_name_en for s in await list_all(shared_system, "Fine")}

    for content, fmt in [(b"", registry_pb2.ImportSitesRequest.JSONL),
                         (b'{"site_id": "x"}', registry_pb2.ImportSitesRequest.FORMAT_UNSPECIFIED),
                         (b"\xff\xfe not utf-8", registry_pb2.ImportSitesRequest.JSONL),
                         (b"no,header,of,sites\n1,2,3,4", registry_pb2.ImportSitesRequest.CSV)]:
        await fails(reg.ImportSites(registry_pb2.ImportSitesRequest(content=content, format=fmt),
                                    metadata=admin), grpc.StatusCode.INVALID_ARGUMENT)


# --- the other services keep up ---------------------------------------------------------


async def test_a_suspension_reaches_the_tracker_and_the_notifications(
        shared_system: RunningSystem) -> None:
    from sitenet.notifications.v1 import notifications_pb2
    from sitenet.startup.v1 import startup_pb2
    from tests.support.scenario import add_study_site, create_study

    system = shared_system
    site = await create_site(system, display_name_ko="상태 병원")
    first = await create_study(system)
    await add_study_site(system, first.name, site.name)  # the tracker's replica has the site
    await system.registry.SuspendSite(registry_pb2.SuspendSiteRequest(
        name=site.name, reason="IRB lapsed"), metadata=system.admin)

    # The replica learns the new status from SiteStatusChanged (eventually): then a
    # suspended site joins no study.
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        study = await create_study(system)
        try:
            await system.tracker.AddStudySite(startup_pb2.AddStudySiteRequest(
                parent=study.name, site=site.name), metadata=system.admin)
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc.details()
            assert "SUSPENDED" in (exc.details() or "")
            break
        assert asyncio.get_running_loop().time() < deadline, "the replica never caught up"
        await asyncio.sleep(0.2)

    stream = system.notifications.StreamNotifications(
        notifications_pb2.StreamNotificationsRequest(
            cursor="0", filter=notifications_pb2.NotificationFilter(
                sites=[site.name], event_types=["sitenet.events.v1.SiteStatusChanged"])),
        metadata=system.admin)
    try:
        notification = await asyncio.wait_for(stream.read(), timeout=10)
    finally:
        stream.cancel()
    assert notification.text_en == (
        f"Site {site.display_name_en} suspended (was active) (IRB lapsed)")
    assert notification.text_ko == "실시기관 상태 병원 일시 중지 (이전: 운영 중) (IRB lapsed)"


# --- the sample network and the CLI -----------------------------------------------------


async def cli(system: RunningSystem, *args: str) -> tuple[int, str]:
    """Run `sitenet ...` against the running registry (in a thread: the CLI blocks)."""
    from typer.testing import CliRunner

    from services.cli.main import app
    from tests.support.system import TEST_SECRET

    env = {"SITENET_REGISTRY_PORT": str(system.registry_app.server.port),
           "SITENET_JWT_SECRET": TEST_SECRET, "SITENET_DATA_DIR": str(system.settings.data_dir),
           "COLUMNS": "300", "SITENET_TOKEN": ""}
    result = await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)
    return result.exit_code, result.output


def test_the_sample_network_is_large_and_spread_enough() -> None:
    from services.common.geography import KR_REGIONS
    from services.site_registry.sample_data import kr_sites_path

    rows = [json.loads(line) for line in kr_sites_path().read_text("utf-8").splitlines()]
    assert len(rows) >= 40
    assert len({KR_REGIONS[r["region_code"]] for r in rows}) >= 12
    assert len({r["site_id"] for r in rows}) == len(rows)
    assert all(r["display_name_ko"] and r["display_name_en"] and r["city"] for r in rows)
    assert not any(r.get("mfds_designation_number") for r in rows)  # never invented


async def test_seed_loads_the_sample_network_once_and_the_cli_manages_it(
        shared_system: RunningSystem, tmp_path: Any) -> None:
    from services.site_registry.sample_data import kr_sites_path

    count = len(kr_sites_path().read_text("utf-8").splitlines())
    code, out = await cli(shared_system, "seed")
    assert code == 0, out
    assert f"{count} created, 0 already registered" in out
    code, out = await cli(shared_system, "seed")  # idempotent: adds nothing, fails nothing
    assert code == 0, out
    assert f"0 created, {count} already registered unchanged, 0 bad" in out

    assert {"sites/pnuh", "sites/dauh"} <= {
        s.name for s in await list_all(shared_system, 'region_code = "KR-26"')}
    assert "sites/snuh" in {s.name for s in await list_all(shared_system, "서울대학교병원")}
    assert "sites/cnuh-hwasun" in {s.name for s in await list_all(
        shared_system, 'capabilities:phase-1-unit AND region_code = "KR-46"')}

    code, out = await cli(shared_system, "sites", "list", "--filter",
                          'region_code = "KR-49" AND "제주대학교병원"')
    assert code == 0 and "Jeju National University Hospital" in out and "1 site(s)" in out
    code, out = await cli(shared_system, "sites", "suspend", "jnuh", "--reason", "relocation")
    assert code == 0 and "SUSPENDED — relocation" in out
    code, out = await cli(shared_system, "sites", "suspend", "jnuh", "--reason", "again")
    assert code == 1 and "FAILED_PRECONDITION" in out
    code, out = await cli(shared_system, "sites", "update", "jnuh", "--address",
                          "15 Aran 13-gil, Jeju-si", "--investigator", "Ko Hana: oncology",
                          "--reason", "address confirmed")
    assert code == 0 and "15 Aran 13-gil" in out and "Ko Hana (oncology)" in out, out
    code, out = await cli(shared_system, "sites", "show", "jnuh", "--audit")
    assert code == 0
    assert all(word in out for word in ("IMPORT", "SUSPEND", "UPDATE", "address confirmed"))
    new_id = unique("cli")
    code, out = await cli(shared_system, "sites", "create", new_id, "--name-en",
                          f"CLI {new_id}", "--name-ko", "명령 병원", "--region", "KR-11",
                          "--area", "oncology")
    assert code == 0 and f"sites/{new_id}" in out
    code, out = await cli(shared_system, "sites", "create", unique("cli"), "--name-en", "X",
                          "--region", "KR-99")
    assert code == 1 and "INVALID_ARGUMENT" in out and "KR-99" in out

    bad = tmp_path / "sites.csv"
    bad.write_text(f"site_id,display_name_en,country_code\n{unique('c')},Good,KR\n"
                   f"{unique('c')},Bad,ZZ\n", encoding="utf-8")
    code, out = await cli(shared_system, "sites", "import", str(bad))
    assert code == 1 and "content.line[3].country_code" in out
    code, out = await cli(shared_system, "sites", "import", str(bad), "--partial")
    assert code == 0 and "1 created" in out and "country_code" in out


def test_the_audit_trail_has_no_method_that_alters_or_deletes_it() -> None:
    service = registry_pb2.DESCRIPTOR.services_by_name["SiteRegistry"]
    touching = [m.name for m in service.methods if "Audit" in m.name]
    assert touching == ["ListSiteAuditEntries"]
