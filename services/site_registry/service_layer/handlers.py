"""The registry's use cases: access rules, domain rules, one transaction each.

Every change writes, in the same transaction, the site, an append-only audit
entry and the event (through the outbox).
"""

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
from services.common.resource_names import ID_PATTERN, ID_RULE, check_id, new_id
from services.common.validation import build, check_reason, violations_from
from services.site_registry.domain.events import SiteRegistered, SiteStatusChanged, SiteUpdated
from services.site_registry.domain.model import (
    UPDATABLE_FIELDS,
    AuditAction,
    AuditEntry,
    Site,
    SiteDetails,
    Transition,
)
from services.site_registry.service_layer.importing import (
    ImportFormat,
    ImportResult,
    RowError,
    parse_rows,
)
from services.site_registry.service_layer.ports import RegistryUnitOfWork

# Filterable fields of ListSites; the adapter maps each to a column.
SITE_FILTER_FIELDS = ("country_code", "region_code", "status", "therapeutic_areas",
                      "capabilities", "city", "institution")
# Sortable fields of ListSites (`order_by`); ties are broken by id.
SITE_ORDER_FIELDS = ("display_name_en", "display_name_ko", "country_code", "region_code",
                     "city", "create_time", "update_time")

_ACTIONS = {Transition.SUSPEND: AuditAction.SUSPEND,
            Transition.REACTIVATE: AuditAction.REACTIVATE,
            Transition.CLOSE: AuditAction.CLOSE}


def _require_admin(principal: Principal) -> None:
    if not principal.is_admin:
        raise PermissionDenied("only an admin may change the site registry")


def _audit(action: AuditAction, principal: Principal, before: Site | None, after: Site,
           changed: tuple[str, ...] = (), reason: str = "") -> AuditEntry:
    return AuditEntry(site_id=after.site_id, action=action, actor_subject=principal.subject,
                      actor_role=principal.role.value, create_time=after.update_time,
                      before=before, after=after, changed_fields=changed, reason=reason)



async def _site_to_change(uow: RegistryUnitOfWork, site_id: str, etag: str,
                          request_id: str) -> tuple[Site, bool]:
    """The site a change applies to, checked against the caller's etag; `True` when the
    request id was answered before (AIP-155: the retry gets the site as it is)."""
    current = await uow.sites.get(site_id)
    if current is None:
        raise NotFound(f"sites/{site_id}")
    if request_id and await uow.requests.seen(request_id):
        return current, True
    if etag and etag != current.etag:
        raise EtagMismatch(current.name)
    return current, False

class SiteRegistryService:
    def __init__(self, unit_of_work: Callable[[], RegistryUnitOfWork]) -> None:
        self._uow = unit_of_work

    async def create_site(self, principal: Principal, details: dict[str, Any], site_id: str,
                          request_id: str = "", reason: str = "") -> Site:
        _require_admin(principal)
        site_id = check_id(site_id, "site_id") if site_id else new_id("site")
        valid = build(SiteDetails, details, prefix="site")
        reason = check_reason(reason)
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
            await uow.audit.append(_audit(AuditAction.CREATE, principal, None, site,
                                          reason=reason))
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
                         filter_text: str, order_by: str = "") -> tuple[list[Site], str]:
        size = paging.page_size(page_size)
        where = filtering.parse(filter_text, dict.fromkeys(SITE_FILTER_FIELDS))
        order = paging.parse_order_by(order_by, SITE_ORDER_FIELDS)
        # The token is bound to the filter and the order it was made for.
        query = f"{filter_text}\x00{order_by}"
        after = paging.decode_keyset(page_token, query, length=1 if order is None else 2)
        async with self._uow() as uow:
            sites = await uow.sites.list(after, size + 1, where, order)
        more = len(sites) > size
        sites = sites[:size]
        token = (paging.encode_keyset(sites[-1].sort_key(order[0] if order else None), query)
                 if more else "")
        return sites, token

    async def update_site(self, principal: Principal, site_id: str, values: dict[str, Any],
                          mask: list[str], etag: str, request_id: str = "",
                          reason: str = "") -> Site:
        _require_admin(principal)
        reason = check_reason(reason)
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
            current, replayed = await _site_to_change(uow, site_id, etag, request_id)
            if replayed:
                return current
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
            await uow.audit.append(_audit(AuditAction.UPDATE, principal, current, updated,
                                          tuple(changed), reason))
            if request_id:
                await uow.requests.remember(request_id, updated.name)
            uow.emit(SiteUpdated(site=updated, before=current, changed_fields=tuple(changed),
                                 actor=principal, reason=reason))
            await uow.commit()
            return updated

    async def change_status(self, principal: Principal, site_id: str, transition: Transition,
                            reason: str, etag: str = "", request_id: str = "") -> Site:
        """Suspend, reactivate or close a site (AIP-136 custom methods)."""
        _require_admin(principal)
        reason = check_reason(reason, required=True)
        async with self._uow() as uow:
            current, replayed = await _site_to_change(uow, site_id, etag, request_id)
            if replayed:
                return current
            changed = current.transitioned(transition, reason, datetime.now(UTC))
            if not await uow.sites.save(changed, expected_version=current.version):
                raise EtagMismatch(current.name)
            await uow.audit.append(_audit(_ACTIONS[transition], principal, current, changed,
                                          ("status",), reason))
            if request_id:
                await uow.requests.remember(request_id, changed.name)
            uow.emit(SiteStatusChanged(site=changed, before=current, actor=principal,
                                       reason=reason))
            await uow.commit()
            return changed

    async def import_sites(self, principal: Principal, content: bytes, fmt: ImportFormat | None,
                           allow_partial: bool, reason: str = "") -> ImportResult:
        """Register the sites of a file. Rows identical to a registered site are skipped
        (so a re-import changes nothing); any bad row stops the whole file unless
        `allow_partial`."""
        _require_admin(principal)
        reason = check_reason(reason) or "bulk import"
        if fmt is None:
            raise InvalidArgument([FieldViolation("format", "must be CSV or JSONL")])
        rows, errors = parse_rows(content, fmt)
        result = ImportResult(errors=errors)
        now = datetime.now(UTC)
        async with self._uow() as uow:
            fresh: list[Site] = []
            seen_ids: dict[str, int] = {}
            seen_institutions: dict[str, int] = {}
            for row in rows:
                problems: list[RowError] = []
                if not row.site_id:
                    problems.append(RowError(row.line, "site_id", "is required"))
                elif not ID_PATTERN.match(row.site_id):
                    problems.append(RowError(row.line, "site_id", f"{row.site_id!r} {ID_RULE}"))
                try:
                    details = SiteDetails.model_validate(row.values)
                except ValidationError as exc:
                    problems += [RowError(row.line, v.field, v.description)
                                 for v in violations_from(exc)]
                    details = None
                if problems or details is None:
                    result.errors += problems
                    continue
                if row.site_id in seen_ids:
                    result.errors.append(RowError(row.line, "site_id", (
                        f"{row.site_id!r} is also on line {seen_ids[row.site_id]}")))
                    continue
                key = details.institution_key
                if key in seen_institutions:
                    result.errors.append(RowError(row.line, "institution", (
                        f"the same institution is also on line {seen_institutions[key]}")))
                    continue
                seen_ids[row.site_id] = seen_institutions[key] = row.line
                existing = await uow.sites.get(row.site_id)
                if existing is not None:
                    if existing.details.model_dump() == details.model_dump():
                        result.unchanged += 1
                    else:
                        result.errors.append(RowError(row.line, "site_id", (
                            f"sites/{row.site_id} already exists with other values")))
                    continue
                twin = await uow.sites.find_by_institution(key)
                if twin is not None:
                    result.errors.append(RowError(row.line, "institution", (
                        f"this institution is already registered as {twin.name}")))
                    continue
                fresh.append(Site(site_id=row.site_id, details=details, create_time=now,
                                  update_time=now))
            result.errors.sort(key=lambda e: e.line)
            if result.errors and not allow_partial:
                # Nothing from a file with errors, unless asked; say everything wrong at once.
                raise InvalidArgument(
                    [FieldViolation(f"content.line[{e.line}]" + (f".{e.field}" if e.field else ""),
                                    e.description) for e in result.errors],
                    f"{len(result.errors)} problem(s) in the file; nothing was imported")
            for site in fresh:
                await uow.sites.add(site)
                await uow.audit.append(_audit(AuditAction.IMPORT, principal, None, site,
                                              reason=reason))
                uow.emit(SiteRegistered(site=site, actor=principal))
                result.created.append(site.name)
            await uow.commit()
        return result

    async def list_audit_entries(self, principal: Principal, site_id: str, page_size: int,
                                 page_token: str) -> tuple[list[AuditEntry], str]:
        size = paging.page_size(page_size)
        query = f"sites/{site_id}"
        after = paging.decode_token(page_token, query)
        try:
            after_id = int(after) if after is not None else None
        except ValueError as exc:
            raise InvalidArgument([FieldViolation(
                "page_token", "is not a token this list returned")]) from exc
        async with self._uow() as uow:
            if await uow.sites.get(site_id) is None:
                raise NotFound(f"sites/{site_id}")
            entries = await uow.audit.list(site_id, after_id, size + 1)
        more = len(entries) > size
        entries = entries[:size]
        token = paging.encode_token(str(entries[-1].entry_id), query) if more else ""
        return entries, token

