"""`sitenet.registry.v1.SiteRegistry` over gRPC: protobuf in, use case, protobuf out."""

from __future__ import annotations

from typing import Any

import grpc

from services.common.resource_names import parse
from services.common.rpc.convert import timestamp
from services.common.rpc.interceptors import current_principal
from services.site_registry.domain.model import UPDATABLE_FIELDS, Site, SiteStatus
from services.site_registry.service_layer.handlers import SiteRegistryService
from sitenet.registry.v1 import registry_pb2, registry_pb2_grpc

_STATUS = {
    SiteStatus.ACTIVE: registry_pb2.Site.ACTIVE,
    SiteStatus.SUSPENDED: registry_pb2.Site.SUSPENDED,
    SiteStatus.CLOSED: registry_pb2.Site.CLOSED,
}


def site_message(site: Site) -> registry_pb2.Site:
    d = site.details
    return registry_pb2.Site(
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
    )


def site_values(message: registry_pb2.Site) -> dict[str, Any]:
    values: dict[str, Any] = {f: getattr(message, f) for f in UPDATABLE_FIELDS}
    values["therapeutic_areas"] = list(message.therapeutic_areas)
    values["capabilities"] = list(message.capabilities)
    return values


class SiteRegistryServicer(registry_pb2_grpc.SiteRegistryServicer):
    def __init__(self, service: SiteRegistryService) -> None:
        self._service = service

    async def CreateSite(self, request: registry_pb2.CreateSiteRequest,
                         context: grpc.aio.ServicerContext) -> registry_pb2.Site:
        site = await self._service.create_site(
            current_principal(), site_values(request.site), request.site_id, request.request_id)
        return site_message(site)

    async def GetSite(self, request: registry_pb2.GetSiteRequest,
                      context: grpc.aio.ServicerContext) -> registry_pb2.Site:
        (site_id,) = parse(request.name, "sites/{site}")
        return site_message(await self._service.get_site(current_principal(), site_id))

    async def ListSites(self, request: registry_pb2.ListSitesRequest,
                        context: grpc.aio.ServicerContext) -> registry_pb2.ListSitesResponse:
        sites, token = await self._service.list_sites(
            current_principal(), request.page_size, request.page_token, request.filter)
        return registry_pb2.ListSitesResponse(sites=[site_message(s) for s in sites],
                                              next_page_token=token)

    async def UpdateSite(self, request: registry_pb2.UpdateSiteRequest,
                         context: grpc.aio.ServicerContext) -> registry_pb2.Site:
        (site_id,) = parse(request.site.name, "sites/{site}", field="site.name")
        site = await self._service.update_site(
            current_principal(), site_id, site_values(request.site),
            list(request.update_mask.paths), request.site.etag, request.request_id)
        return site_message(site)
