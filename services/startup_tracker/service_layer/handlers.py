"""The tracker's use cases: who may do what, the domain rules, one transaction each."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from services.common import filtering, paging
from services.common.errors import (
    AlreadyExists,
    EtagMismatch,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    PreconditionViolation,
)
from services.common.geography import date_at
from services.common.identity import Principal, Role
from services.common.resource_names import check_id, new_id
from services.common.validation import build, check_reason, violations_from
from services.startup_tracker.domain.documents import (
    GREENLIGHT_MILESTONE,
    DocumentChange,
    DocumentStatus,
    DocumentTemplate,
    DocumentType,
    Missing,
    Provider,
    SiteDocument,
    check_skip,
    complete_on,
    document_template,
    missing,
    new_checklist,
    record_document,
)
from services.startup_tracker.domain.events import (
    CountryApprovalRecorded,
    DocumentReminder,
    DocumentStatusRecorded,
    GreenlightChanged,
    MilestoneRecorded,
    ReminderKind,
    StudyCreated,
    StudySiteActivated,
    StudySiteAdded,
    StudySiteFlagged,
    StudyUpdated,
)
from services.startup_tracker.domain.model import (
    ApprovalChange,
    CountryApproval,
    HistoryEntry,
    MilestoneChange,
    MilestoneRecord,
    MilestoneStatus,
    SiteReplica,
    Study,
    StudyDetails,
    StudySite,
    StudySiteStatus,
    apply_greenlight,
    record_country_approval,
    record_milestone,
)
from services.startup_tracker.domain.summary import (
    DocumentSummary,
    SiteChecklist,
    Summary,
    summarise,
    summarise_documents,
)
from services.startup_tracker.domain.templates import (
    MilestoneTemplate,
    TemplateChoice,
    regulator_of,
    template_for,
)
from services.startup_tracker.service_layer.ports import TrackerUnitOfWork

STUDY_FILTER_FIELDS = ("sponsor_org", "phase", "therapeutic_area", "protocol_number",
                       "country_codes")
# Evaluated in memory over a study's sites (a study has hundreds, not millions): status and
# overdue depend on today's date at each site, which no column holds.
STUDY_SITE_FILTER_FIELDS = ("status", "current_milestone", "country_code", "region_code",
                            "site", "overdue", "flagged", "greenlight_withdrawn")
UPDATABLE_STUDY_FIELDS = ("title", "protocol_number", "phase", "therapeutic_area",
                          "country_codes", "target_activation_date", "target_active_sites")
# Who the periodic document check acts as, in the audit trail and the events.
SYSTEM = Principal(subject="system:document-check", role=Role.ADMIN)
DEFAULT_DUE_WITHIN_DAYS = 30
MAX_DUE_WITHIN_DAYS = 366


@dataclass(frozen=True)
class SiteFacts:
    status: StudySiteStatus
    today: dt.date
    overdue: bool
    planned_activation_date: dt.date | None


def template_of(study: Study) -> MilestoneTemplate:
    return template_for(study.template_choice)


def _study_dict(study: Study) -> dict[str, object]:
    return study.details.model_dump(mode="json")


def _approval_dict(approval: CountryApproval) -> dict[str, object]:
    return {
        "status": approval.status.value if approval.status else None,
        "authority": approval.authority,
        "submitted_date": approval.submitted_date.isoformat() if approval.submitted_date
        else None,
        "decision_date": approval.decision_date.isoformat() if approval.decision_date else None,
        "reference": approval.reference, "note": approval.note,
    }


def document_template_of(study: Study, study_site: StudySite) -> DocumentTemplate:
    return document_template(study_site.site.country_code, study.template_choice.skip_documents)


def checklist(template: DocumentTemplate, stored: dict[str, SiteDocument],
              study_site: StudySite) -> dict[str, SiteDocument]:
    """Every document of the template, in order: a site added before documents were
    tracked has its expected ones from the day it joined."""
    return {d.key: stored.get(d.key) or SiteDocument(key=d.key,
                                                     expected_time=study_site.create_time)
            for d in template.documents}


def _document_dict(doc: SiteDocument) -> dict[str, object]:
    return {"status": doc.status.value, "version": doc.version, "uri": doc.uri,
            "content_hash": doc.content_hash,
            "expiry_date": doc.expiry_date.isoformat() if doc.expiry_date else None,
            "status_date": doc.status_date.isoformat() if doc.status_date else None,
            "reason": doc.reason, "note": doc.note}


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
        self.clock = clock  # public so a test can pin "today" in a running system

    def today_at(self, site: SiteReplica) -> dt.date:
        """Today in the site's time zone (dates are the site's calendar dates)."""
        return date_at(self.clock(), site.time_zone)

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
                           request_id: str = "",
                           choice: TemplateChoice = TemplateChoice(),
                           reason: str = "") -> Study:
        if principal.role not in (Role.ADMIN, Role.SPONSOR):
            raise PermissionDenied("only an admin or a sponsor may create studies")
        study_id = check_id(study_id, "study_id") if study_id else new_id("study")
        reason = check_reason(reason)
        if principal.role is Role.SPONSOR and not details.get("sponsor_org"):
            details = {**details, "sponsor_org": principal.org}
        valid = build(StudyDetails, details, prefix="study")
        try:
            template = template_for(choice)
        except ValueError as exc:
            raise InvalidArgument([FieldViolation("study.template", str(exc))]) from exc
        if unknown := check_skip(choice.skip_documents):
            raise InvalidArgument([FieldViolation(
                "study.template.skip_documents",
                f"not essential documents of any template: {', '.join(unknown)}")])
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
            now = self.clock()
            study = Study(study_id=study_id, details=valid, template_key=template.key,
                          template_choice=choice, create_time=now, update_time=now)
            await uow.studies.add(study)
            # The record starts with the study itself (ICH E6(R3): who created it, when).
            await uow.history.append(study_id, "", "study", {}, _study_dict(study),
                                     principal.subject, principal.role.value, reason, now)
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
                             request_id: str = "", reason: str = "") -> tuple[Study, StudySite]:
        reason = check_reason(reason)
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
            now = self.clock()
            study_site = StudySite(study_id=study_id, site=site, create_time=now,
                                   update_time=now)
            await uow.study_sites.add(study_site)
            await uow.history.append(study_id, site_id, "study-site", {},
                                     {"site": site.name, "country_code": site.country_code,
                                      "region_code": site.region_code},
                                     principal.subject, principal.role.value, reason, now)
            for doc in new_checklist(document_template_of(study, study_site), now).values():
                await uow.documents.put(study_id, site_id, doc)
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

    def site_facts(self, study: Study, study_site: StudySite) -> SiteFacts:
        """What the API shows about a study-site that depends on today."""
        template = template_of(study)
        today = self.today_at(study_site.site)
        return SiteFacts(status=study_site.status(), today=today,
                         overdue=bool(study_site.overdue(template, today)),
                         planned_activation_date=study_site.planned_activation_date(template))

    def _filter_values(self, study: Study,
                       study_site: StudySite) -> dict[str, str | tuple[str, ...]]:
        facts = self.site_facts(study, study_site)
        site = study_site.site
        return {"status": facts.status.value, "current_milestone": study_site.current,
                "country_code": site.country_code, "region_code": site.region_code,
                "site": (site.site_id, site.name),
                "overdue": "true" if facts.overdue else "false",
                "flagged": "true" if study_site.flagged else "false",
                "greenlight_withdrawn": "true" if study_site.greenlight_withdrawn else "false"}

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
            everything = await uow.study_sites.all_of_study(study_id, sites)
        rows = [r for r in everything
                if (after is None or r.site.site_id > after)
                and filtering.matches(where, self._filter_values(study, r))][:size + 1]
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
            now = self.clock()
            today = self.today_at(current.site)
            template = template_of(study)
            approval = await uow.approvals.get(study_id, current.site.country_code)
            updated, before, after = record_milestone(current, template, key, change, today, now,
                                                      approval)
            # The greenlight may have waited only for this milestone (IRB, contract). Other
            # milestones cannot grant it (documents change through their own RPCs, which
            # derive it again), so their writes skip loading the checklist.
            greenlight = template.get(GREENLIGHT_MILESTONE)
            if greenlight is not None and key in (*greenlight.prerequisites,
                                                  GREENLIGHT_MILESTONE):
                updated = await self._sync_greenlight(uow, study, updated, today, now,
                                                      principal, may_withdraw=False)
            if not await uow.study_sites.save(updated, expected_version=current.version):
                raise EtagMismatch(current.name)
            await uow.history.append(study_id, site_id, key, _milestone_dict(before),
                                     _milestone_dict(after), principal.subject,
                                     principal.role.value, change.reason, now)
            if request_id:
                await uow.requests.remember(request_id, f"{updated.name}/milestones/{key}")
            definition = template.get(key)
            assert definition is not None
            uow.emit(MilestoneRecorded(study=study, study_site=updated, definition=definition,
                                       before=before, after=after, actor=principal,
                                       reason=change.reason))
            if key == "site-activated" and updated.done(key) and after.actual_date and (
                    not current.done(key) or before.actual_date != after.actual_date):
                uow.emit(StudySiteActivated(study=study, study_site=updated,
                                            activation_date=after.actual_date, actor=principal))
            await uow.commit()
            return study, updated, key

    async def list_milestone_history(self, principal: Principal, study_id: str, site_id: str,
                                     page_size: int, page_token: str
                                     ) -> tuple[list[HistoryEntry], str]:
        size = paging.page_size(page_size)
        query = f"history|{study_id}|{site_id}"
        after = paging.decode_token(page_token, query)
        if after is not None and not after.isdigit():
            raise InvalidArgument([FieldViolation("page_token",
                                                  "is not a token this list returned")])
        async with self._uow() as uow:
            study = await self._visible_study(uow, principal, study_id)
            if not site_id:  # study-level entries: for those who may read the whole study
                if not principal.may_read_study(study.details.sponsor_org):
                    raise NotFound(study.name)
            else:
                self._check_study_site_visible(principal, study, site_id)
                if await uow.study_sites.get(study_id, site_id) is None:
                    raise NotFound(f"studies/{study_id}/sites/{site_id}")
            entries = await uow.history.list(study_id, site_id,
                                             int(after) if after else None, size + 1)
        more = len(entries) > size
        entries = entries[:size]
        return entries, paging.encode_token(str(entries[-1].entry_id), query) if more else ""

    # --- study changes and country approvals ------------------------------------------

    async def update_study(self, principal: Principal, study_id: str, values: dict[str, Any],
                           mask: list[str], etag: str, request_id: str = "",
                           reason: str = "") -> Study:
        reason = check_reason(reason)
        paths = list(UPDATABLE_STUDY_FIELDS) if mask == ["*"] else mask
        if not paths:
            raise InvalidArgument([FieldViolation("update_mask", "name at least one field")])
        unknown = [p for p in paths if p not in UPDATABLE_STUDY_FIELDS]
        if unknown:
            raise InvalidArgument([FieldViolation(
                "update_mask", f"{p!r} cannot be updated; updatable: "
                               f"{', '.join(UPDATABLE_STUDY_FIELDS)}") for p in unknown])
        async with self._uow() as uow:
            current = await self._visible_study(uow, principal, study_id)
            if not self._may_manage(principal, current):
                raise PermissionDenied("only an admin or the study's sponsor may change it")
            if request_id and await uow.requests.seen(request_id):
                return current
            if etag and etag != current.etag:
                raise EtagMismatch(current.name)
            merged = {**current.details.model_dump(), **{p: values.get(p) for p in paths}}
            try:
                details = StudyDetails.model_validate(merged)
            except ValidationError as exc:
                raise InvalidArgument(violations_from(exc, "study")) from exc
            changed = tuple(p for p in UPDATABLE_STUDY_FIELDS
                            if getattr(details, p) != getattr(current.details, p))
            if not changed:
                return current
            if "protocol_number" in changed:
                twin = await uow.studies.find_by_protocol(details.sponsor_org,
                                                          details.protocol_number)
                if twin is not None and twin.study_id != study_id:
                    raise AlreadyExists(twin.name, f"protocol {details.protocol_number} of "
                                                   f"{details.sponsor_org} is already {twin.name}")
            if "country_codes" in changed and details.country_codes:
                dropped = set(current.details.country_codes) - set(details.country_codes)
                in_use = sorted({s.site.country_code
                                 for s in await uow.study_sites.all_of_study(study_id, None)}
                                & dropped)
                if in_use:
                    raise FailedPrecondition([PreconditionViolation(
                        "STUDY_COUNTRY", f"studies/{study_id}",
                        f"the study has sites in {c}; it cannot be dropped") for c in in_use])
            now = self.clock()
            updated = current.model_copy(update={"details": details,
                                                 "version": current.version + 1,
                                                 "update_time": now})
            if not await uow.studies.save(updated, expected_version=current.version):
                raise EtagMismatch(current.name)
            await uow.history.append(study_id, "", "study", _study_dict(current),
                                     _study_dict(updated), principal.subject,
                                     principal.role.value, reason, now)
            if request_id:
                await uow.requests.remember(request_id, updated.name)
            uow.emit(StudyUpdated(study=updated, before=current, changed_fields=changed,
                                  actor=principal, reason=reason))
            await uow.commit()
            return updated

    async def country_approvals(self, principal: Principal,
                                study: Study) -> list[CountryApproval]:
        async with self._uow() as uow:
            return await uow.approvals.of_study(study.study_id)

    async def record_country_approval(self, principal: Principal, study_id: str, country: str,
                                      change: ApprovalChange, request_id: str = ""
                                      ) -> CountryApproval:
        country = country.upper()
        async with self._uow() as uow:
            study = await self._visible_study(uow, principal, study_id)
            if not self._may_manage(principal, study):
                raise PermissionDenied("only an admin or the study's sponsor records a "
                                       "country's regulatory approval")
            before = await uow.approvals.get(study_id, country) or CountryApproval(
                country_code=country, authority=regulator_of(country))
            if request_id and await uow.requests.seen(request_id):
                return before
            now = self.clock()
            in_country = [s for s in await uow.study_sites.all_of_study(study_id, None)
                          if s.site.country_code == country]
            activated = [s for s in in_country if s.done("site-activated")]
            # The country's calendar: its sites' time zone (as the registry set it), else
            # Seoul for KR, else UTC.
            zone = next((s.site.time_zone for s in in_country if s.site.time_zone),
                        "Asia/Seoul" if country == "KR" else "UTC")
            today = date_at(now, zone)
            after = record_country_approval(study, country, before, change, today, now,
                                            activated)
            await uow.approvals.put(study_id, after)
            await uow.history.append(study_id, "", f"country-approval/{country}",
                                     _approval_dict(before), _approval_dict(after),
                                     principal.subject, principal.role.value, change.reason, now)
            if request_id:
                await uow.requests.remember(request_id, f"{study.name}/countries/{country}")
            uow.emit(CountryApprovalRecorded(study=study, before=before, after=after,
                                             actor=principal, reason=change.reason))
            await uow.commit()
            return after

    # --- the sponsor's view -----------------------------------------------------------

    async def activation_summary(self, principal: Principal, study_id: str,
                                 due_within_days: int) -> tuple[Study, Summary, int]:
        if due_within_days < 0 or due_within_days > MAX_DUE_WITHIN_DAYS:
            raise InvalidArgument([FieldViolation(
                "due_within_days", f"must be 0 to {MAX_DUE_WITHIN_DAYS} (0 means "
                                   f"{DEFAULT_DUE_WITHIN_DAYS})")])
        window = due_within_days or DEFAULT_DUE_WITHIN_DAYS
        sites = principal.sites if principal.role is Role.SITE else None
        async with self._uow() as uow:
            study = await self._visible_study(uow, principal, study_id)
            rows = await uow.study_sites.all_of_study(study_id, sites)
        summary = summarise(rows, template_of(study), lambda s: self.today_at(s.site), window)
        return study, summary, window

    async def document_summary(self, principal: Principal, study_id: str
                               ) -> tuple[Study, DocumentSummary]:
        sites = principal.sites if principal.role is Role.SITE else None
        async with self._uow() as uow:
            study = await self._visible_study(uow, principal, study_id)
            rows = await uow.study_sites.all_of_study(study_id, sites)
            stored = await uow.documents.of_study(study_id)
            approved = {a.country_code for a in await uow.approvals.of_study(study_id)
                        if a.approved}
        lists = []
        for row in rows:
            template = document_template_of(study, row)
            lists.append(SiteChecklist(
                study_site=row, template=template,
                documents=checklist(template, stored.get(row.site.site_id, {}), row),
                today=self.today_at(row.site),
                country_approved=row.site.country_code in approved))
        return study, summarise_documents(lists)

    # --- the registry's sites ---------------------------------------------------------

    async def apply_site(self, event_id: str, ce_type: str, site: SiteReplica) -> bool:
        """Keep the replica of a registry site; a replayed or older event changes nothing."""
        async with self._uow() as uow:
            if not await uow.inbox.claim(event_id, ce_type):
                return False
            if await uow.sites.upsert(site):
                await self._flag_study_sites(uow, site)
            await uow.commit()
            return True

    async def _flag_study_sites(self, uow: TrackerUnitOfWork, site: SiteReplica) -> None:
        """A site suspended or closed in the registry is flagged in every study it is in."""
        flagged = site.status != "ACTIVE"
        reason = f"site {site.status} in the registry" if flagged else ""
        now = self.clock()
        for study_site in await uow.study_sites.of_site(site.site_id):
            if study_site.flagged == flagged:
                continue
            study = await uow.studies.get(study_site.study_id)
            assert study is not None
            updated = replace(study_site, flagged=flagged, flag_reason=reason,
                              version=study_site.version + 1, update_time=now)
            if not await uow.study_sites.save(updated, expected_version=study_site.version):
                raise EtagMismatch(study_site.name)  # retried: the event is not yet claimed
            uow.emit(StudySiteFlagged(study=study, study_site=updated))

    # --- essential documents and the greenlight ----------------------------------------

    async def _sync_greenlight(self, uow: TrackerUnitOfWork, study: Study,
                               study_site: StudySite, today: dt.date, now: dt.datetime,
                               principal: Principal, may_withdraw: bool = True,
                               docs: dict[str, SiteDocument] | None = None) -> StudySite:
        """Derive essential-documents-complete from the checklist, with its audit entry
        and events; the caller saves the study-site."""
        template = document_template_of(study, study_site)
        if docs is None:
            docs = checklist(template, await uow.documents.of_site(
                study.study_id, study_site.site.site_id), study_site)
        gaps = missing(template, docs, today)
        why = "; ".join(f"{m.key} {m.why}" for m in gaps)
        if gaps and not may_withdraw:
            return study_site
        milestones = template_of(study)
        result = apply_greenlight(study_site, milestones, complete_on(template, docs, today),
                                  why, now)
        if result is None:
            return study_site
        updated, before, after = result
        granted = after.status is MilestoneStatus.DONE
        reason = "derived: all required documents approved" if granted else \
            f"derived: greenlight withdrawn ({why})"
        await uow.history.append(study.study_id, study_site.site.site_id, GREENLIGHT_MILESTONE,
                                 _milestone_dict(before), _milestone_dict(after),
                                 principal.subject, principal.role.value, reason, now)
        definition = milestones.get(GREENLIGHT_MILESTONE)
        assert definition is not None
        uow.emit(MilestoneRecorded(study=study, study_site=updated, definition=definition,
                                   before=before, after=after, actor=principal, reason=reason))
        uow.emit(GreenlightChanged(study=study, study_site=updated, granted=granted,
                                   on=after.actual_date, missing=tuple(gaps), reason=reason))
        return updated

    async def list_site_documents(self, principal: Principal, study_id: str, site_id: str
                                  ) -> tuple[Study, StudySite, DocumentTemplate,
                                             dict[str, SiteDocument]]:
        async with self._uow() as uow:
            study = await self._visible_study(uow, principal, study_id)
            self._check_study_site_visible(principal, study, site_id)
            study_site = await uow.study_sites.get(study_id, site_id)
            if study_site is None:
                raise NotFound(f"studies/{study_id}/sites/{site_id}")
            template = document_template_of(study, study_site)
            docs = checklist(template, await uow.documents.of_site(study_id, site_id),
                             study_site)
        return study, study_site, template, docs

    async def missing_documents(self, principal: Principal, study: Study,
                                study_site: StudySite) -> list[Missing]:
        """What still stands between the site and its greenlight, by document."""
        _, _, template, docs = await self.list_site_documents(
            principal, study.study_id, study_site.site.site_id)
        return missing(template, docs, self.today_at(study_site.site))

    async def record_document_status(self, principal: Principal, study_id: str, site_id: str,
                                     key: str, change: DocumentChange, request_id: str = ""
                                     ) -> tuple[StudySite, DocumentType, SiteDocument]:
        if principal.role is Role.OPS:
            raise PermissionDenied("ops tokens read; they do not record documents")
        async with self._uow() as uow:
            study = await self._visible_study(uow, principal, study_id)
            self._check_study_site_visible(principal, study, site_id)
            reviewing = change.status in (DocumentStatus.APPROVED, DocumentStatus.REJECTED)
            if reviewing and not self._may_manage(principal, study):
                raise PermissionDenied("only the study's sponsor (or an admin) approves or "
                                       "rejects documents")
            if principal.role is Role.SPONSOR and not self._may_manage(principal, study):
                raise PermissionDenied("a sponsor records documents of its own studies only")
            current = await uow.study_sites.get(study_id, site_id)
            if current is None:
                raise NotFound(f"studies/{study_id}/sites/{site_id}")
            template = document_template_of(study, current)
            document = template.get(key)
            name = f"{current.name}/documents/{key}"
            if document is None:
                raise NotFound(name)
            if principal.role is Role.SITE and document.provider is Provider.SPONSOR:
                raise PermissionDenied(f"{key} is provided by the sponsor, not the site")
            docs = checklist(template, await uow.documents.of_site(study_id, site_id), current)
            if request_id and await uow.requests.seen(request_id):
                return current, document, docs[key]
            now = self.clock()
            today = self.today_at(current.site)
            before = docs[key]
            after = record_document(name, document, before, change, today, now,
                                    principal.subject)
            docs[key] = after
            await uow.documents.put(study_id, site_id, after)
            await uow.history.append(study_id, site_id, f"document/{key}",
                                     _document_dict(before), _document_dict(after),
                                     principal.subject, principal.role.value, change.reason, now)
            updated = replace(current, version=current.version + 1, update_time=now)
            # The document's event goes before the greenlight it causes, in outbox order.
            uow.emit(DocumentStatusRecorded(study=study, study_site=updated, document=document,
                                            before=before, after=after, actor=principal))
            updated = await self._sync_greenlight(uow, study, updated, today, now, principal,
                                                  docs=docs)
            if not await uow.study_sites.save(updated, expected_version=current.version):
                raise EtagMismatch(current.name)
            if request_id:
                await uow.requests.remember(request_id, name)
            await uow.commit()
            return updated, document, after

    async def check_documents(self, expiring_within_days: int,
                              outstanding_after_days: int) -> int:
        """Raise each reminder once (expiring soon, expired, outstanding too long) and
        withdraw the greenlight of sites whose required document expired. Returns the
        number of reminders raised. One transaction per study."""
        async with self._uow() as uow:
            study_ids = await uow.documents.study_ids()
        raised = 0
        for study_id in study_ids:
            async with self._uow() as uow:
                study = await uow.studies.get(study_id)
                if study is None:
                    continue
                stored = await uow.documents.of_study(study_id)
                now = self.clock()
                for study_site in await uow.study_sites.all_of_study(study_id, None):
                    today = self.today_at(study_site.site)
                    template = document_template_of(study, study_site)
                    docs = checklist(template, stored.get(study_site.site.site_id, {}),
                                     study_site)
                    for document in template.documents:
                        for kind, occasion, days in _reminders(
                                docs[document.key], today, expiring_within_days,
                                outstanding_after_days):
                            if await uow.documents.claim_reminder(
                                    study_id, study_site.site.site_id, document.key, kind,
                                    occasion, now):
                                uow.emit(DocumentReminder(
                                    study=study, study_site=study_site, document=document,
                                    state=docs[document.key], kind=kind, days=days))
                                raised += 1
                    updated = await self._sync_greenlight(uow, study, study_site, today, now,
                                                          SYSTEM, docs=docs)
                    if updated is not study_site:
                        updated = replace(updated, version=study_site.version + 1)
                        if not await uow.study_sites.save(
                                updated, expected_version=study_site.version):
                            raise EtagMismatch(study_site.name)  # the next check retries
                await uow.commit()
        return raised


def _reminders(doc: SiteDocument, today: dt.date, expiring_within_days: int,
               outstanding_after_days: int) -> list[tuple[str, str, int]]:
    """(kind, occasion, days) of the reminders `doc` calls for today."""
    out = []
    if doc.status is DocumentStatus.APPROVED and doc.expiry_date is not None:
        left = (doc.expiry_date - today).days
        if left <= 0:
            out.append((ReminderKind.EXPIRED, doc.expiry_date.isoformat(), left))
        elif left <= expiring_within_days:
            out.append((ReminderKind.EXPIRING, doc.expiry_date.isoformat(), left))
    if doc.status in (DocumentStatus.EXPECTED, DocumentStatus.REJECTED):
        since = doc.status_date or (doc.expected_time.date() if doc.expected_time else None)
        if since is not None and (days := (today - since).days) >= outstanding_after_days:
            out.append((ReminderKind.OUTSTANDING, f"{doc.status.value}:{since.isoformat()}",
                        days))
    return out
