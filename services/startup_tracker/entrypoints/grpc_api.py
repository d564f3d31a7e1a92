"""`sitenet.startup.v1.StartupTracker` over gRPC."""

from __future__ import annotations

from typing import Any

import grpc

from services.common.errors import FieldViolation, InvalidArgument
from services.common.resource_names import parse
from services.common.rpc.convert import date_message, date_value, timestamp
from services.common.rpc.interceptors import current_principal
from services.startup_tracker.domain.model import (
    MilestoneChange,
    MilestoneStatus,
    Study,
    StudySite,
)
from services.startup_tracker.service_layer.handlers import StartupTrackerService, template_of
from sitenet.startup.v1 import startup_pb2, startup_pb2_grpc


def study_message(study: Study) -> startup_pb2.Study:
    d = study.details
    return startup_pb2.Study(
        name=study.name, protocol_number=d.protocol_number, title=d.title,
        sponsor_org=d.sponsor_org, phase=startup_pb2.Phase.Value(d.phase.value),
        therapeutic_area=d.therapeutic_area, country_codes=list(d.country_codes),
        create_time=timestamp(study.create_time), update_time=timestamp(study.update_time),
        etag=study.etag)


def milestone_message(study: Study, study_site: StudySite, key: str) -> startup_pb2.Milestone:
    definition = template_of(study).get(key)
    assert definition is not None
    record = study_site.milestone(key)
    message = startup_pb2.Milestone(
        name=f"{study_site.name}/milestones/{key}", milestone=key,
        display_name=definition.display_name,
        status=startup_pb2.MilestoneStatus.Value(
            record.status.value if record.status else "MILESTONE_STATUS_UNSPECIFIED"),
        note=record.note, prerequisites=list(definition.prerequisites))
    for field in ("baseline_date", "planned_date", "actual_date"):
        value = getattr(record, field)
        if value is not None:
            getattr(message, field).CopyFrom(date_message(value))
    if record.update_time is not None:
        message.update_time.CopyFrom(timestamp(record.update_time))
    return message


def study_site_message(study: Study, study_site: StudySite) -> startup_pb2.StudySite:
    site = study_site.site
    return startup_pb2.StudySite(
        name=study_site.name, site=site.name, site_display_name_en=site.display_name_en,
        site_display_name_ko=site.display_name_ko, country_code=site.country_code,
        region_code=site.region_code, current_milestone=study_site.current,
        milestones=[milestone_message(study, study_site, k) for k in template_of(study).keys],
        create_time=timestamp(study_site.create_time),
        update_time=timestamp(study_site.update_time), etag=study_site.etag)


def study_values(message: startup_pb2.Study) -> dict[str, Any]:
    values: dict[str, Any] = {
        "protocol_number": message.protocol_number, "title": message.title,
        "sponsor_org": message.sponsor_org, "therapeutic_area": message.therapeutic_area,
        "country_codes": list(message.country_codes),
    }
    if message.phase != startup_pb2.PHASE_UNSPECIFIED:
        values["phase"] = startup_pb2.Phase.Name(message.phase)
    return values


class StartupTrackerServicer(startup_pb2_grpc.StartupTrackerServicer):
    def __init__(self, service: StartupTrackerService) -> None:
        self._service = service

    async def CreateStudy(self, request: startup_pb2.CreateStudyRequest,
                          context: grpc.aio.ServicerContext) -> startup_pb2.Study:
        study = await self._service.create_study(
            current_principal(), study_values(request.study), request.study_id,
            request.request_id)
        return study_message(study)

    async def GetStudy(self, request: startup_pb2.GetStudyRequest,
                       context: grpc.aio.ServicerContext) -> startup_pb2.Study:
        (study_id,) = parse(request.name, "studies/{study}")
        return study_message(await self._service.get_study(current_principal(), study_id))

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
            current_principal(), study_id, site_id, request.request_id)
        return study_site_message(study, study_site)

    async def GetStudySite(self, request: startup_pb2.GetStudySiteRequest,
                           context: grpc.aio.ServicerContext) -> startup_pb2.StudySite:
        study_id, site_id = parse(request.name, "studies/{study}/sites/{site}")
        study, study_site = await self._service.get_study_site(
            current_principal(), study_id, site_id)
        return study_site_message(study, study_site)

    async def ListStudySites(self, request: startup_pb2.ListStudySitesRequest,
                             context: grpc.aio.ServicerContext
                             ) -> startup_pb2.ListStudySitesResponse:
        (study_id,) = parse(request.parent, "studies/{study}", field="parent")
        study, rows, token = await self._service.list_study_sites(
            current_principal(), study_id, request.page_size, request.page_token,
            request.filter)
        return startup_pb2.ListStudySitesResponse(
            study_sites=[study_site_message(study, r) for r in rows], next_page_token=token)

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
        planned = actual = None
        try:
            planned = date_value(request.planned_date, "planned_date")
        except InvalidArgument as exc:
            violations.extend(exc.violations)
        try:
            actual = date_value(request.actual_date, "actual_date")
        except InvalidArgument as exc:
            violations.extend(exc.violations)
        if violations:
            raise InvalidArgument(violations)
        change = MilestoneChange(
            status=MilestoneStatus(startup_pb2.MilestoneStatus.Name(request.status)),
            planned_date=planned, actual_date=actual, note=request.note.strip(),
            reason=request.reason.strip())
        study, study_site, key = await self._service.record_milestone(
            current_principal(), study_id, site_id, request.milestone, change,
            request.request_id)
        return milestone_message(study, study_site, key)
