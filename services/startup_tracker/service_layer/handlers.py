"""The tracker's use cases: who may do what, the domain rules, one transaction each."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from services.common import filtering, paging
from services.common.errors import (
    AlreadyExists,
    EtagMismatch,
    FailedPrecondition,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
)
from services.common.identity import Principal, Role
from services.common.resource_names import check_id, new_id
from services.common.validation import build
from services.startup_tracker.domain.events import MilestoneRecorded, StudyCreated, StudySiteAdded
from services.startup_tracker.domain.model import (
    MilestoneChange,
    MilestoneRecord,
    SiteReplica,
    Study,
    StudyDetails,
    StudySite,
    record_milestone,
)
from services.startup_tracker.domain.templates import DEFAULT_TEMPLATE, MilestoneTemplate
from services.startup_tracker.service_layer.ports import TrackerUnitOfWork

STUDY_FILTER_FIELDS = ("sponsor_org", "phase", "therapeutic_area", "protocol_number",
                       "country_codes")
STUDY_SITE_FILTER_FIELDS = ("country_code", "region_code", "current_milestone", "site")

TEMPLATES = {DEFAULT_TEMPLATE.key: DEFAULT_TEMPLATE}


def template_of(study: Study) -> MilestoneTemplate:
    return TEMPLATES.get(study.template_key, DEFAULT_TEMPLATE)


def _milestone_dict(record: MilestoneRecord) -> dict[str, object]:
    return {
        "status": record.status.value if record.status else None,
        "baseline_date": record.baseline_date.isoformat() if record.baseline_date else None,
        "planned_date": record.planned_date.isoformat() if record.planned_date else None,
        "actual_date": record.actual_date.isoformat() if record.actual_date else None,
        "note": record.note,
    }


class StartupTrackerService:
    def __init__(self, unit_of_work: Callable[[], TrackerUnitOfWork],
                 clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self._uow = unit_of_work
        self._clock = clock

    # --- access -----------------------------------------------------------------------

    @staticmethod
    def _may_manage(principal: Principal, study: Study) -> bool:
        return principal.is_admin or (
            principal.role is Role.SPONSOR and principal.org == study.details.sponsor_org)

    async def _visible_study(self, uow: TrackerUnitOfWork, principal: Principal,
                             study_id: str) -> Study:
        """The study, or NOT_FOUND for one the caller may not see (never a hint it exists)."""
        study = await uow.studies.get(study_id)
        if study is None:
            raise NotFound(f"studies/{study_id}")
        if principal.may_read_study(study.details.sponsor_org):
            return study
        if principal.role is Role.SITE:
            for site_id in principal.sites:
                if await uow.study_sites.get(study_id, site_id) is not None:
                    return study
        raise NotFound(f"studies/{study_id}")

    @staticmethod
    def _check_study_site_visible(principal: Principal, study: Study, site_id: str) -> None:
        if principal.role is Role.SITE and site_id not in principal.sites:
            raise NotFound(f"studies/{study.study_id}/sites/{site_id}")

    # --- studies ----------------------------------------------------------------------

    async def create_study(self, principal: Principal, details: dict[str, Any], study_id: str,
                           request_id: str = "") -> Study:
        if principal.role not in (Role.ADMIN, Role.SPONSOR):
            raise PermissionDenied("only an admin or a sponsor may create studies")
        study_id = check_id(study_id, "study_id") if study_id else new_id("study")
        if principal.role is Role.SPONSOR and not details.get("sponsor_org"):
            details = {**details, "sponsor_org": principal.org}
        valid = build(StudyDetails, details, prefix="study")
        if principal.role is Role.SPONSOR and valid.sponsor_org != principal.org:
            raise PermissionDenied("a sponsor may create studies only for its own organisation")
        async with self._uow() as uow:
            if request_id and (earlier := await uow.requests.seen(request_id)):
                study = await uow.studies.get(earlier.removeprefix("studies/"))
                if study is not None:
                    return study
            if await uow.studies.get(study_id) is not None:
                raise AlreadyExists(f"studies/{study_id}")
            twin = await uow.studies.find_by_protocol(valid.sponsor_org, valid.protocol_number)
            if twin is not None:
                raise AlreadyExists(twin.name, f"protocol {valid.protocol_number} of "
                                               f"{valid.sponsor_org} is already {twin.name}")
            now = self._clock()
            study = Study(study_id=study_id, details=valid, template_key=DEFAULT_TEMPLATE.key,
                          create_time=now, update_time=now)
            await uow.studies.add(study)
            if request_id:
                await uow.requests.remember(request_id, study.name)
            uow.emit(StudyCreated(study=study, actor=principal))
            await uow.commit()
            return study

    async def get_study(self, principal: Principal, study_id: str) -> Study:
        async with self._uow() as uow:
            return await self._visible_study(uow, principal, study_id)

    async def list_studies(self, principal: Principal, page_size: int, page_token: str,
                           filter_text: str) -> tuple[list[Study], str]:
        size = paging.page_size(page_size)
        where = filtering.parse(filter_text, dict.fromkeys(STUDY_FILTER_FIELDS))
        after = paging.decode_token(page_token, filter_text)
        org = principal.org if principal.role is Role.SPONSOR else None
        sites = principal.sites if principal.role is Role.SITE else None
        async with self._uow() as uow:
            studies = await uow.studies.list(after, size + 1, where, org, sites)
        more = len(studies) > size
        studies = studies[:size]
        return studies, paging.encode_token(studies[-1].study_id, filter_text) if more else ""

    # --- study-sites ------------------------------------------------------------------

    async def add_study_site(self, principal: Principal, study_id: str, site_id: str,
                             request_id: str = "") -> tuple[Study, StudySite]:
        async with self._uow() as uow:
            study = await self._visible_study(uow, principal, study_id)
            if not self._may_manage(principal, study):
                raise PermissionDenied("only an admin or the study's sponsor may add sites")
            if request_id and (earlier := await uow.requests.seen(request_id)):
                existing = await uow.study_sites.get(study_id, earlier.rsplit("/", 1)[-1])
                if existing is not None:
                    return study, existing
            if await uow.study_sites.get(study_id, site_id) is not None:
                raise AlreadyExists(f"studies/{study_id}/sites/{site_id}")
            site = await uow.sites.get(site_id)
            if site is None:
                raise NotFound(f"sites/{site_id}")
            if site.status != "ACTIVE":
                raise FailedPrecondition([PreconditionViolation(
                    "SITE_STATUS", site.name,
                    f"{site.name} is {site.status}; only an active site can join a study")])
            countries = study.details.country_codes
            if countries and site.country_code not in countries:
                raise FailedPrecondition([PreconditionViolation(
                    "SITE_COUNTRY", site.name,
                    f"{site.name} is in {site.country_code}, which is not among the study's "
                    f"countries ({', '.join(countries)})")])
            now = self._clock()
            study_site = StudySite(study_id=study_id, site=site, create_time=now,
                                   update_time=now)
            await uow.study_sites.add(study_site)
            if request_id:
                await uow.requests.remember(request_id, study_site.name)
            uow.emit(StudySiteAdded(study=study, study_site=study_site, actor=principal))
            await uow.commit()
            return study, study_site

    async def get_study_site(self, principal: Principal, study_id: str,
                             site_id: str) -> tuple[Study, StudySite]:
        async with self._uow() as uow:
            study = await self._visible_study(uow, principal, study_id)
            self._check_study_site_visible(principal, study, site_id)
            study_site = await uow.study_sites.get(study_id, site_id)
        if study_site is None:
            raise NotFound(f"studies/{study_id}/sites/{site_id}")
        return study, study_site

    async def list_study_sites(self, principal: Principal, study_id: str, page_size: int,
                               page_token: str, filter_text: str
                               ) -> tuple[Study, list[StudySite], str]:
        size = paging.page_size(page_size)
        where = filtering.parse(filter_text, dict.fromkeys(STUDY_SITE_FILTER_FIELDS))
        query = f"{study_id}|{filter_text}"
        after = paging.decode_token(page_token, query)
        sites = principal.sites if principal.role is Role.SITE else None
        async with self._uow() as uow:
            study = await self._visible_study(uow, principal, study_id)
            rows = await uow.study_sites.list(study_id, after, size + 1, where, sites)
        more = len(rows) > size
        rows = rows[:size]
        return study, rows, paging.encode_token(rows[-1].site.site_id, query) if more else ""

    async def record_milestone(self, principal: Principal, study_id: str, site_id: str,
                               key: str, change: MilestoneChange, request_id: str = ""
                               ) -> tuple[Study, StudySite, str]:
        if principal.role is Role.OPS:
            raise PermissionDenied("ops tokens read; they do not record milestones")
        async with self._uow() as uow:
            study = await self._visible_study(uow, principal, study_id)
            self._check_study_site_visible(principal, study, site_id)
            if principal.role is Role.SPONSOR and not self._may_manage(principal, study):
                raise PermissionDenied("a sponsor records milestones of its own studies only")
            current = await uow.study_sites.get(study_id, site_id)
            if current is None:
                raise NotFound(f"studies/{study_id}/sites/{site_id}")
            if request_id and await uow.requests.seen(request_id):
                return study, current, key
            now = self._clock()
            today = now.astimezone(ZoneInfo(current.site.time_zone or "UTC")).date()
            template = template_of(study)
            updated, before, after = record_milestone(current, template, key, change, today, now)
            if not await uow.study_sites.save(updated, expected_version=current.version):
                raise EtagMismatch(current.name)
            await uow.history.append(updated, key, _milestone_dict(before),
                                     _milestone_dict(after), principal.subject,
                                     principal.role.value, change.reason)
            if request_id:
                await uow.requests.remember(request_id, f"{updated.name}/milestones/{key}")
            definition = template.get(key)
            assert definition is not None
            uow.emit(MilestoneRecorded(study=study, study_site=updated, definition=definition,
                                       before=before, after=after, actor=principal,
                                       reason=change.reason))
            await uow.commit()
            return study, updated, key

    # --- the registry's sites ---------------------------------------------------------

    async def apply_site(self, event_id: str, ce_type: str, site: SiteReplica) -> bool:
        """Keep the replica of a registry site; a replayed or older event changes nothing."""
        async with self._uow() as uow:
            if not await uow.inbox.claim(event_id, ce_type):
                return False
            await uow.sites.upsert(site)
            await uow.commit()
            return True
