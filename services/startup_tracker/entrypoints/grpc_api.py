"""`sitenet.startup.v1.StartupTracker` over gRPC."""

from __future__ import annotations

import datetime as dt
from typing import Any

import grpc
from google.type import date_pb2

from services.common.errors import FieldViolation, InvalidArgument
from services.common.resource_names import parse
from services.common.rpc.convert import date_message, date_value, timestamp
from services.common.rpc.interceptors import current_principal
from services.startup_tracker.domain.documents import (
    DocumentChange,
    DocumentStatus,
    DocumentType,
    Missing,
    Provider,
    SiteDocument,
)
from services.startup_tracker.domain.model import (
    ApprovalChange,
    CountryApproval,
    HistoryEntry,
    MilestoneChange,
    MilestoneStatus,
    Study,
    StudySite,
    slip_days,
)
from services.startup_tracker.domain.summary import DocumentSummary, Group, Summary
from services.startup_tracker.domain.templates import (
    MilestoneDefinition,
    TemplateChoice,
    regulator_of,
)
from services.startup_tracker.service_layer.handlers import (
    SiteFacts,
    StartupTrackerService,
    template_of,
)
from sitenet.startup.v1 import startup_pb2, startup_pb2_grpc


def _set_date(message: Any, field: str, value: dt.date | None) -> None:
    if value is not None:
        getattr(message, field).CopyFrom(date_message(value))


def definition_message(m: MilestoneDefinition) -> startup_pb2.MilestoneDefinition:
    return startup_pb2.MilestoneDefinition(
        milestone=m.key, display_name=m.display_name, display_name_ko=m.display_name_ko,
        prerequisites=list(m.prerequisites), target_days=m.target_days or 0,
        has_target=m.target_days is not None)


def approval_message(study: Study, a: CountryApproval) -> startup_pb2.CountryApproval:
    message = startup_pb2.CountryApproval(
        name=f"{study.name}/countries/{a.country_code}", country_code=a.country_code,
        authority=a.authority,
        status=startup_pb2.MilestoneStatus.Value(
            a.status.value if a.status else "MILESTONE_STATUS_UNSPECIFIED"),
        reference=a.reference, note=a.note)
    _set_date(message, "submitted_date", a.submitted_date)
    _set_date(message, "decision_date", a.decision_date)
    if a.update_time is not None:
        message.update_time.CopyFrom(timestamp(a.update_time))
    return message


def study_message(study: Study,
                  approvals: list[CountryApproval] | None = None) -> startup_pb2.Study:
    d = study.details
    c = study.template_choice
    message = startup_pb2.Study(
        name=study.name, protocol_number=d.protocol_number, title=d.title,
        sponsor_org=d.sponsor_org, phase=startup_pb2.Phase.Value(d.phase.value),
        therapeutic_area=d.therapeutic_area, country_codes=list(d.country_codes),
        create_time=timestamp(study.create_time), update_time=timestamp(study.update_time),
        etag=study.etag, target_active_sites=d.target_active_sites,
        template=startup_pb2.TemplateChoice(
            skip_milestones=list(c.skip), target_days=dict(c.target_days),
            extra_milestones=[definition_message(m) for m in c.extra],
            skip_documents=list(c.skip_documents)),
        milestone_definitions=[definition_message(m) for m in template_of(study).milestones],
        country_approvals=[approval_message(study, a) for a in approvals or []])
    _set_date(message, "target_activation_date", d.target_activation_date)
    return message


def milestone_message(study: Study, study_site: StudySite, key: str,
                      today: dt.date) -> startup_pb2.Milestone:
    template = template_of(study)
    definition = template.get(key)
    assert definition is not None
    record = study_site.milestone(key)
    planned_slip, actual_slip = slip_days(record)
    message = startup_pb2.Milestone(
        name=f"{study_site.name}/milestones/{key}", milestone=key,
        display_name=definition.display_name,
        status=startup_pb2.MilestoneStatus.Value(
            record.status.value if record.status else "MILESTONE_STATUS_UNSPECIFIED"),
        note=record.note, prerequisites=list(definition.prerequisites),
        planned_slip_days=planned_slip, actual_slip_days=actual_slip,
        days_overdue=study_site.days_overdue(template, key, today))
    for field in ("baseline_date", "planned_date", "actual_date"):
        _set_date(message, field, getattr(record, field))
    _set_date(message, "target_date", study_site.target_date(template, key))
    if record.update_time is not None:
        message.update_time.CopyFrom(timestamp(record.update_time))
    return message


def study_site_message(study: Study, study_site: StudySite, facts: SiteFacts,
                       missing: list[Missing] | None = None) -> startup_pb2.StudySite:
    missing = missing or []
    site = study_site.site
    today = facts.today
    message = startup_pb2.StudySite(
        name=study_site.name, site=site.name, site_display_name_en=site.display_name_en,
        site_display_name_ko=site.display_name_ko, country_code=site.country_code,
        region_code=site.region_code, current_milestone=study_site.current,
        milestones=[milestone_message(study, study_site, k, today)
                    for k in template_of(study).keys],
        create_time=timestamp(study_site.create_time),
        update_time=timestamp(study_site.update_time), etag=study_site.etag,
        status=startup_pb2.StudySiteStatus.Value(facts.status.value),
        flagged=study_site.flagged, flag_reason=study_site.flag_reason,
        overdue=facts.overdue, greenlight_withdrawn=study_site.greenlight_withdrawn,
        greenlight_reason=study_site.greenlight_reason,
        missing_documents=[missing_message(m) for m in missing])
    _set_date(message, "planned_activation_date", facts.planned_activation_date)
    return message


# The domain's REJECTED is DOCUMENT_REJECTED on the wire (proto enum values share the
# package's scope with MilestoneStatus.REJECTED).
_WIRE_STATUS = {DocumentStatus.EXPECTED: startup_pb2.EXPECTED,
                DocumentStatus.RECEIVED: startup_pb2.RECEIVED,
                DocumentStatus.APPROVED: startup_pb2.APPROVED,
                DocumentStatus.REJECTED: startup_pb2.DOCUMENT_REJECTED}
_DOMAIN_STATUS = {v: k for k, v in _WIRE_STATUS.items()}
_PROVIDER = {Provider.SITE: startup_pb2.PROVIDER_SITE,
             Provider.SPONSOR: startup_pb2.PROVIDER_SPONSOR}


def missing_message(m: Missing) -> startup_pb2.MissingDocument:
    return startup_pb2.MissingDocument(document=m.key, status=_WIRE_STATUS[m.status],
                                       reason=m.why)


def document_message(study_site: StudySite, d: DocumentType, doc: SiteDocument,
                     today: dt.date) -> startup_pb2.SiteDocument:
    message = startup_pb2.SiteDocument(
        name=f"{study_site.name}/documents/{d.key}", document=d.key,
        display_name=d.display_name, display_name_ko=d.display_name_ko,
        tmf_artifact_name=d.tmf_artifact_name, tmf_artifact_number=d.tmf_artifact_number,
        required=d.required, expires=d.expires, provider=_PROVIDER[d.provider],
        status=_WIRE_STATUS[doc.status], version=doc.version, uri=doc.uri,
        content_hash=doc.content_hash, reason=doc.reason, note=doc.note, actor=doc.actor,
        valid=doc.valid(today))
    _set_date(message, "expiry_date", doc.expiry_date)
    _set_date(message, "status_date", doc.status_date)
    if doc.expected_time is not None:
        message.expected_time.CopyFrom(timestamp(doc.expected_time))
    if doc.update_time is not None:
        message.update_time.CopyFrom(timestamp(doc.update_time))
    return message


def document_summary_message(study: Study,
                             summary: DocumentSummary) -> startup_pb2.DocumentSummary:
    return startup_pb2.DocumentSummary(
        study=study.name,
        by_site=[startup_pb2.SiteOutstanding(study_site=name,
                                             missing=[missing_message(m) for m in gaps])
                 for name, gaps in summary.by_site],
        by_type=[startup_pb2.DocumentTypeSummary(
            document=t.document, outstanding=t.outstanding, approved=t.approved,
            median_days_to_approval=t.median_days_to_approval) for t in summary.by_type],
        blocked_only_by_documents=summary.blocked_only_by_documents)


def history_message(entry: HistoryEntry) -> startup_pb2.MilestoneHistoryEntry:
    return startup_pb2.MilestoneHistoryEntry(
        entry_id=entry.entry_id, milestone=entry.milestone, before_json=entry.before,
        after_json=entry.after, actor=entry.actor, role=entry.role, reason=entry.reason,
        record_time=timestamp(entry.record_time))


def group_message(g: Group) -> startup_pb2.SummaryGroup:
    o = g.outlook
    return startup_pb2.SummaryGroup(
        scope=g.scope, site_count=g.site_count, sites_overdue=g.sites_overdue,
        funnel=[startup_pb2.FunnelStep(milestone=f.milestone, sites_done=f.sites_done,
                                       sites_current=f.sites_current) for f in g.funnel],
        cycle_times=[startup_pb2.CycleTime(
            from_milestone=c.from_milestone, to_milestone=c.to_milestone, count=c.count,
            median_days=c.median, p75_days=c.p75, p90_days=c.p90) for c in g.cycles],
        overdue=[startup_pb2.OverdueMilestone(
            study_site=x.study_site, milestone=x.milestone,
            target_date=date_message(x.target_date), days_overdue=x.days) for x in g.overdue],
        activation=startup_pb2.ActivationOutlook(
            overdue=o.overdue, due_soon=o.due_soon, planned_later=o.planned_later,
            activated=o.activated, unplanned=o.unplanned))


def summary_message(study: Study, summary: Summary, window: int,
                    as_of: dt.date) -> startup_pb2.ActivationSummary:
    return startup_pb2.ActivationSummary(
        study=study.name, as_of=date_message(as_of), due_within_days=window,
        total=group_message(summary.total),
        by_country=[group_message(g) for g in summary.by_country],
        by_region=[group_message(g) for g in summary.by_region])


def _dates(violations: list[FieldViolation], **fields: date_pb2.Date
           ) -> dict[str, dt.date | None]:
    out: dict[str, dt.date | None] = {}
    for name, message in fields.items():
        try:
            out[name] = date_value(message, name)
        except InvalidArgument as exc:
            violations.extend(exc.violations)
            out[name] = None
    return out


def template_choice(message: startup_pb2.TemplateChoice) -> TemplateChoice:
    return TemplateChoice(
        skip=tuple(message.skip_milestones),
        target_days=tuple(sorted(message.target_days.items())),
        extra=tuple(MilestoneDefinition(
            key=m.milestone, display_name=m.display_name.strip(),
            display_name_ko=m.display_name_ko.strip() or m.display_name.strip(),
            prerequisites=tuple(m.prerequisites),
            target_days=m.target_days if m.has_target else None)
            for m in message.extra_milestones),
        skip_documents=tuple(dict.fromkeys(k.strip() for k in message.skip_documents)))


def study_values(message: startup_pb2.Study) -> dict[str, Any]:
    values: dict[str, Any] = {
        "protocol_number": message.protocol_number, "title": message.title,
        "sponsor_org": message.sponsor_org, "therapeutic_area": message.therapeutic_area,
        "country_codes": list(message.country_codes),
    }
    if message.phase != startup_pb2.PHASE_UNSPECIFIED:
        values["phase"] = startup_pb2.Phase.Name(message.phase) \
            if message.phase in startup_pb2.Phase.values() else f"unknown {message.phase}"
    violations: list[FieldViolation] = []
    dates = _dates(violations, **{"study.target_activation_date":
                                  message.target_activation_date})
    if violations:
        raise InvalidArgument(violations)
    values["target_activation_date"] = dates["study.target_activation_date"]
    values["target_active_sites"] = message.target_active_sites
    return values


class StartupTrackerServicer(startup_pb2_grpc.StartupTrackerServicer):
    def __init__(self, service: StartupTrackerService) -> None:
        self._service = service

    async def CreateStudy(self, request: startup_pb2.CreateStudyRequest,
                          context: grpc.aio.ServicerContext) -> startup_pb2.Study:
        principal = current_principal()
        study = await self._service.create_study(
            principal, study_values(request.study), request.study_id, request.request_id,
            template_choice(request.study.template), request.reason)
        return study_message(study, await self._service.country_approvals(principal, study))

    async def GetStudy(self, request: startup_pb2.GetStudyRequest,
                       context: grpc.aio.ServicerContext) -> startup_pb2.Study:
        (study_id,) = parse(request.name, "studies/{study}")
        principal = current_principal()
        study = await self._service.get_study(principal, study_id)
        return study_message(study, await self._service.country_approvals(principal, study))

    async def ListStudies(self, request: startup_pb2.ListStudiesRequest,
                          context: grpc.aio.ServicerContext) -> startup_pb2.ListStudiesResponse:
        studies, token = await self._service.list_studies(
            current_principal(), request.page_size, request.page_token, request.filter)
        return startup_pb2.ListStudiesResponse(studies=[study_message(s) for s in studies],
                                               next_page_token=token)

    async def AddStudySite(self, request: startup_pb2.AddStudySiteRequest,
                           context: grpc.aio.ServicerContext) -> startup_pb2.StudySite:
        (study_id,) = parse(request.parent, "studies/{study}", field="parent")
        (site_id,) = parse(request.site, "sites/{site}", field="site")
        study, study_site = await self._service.add_study_site(
            current_principal(), study_id, site_id, request.request_id, request.reason)
        return study_site_message(study, study_site,
                                  self._service.site_facts(study, study_site))

    async def GetStudySite(self, request: startup_pb2.GetStudySiteRequest,
                           context: grpc.aio.ServicerContext) -> startup_pb2.StudySite:
        study_id, site_id = parse(request.name, "studies/{study}/sites/{site}")
        principal = current_principal()
        study, study_site = await self._service.get_study_site(principal, study_id, site_id)
        return study_site_message(study, study_site, self._service.site_facts(study, study_site),
                                  await self._service.missing_documents(principal, study,
                                                                        study_site))

    async def ListStudySites(self, request: startup_pb2.ListStudySitesRequest,
                             context: grpc.aio.ServicerContext
                             ) -> startup_pb2.ListStudySitesResponse:
        (study_id,) = parse(request.parent, "studies/{study}", field="parent")
        study, rows, token = await self._service.list_study_sites(
            current_principal(), study_id, request.page_size, request.page_token,
            request.filter)
        return startup_pb2.ListStudySitesResponse(
            study_sites=[study_site_message(study, r, self._service.site_facts(study, r))
                         for r in rows], next_page_token=token)

    async def RecordMilestone(self, request: startup_pb2.RecordMilestoneRequest,
                              context: grpc.aio.ServicerContext) -> startup_pb2.Milestone:
        study_id, site_id = parse(request.study_site, "studies/{study}/sites/{site}",
                                  field="study_site")
        violations = []
        if not request.milestone:
            violations.append(FieldViolation("milestone", "required, e.g. 'irb-approved'"))
        if request.status == startup_pb2.MILESTONE_STATUS_UNSPECIFIED:
            violations.append(FieldViolation("status", "required"))
        elif request.status not in startup_pb2.MilestoneStatus.values():
            violations.append(FieldViolation("status", f"unknown value {request.status}"))
        dates = _dates(violations, planned_date=request.planned_date,
                       actual_date=request.actual_date)
        planned, actual = dates["planned_date"], dates["actual_date"]
        if violations:
            raise InvalidArgument(violations)
        change = MilestoneChange(
            status=MilestoneStatus(startup_pb2.MilestoneStatus.Name(request.status)),
            planned_date=planned, actual_date=actual, note=request.note.strip(),
            reason=request.reason.strip())
        study, study_site, key = await self._service.record_milestone(
            current_principal(), study_id, site_id, request.milestone, change,
            request.request_id)
        today = self._service.site_facts(study, study_site).today
        return milestone_message(study, study_site, key, today)

    async def UpdateStudy(self, request: startup_pb2.UpdateStudyRequest,
                          context: grpc.aio.ServicerContext) -> startup_pb2.Study:
        (study_id,) = parse(request.study.name, "studies/{study}", field="study.name")
        principal = current_principal()
        mask = list(request.update_mask.paths)
        values = study_values(request.study)
        if "phase" in mask and request.study.phase == startup_pb2.PHASE_UNSPECIFIED:
            values["phase"] = None  # named in the mask but not given: refused, not kept
        study = await self._service.update_study(principal, study_id, values, mask,
                                                 request.study.etag, request.request_id,
                                                 request.reason)
        return study_message(study, await self._service.country_approvals(principal, study))

    async def RecordCountryApproval(self, request: startup_pb2.RecordCountryApprovalRequest,
                                    context: grpc.aio.ServicerContext
                                    ) -> startup_pb2.CountryApproval:
        parts = request.name.split("/")
        if len(parts) != 4 or parts[0] != "studies" or parts[2] != "countries" \
                or not (len(parts[3]) == 2 and parts[3].isalpha()):
            raise InvalidArgument([FieldViolation(
                "name", f"{request.name[:80]!r} is not of the form "
                        "'studies/{study}/countries/{country}' (country: ISO 3166-1 alpha-2)")])
        (study_id,) = parse("/".join(parts[:2]), "studies/{study}")
        country = parts[3].upper()
        a = request.approval
        violations: list[FieldViolation] = []
        if a.status == startup_pb2.MILESTONE_STATUS_UNSPECIFIED:
            violations.append(FieldViolation("approval.status", "required"))
        elif a.status not in startup_pb2.MilestoneStatus.values():
            violations.append(FieldViolation("approval.status", f"unknown value {a.status}"))
        dates = _dates(violations, **{"approval.submitted_date": a.submitted_date,
                                      "approval.decision_date": a.decision_date})
        if violations:
            raise InvalidArgument(violations)
        change = ApprovalChange(
            status=MilestoneStatus(startup_pb2.MilestoneStatus.Name(a.status)),
            authority=a.authority.strip() or regulator_of(country),
            submitted_date=dates["approval.submitted_date"],
            decision_date=dates["approval.decision_date"], reference=a.reference.strip(),
            note=a.note.strip(), reason=request.reason.strip())
        principal = current_principal()
        approval = await self._service.record_country_approval(
            principal, study_id, country, change, request.request_id)
        study = await self._service.get_study(principal, study_id)
        return approval_message(study, approval)

    async def ListMilestoneHistory(self, request: startup_pb2.ListMilestoneHistoryRequest,
                                   context: grpc.aio.ServicerContext
                                   ) -> startup_pb2.ListMilestoneHistoryResponse:
        if request.parent.count("/") == 1:  # the study's own entries: updates, approvals
            (study_id,), site_id = parse(request.parent, "studies/{study}", field="parent"), ""
        else:
            study_id, site_id = parse(request.parent, "studies/{study}/sites/{site}",
                                      field="parent")
        entries, token = await self._service.list_milestone_history(
            current_principal(), study_id, site_id, request.page_size, request.page_token)
        return startup_pb2.ListMilestoneHistoryResponse(
            entries=[history_message(e) for e in entries], next_page_token=token)

    async def GetActivationSummary(self, request: startup_pb2.GetActivationSummaryRequest,
                                   context: grpc.aio.ServicerContext
                                   ) -> startup_pb2.ActivationSummary:
        (study_id,) = parse(request.name, "studies/{study}")
        study, summary, window = await self._service.activation_summary(
            current_principal(), study_id, request.due_within_days)
        as_of = self._service.clock().astimezone(dt.UTC).date()
        return summary_message(study, summary, window, as_of)

    async def ListSiteDocuments(self, request: startup_pb2.ListSiteDocumentsRequest,
                                context: grpc.aio.ServicerContext
                                ) -> startup_pb2.ListSiteDocumentsResponse:
        study_id, site_id = parse(request.parent, "studies/{study}/sites/{site}",
                                  field="parent")
        study, study_site, template, docs = await self._service.list_site_documents(
            current_principal(), study_id, site_id)
        today = self._service.site_facts(study, study_site).today
        return startup_pb2.ListSiteDocumentsResponse(
            documents=[document_message(study_site, d, docs[d.key], today)
                       for d in template.documents],
            template=template.key,
            complete=all(docs[d.key].valid(today) for d in template.documents if d.required))

    async def RecordDocumentStatus(self, request: startup_pb2.RecordDocumentStatusRequest,
                                   context: grpc.aio.ServicerContext
                                   ) -> startup_pb2.SiteDocument:
        study_id, site_id, key = parse(request.name,
                                       "studies/{study}/sites/{site}/documents/{document}")
        violations: list[FieldViolation] = []
        status = _DOMAIN_STATUS.get(request.status)
        if request.status == startup_pb2.DOCUMENT_STATUS_UNSPECIFIED:
            violations.append(FieldViolation("status", "required"))
        elif status is None:
            violations.append(FieldViolation("status", f"unknown value {request.status}"))
        dates = _dates(violations, expiry_date=request.expiry_date,
                       status_date=request.status_date)
        if violations or status is None:
            raise InvalidArgument(violations)
        change = DocumentChange(
            status=status, version=request.version.strip(), uri=request.uri.strip(),
            content_hash=request.content_hash.strip().lower(),
            expiry_date=dates["expiry_date"], status_date=dates["status_date"],
            reason=request.reason.strip(), note=request.note.strip())
        study_site, document, doc = await self._service.record_document_status(
            current_principal(), study_id, site_id, key, change, request.request_id)
        today = self._service.today_at(study_site.site)
        return document_message(study_site, document, doc, today)

    async def GetDocumentSummary(self, request: startup_pb2.GetDocumentSummaryRequest,
                                 context: grpc.aio.ServicerContext
                                 ) -> startup_pb2.DocumentSummary:
        (study_id,) = parse(request.name, "studies/{study}")
        study, summary = await self._service.document_summary(current_principal(), study_id)
        return document_summary_message(study, summary)
