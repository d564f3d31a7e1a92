"""`sitenet.registry.v1.SiteRegistry` over gRPC: protobuf in, use case, protobuf out."""

from __future__ import annotations

from typing import Any

import grpc

from services.common.resource_names import parse
from services.common.rpc.convert import date_message, date_value, timestamp
from services.common.rpc.interceptors import current_principal
from services.site_registry.domain.model import (
    UPDATABLE_FIELDS,
    AuditEntry,
    Site,
    SiteStatus,
    Transition,
)
from services.site_registry.service_layer.handlers import SiteRegistryService
from services.site_registry.service_layer.importing import ImportFormat
from sitenet.registry.v1 import registry_pb2, registry_pb2_grpc

_STATUS = {
    SiteStatus.ACTIVE: registry_pb2.Site.ACTIVE,
    SiteStatus.SUSPENDED: registry_pb2.Site.SUSPENDED,
    SiteStatus.CLOSED: registry_pb2.Site.CLOSED,
}
_FORMATS = {
    registry_pb2.ImportSitesRequest.CSV: ImportFormat.CSV,
    registry_pb2.ImportSitesRequest.JSONL: ImportFormat.JSONL,
}
_MESSAGE_FIELDS = ("mfds_designation_date", "principal_investigators", "contacts")


def site_message(site: Site) -> registry_pb2.Site:
    d = site.details
    message = registry_pb2.Site(
        name=site.name,
        display_name_en=d.display_name_en,
        display_name_ko=d.display_name_ko,
        institution=d.institution,
        country_code=d.country_code,
        region_code=d.region_code,
        city=d.city,
        irb_of_record=d.irb_of_record,
        therapeutic_areas=list(d.therapeutic_areas),
        capabilities=list(d.capabilities),
        status=_STATUS[site.status],
        create_time=timestamp(site.create_time),
        update_time=timestamp(site.update_time),
        etag=site.etag,
        time_zone=d.time_zone,
        address=d.address,
        mfds_designation_number=d.mfds_designation_number,
        mfds_designation_date=date_message(d.mfds_designation_date),
        principal_investigators=[
            registry_pb2.PrincipalInvestigator(display_name=p.display_name,
                                               specialty=p.specialty)
            for p in d.principal_investigators],
        contacts=[registry_pb2.Contact(role=c.role, display_name=c.display_name, email=c.email,
                                       phone=c.phone) for c in d.contacts],
        status_reason=site.status_reason,
    )
    if site.status_change_time is not None:
        message.status_change_time.CopyFrom(timestamp(site.status_change_time))
    return message


def site_values(message: registry_pb2.Site) -> dict[str, Any]:
    values: dict[str, Any] = {f: getattr(message, f) for f in UPDATABLE_FIELDS
                              if f not in _MESSAGE_FIELDS}
    values["therapeutic_areas"] = list(message.therapeutic_areas)
    values["capabilities"] = list(message.capabilities)
    values["mfds_designation_date"] = date_value(message.mfds_designation_date,
                                                 "site.mfds_designation_date")
    values["principal_investigators"] = [
        {"display_name": p.display_name, "specialty": p.specialty}
        for p in message.principal_investigators]
    values["contacts"] = [
        {"role": c.role, "display_name": c.display_name, "email": c.email, "phone": c.phone}
        for c in message.contacts]
    return values


def audit_message(entry: AuditEntry) -> registry_pb2.SiteAuditEntry:
    message = registry_pb2.SiteAuditEntry(
        name=f"sites/{entry.site_id}/auditEntries/{entry.entry_id}", action=entry.action.value,
        actor=entry.actor_subject, actor_role=entry.actor_role,
        create_time=timestamp(entry.create_time), after=site_message(entry.after),
        changed_fields=list(entry.changed_fields), reason=entry.reason)
    if entry.before is not None:
        message.before.CopyFrom(site_message(entry.before))
    return message


class SiteRegistryServicer(registry_pb2_grpc.SiteRegistryServicer):
    def __init__(self, service: SiteRegistryService) -> None:
        self._service = service

    async def CreateSite(self, request: registry_pb2.CreateSiteRequest,
                         context: grpc.aio.ServicerContext) -> registry_pb2.Site:
        site = await self._service.create_site(
            current_principal(), site_values(request.site), request.site_id, request.request_id,
            request.reason)
        return site_message(site)

    async def GetSite(self, request: registry_pb2.GetSiteRequest,
                      context: grpc.aio.ServicerContext) -> registry_pb2.Site:
        (site_id,) = parse(request.name, "sites/{site}")
        return site_message(await self._service.get_site(current_principal(), site_id))

    async def ListSites(self, request: registry_pb2.ListSitesRequest,
                        context: grpc.aio.ServicerContext) -> registry_pb2.ListSitesResponse:
        sites, token = await self._service.list_sites(
            current_principal(), request.page_size, request.page_token, request.filter,
            request.order_by)
        return registry_pb2.ListSitesResponse(sites=[site_message(s) for s in sites],
                                              next_page_token=token)

    async def UpdateSite(self, request: registry_pb2.UpdateSiteRequest,
                         context: grpc.aio.ServicerContext) -> registry_pb2.Site:
        (site_id,) = parse(request.site.name, "sites/{site}", field="site.name")
        site = await self._service.update_site(
            current_principal(), site_id, site_values(request.site),
            list(request.update_mask.paths), request.site.etag, request.request_id,
            request.reason)
        return site_message(site)

    async def _transition(self, request: Any, transition: Transition) -> registry_pb2.Site:
        (site_id,) = parse(request.name, "sites/{site}")
        site = await self._service.change_status(
            current_principal(), site_id, transition, request.reason, request.etag,
            request.request_id)
        return site_message(site)

    async def SuspendSite(self, request: registry_pb2.SuspendSiteRequest,
                          context: grpc.aio.ServicerContext) -> registry_pb2.Site:
        return await self._transition(request, Transition.SUSPEND)

    async def ReactivateSite(self, request: registry_pb2.ReactivateSiteRequest,
                             context: grpc.aio.ServicerContext) -> registry_pb2.Site:
        return await self._transition(request, Transition.REACTIVATE)

    async def CloseSite(self, request: registry_pb2.CloseSiteRequest,
                        context: grpc.aio.ServicerContext) -> registry_pb2.Site:
        return await self._transition(request, Transition.CLOSE)

    async def ImportSites(self, request: registry_pb2.ImportSitesRequest,
                          context: grpc.aio.ServicerContext
                          ) -> registry_pb2.ImportSitesResponse:
        result = await self._service.import_sites(
            current_principal(), request.content, _FORMATS.get(request.format),
            request.allow_partial, request.reason)
        return registry_pb2.ImportSitesResponse(
            created_count=len(result.created), unchanged_count=result.unchanged,
            created_sites=result.created,
            errors=[registry_pb2.ImportRowError(line=e.line, field=e.field,
                                                description=e.description)
                    for e in result.errors])

    async def ListSiteAuditEntries(
            self, request: registry_pb2.ListSiteAuditEntriesRequest,
            context: grpc.aio.ServicerContext) -> registry_pb2.ListSiteAuditEntriesResponse:
        (site_id,) = parse(request.parent, "sites/{site}", field="parent")
        entries, token = await self._service.list_audit_entries(
            current_principal(), site_id, request.page_size, request.page_token)
        return registry_pb2.ListSiteAuditEntriesResponse(
            audit_entries=[audit_message(e) for e in entries], next_page_token=token)
