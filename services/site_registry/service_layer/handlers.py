"""The registry's use cases: access rules, domain rules, one transaction each."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from services.common import filtering, paging
from services.common.errors import (
    AlreadyExists,
    EtagMismatch,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.identity import Principal
from services.common.resource_names import check_id, new_id
from services.common.validation import build, violations_from
from services.site_registry.domain.events import SiteRegistered, SiteUpdated
from services.site_registry.domain.model import UPDATABLE_FIELDS, Site, SiteDetails
from services.site_registry.service_layer.ports import RegistryUnitOfWork

# Filterable fields of ListSites; the adapter maps each to a column.
SITE_FILTER_FIELDS = ("country_code", "region_code", "status", "therapeutic_areas",
                      "capabilities", "city", "institution")


def _require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise PermissionDenied("only an admin may change the site registry")


class SiteRegistryService:
    def __init__(self, unit_of_work: Callable[[], RegistryUnitOfWork]) -> None:
        self._uow = unit_of_work

    async def create_site(self, principal: Principal, details: dict[str, Any], site_id: str,
                          request_id: str = "") -> Site:
        _require_admin(principal)
        site_id = check_id(site_id, "site_id") if site_id else new_id("site")
        valid = build(SiteDetails, details, prefix="site")
        async with self._uow() as uow:
            if request_id and (earlier := await uow.requests.seen(request_id)):
                site = await uow.sites.get(earlier.removeprefix("sites/"))
                if site is not None:
                    return site
            if await uow.sites.get(site_id) is not None:
                raise AlreadyExists(f"sites/{site_id}")
            twin = await uow.sites.find_by_institution(valid.institution_key)
            if twin is not None:
                raise AlreadyExists(twin.name, f"this institution is already registered as "
                                               f"{twin.name}")
            now = datetime.now(UTC)
            site = Site(site_id=site_id, details=valid, create_time=now, update_time=now)
            await uow.sites.add(site)
            if request_id:
                await uow.requests.remember(request_id, site.name)
            uow.emit(SiteRegistered(site=site, actor=principal))
            await uow.commit()
            return site

    async def get_site(self, principal: Principal, site_id: str) -> Site:
        async with self._uow() as uow:
            site = await uow.sites.get(site_id)
        if site is None:
            raise NotFound(f"sites/{site_id}")
        return site

    async def list_sites(self, principal: Principal, page_size: int, page_token: str,
                         filter_text: str) -> tuple[list[Site], str]:
        size = paging.page_size(page_size)
        where = filtering.parse(filter_text, dict.fromkeys(SITE_FILTER_FIELDS))
        after = paging.decode_token(page_token, filter_text)
        async with self._uow() as uow:
            sites = await uow.sites.list(after, size + 1, where)
        more = len(sites) > size
        sites = sites[:size]
        token = paging.encode_token(sites[-1].site_id, filter_text) if more else ""
        return sites, token

    async def update_site(self, principal: Principal, site_id: str, values: dict[str, Any],
                          mask: list[str], etag: str, request_id: str = "") -> Site:
        _require_admin(principal)
        paths = list(UPDATABLE_FIELDS) if mask == ["*"] else mask
        if not paths:
            raise InvalidArgument([FieldViolation("update_mask", "name at least one field")])
        unknown = [p for p in paths if p not in UPDATABLE_FIELDS]
        if unknown:
            raise InvalidArgument([FieldViolation(
                "update_mask", f"{p!r} cannot be updated; updatable: {', '.join(UPDATABLE_FIELDS)}")
                for p in unknown])
        changes = {p: values.get(p) for p in paths}
        async with self._uow() as uow:
            if request_id and await uow.requests.seen(request_id):
                site = await uow.sites.get(site_id)
                if site is not None:
                    return site
            current = await uow.sites.get(site_id)
            if current is None:
                raise NotFound(f"sites/{site_id}")
            if etag and etag != current.etag:
                raise EtagMismatch(current.name)
            try:
                updated, changed = current.updated(changes, datetime.now(UTC))
            except ValidationError as exc:
                raise InvalidArgument(violations_from(exc, "site")) from exc
            if not changed:
                return current
            if "country_code" in changed or "institution" in changed or (
                "display_name_en" in changed and not updated.details.institution
            ):
                twin = await uow.sites.find_by_institution(updated.details.institution_key)
                if twin is not None and twin.site_id != site_id:
                    raise AlreadyExists(twin.name, f"this institution is already registered as "
                                                   f"{twin.name}")
            if not await uow.sites.save(updated, expected_version=current.version):
                raise EtagMismatch(current.name)
            if request_id:
                await uow.requests.remember(request_id, updated.name)
            uow.emit(SiteUpdated(site=updated, before=current, changed_fields=tuple(changed),
                                 actor=principal))
            await uow.commit()
            return updated
