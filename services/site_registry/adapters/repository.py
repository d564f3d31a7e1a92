"""Sites and their audit trail in SQL (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.filtering import Node
from services.common.sql_filter import FilterField, to_sql
from services.site_registry.adapters.tables import site_audit, sites
from services.site_registry.domain.model import (
    AuditAction,
    AuditEntry,
    Contact,
    PrincipalInvestigator,
    Site,
    SiteDetails,
    SiteStatus,
)

FILTER_FIELDS = {
    "country_code": FilterField(sites.c.country_code, normalise=str.upper),
    "region_code": FilterField(sites.c.region_code, normalise=str.upper),
    "status": FilterField(sites.c.status, normalise=str.upper),
    "city": FilterField(sites.c.city),
    "institution": FilterField(sites.c.institution),
    "therapeutic_areas": FilterField(sites.c.therapeutic_areas, kind="list",
                                     normalise=str.lower),
    "capabilities": FilterField(sites.c.capabilities, kind="list", normalise=str.lower),
}

SORT_COLUMNS = {
    "display_name_en": sites.c.display_name_en,
    "display_name_ko": sites.c.display_name_ko,
    "country_code": sites.c.country_code,
    "region_code": sites.c.region_code,
    "city": sites.c.city,
    "create_time": sites.c.create_time,
    "update_time": sites.c.update_time,
}
_TIME_KEYS = ("create_time", "update_time")


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _row(site: Site) -> dict[str, Any]:
    d = site.details
    return {
        "site_id": site.site_id,
        "display_name_en": d.display_name_en,
        "display_name_ko": d.display_name_ko,
        "institution": d.institution,
        "institution_key": d.institution_key,
        "country_code": d.country_code,
        "region_code": d.region_code,
        "city": d.city,
        "irb_of_record": d.irb_of_record,
        "therapeutic_areas": json.dumps(list(d.therapeutic_areas), ensure_ascii=False),
        "capabilities": json.dumps(list(d.capabilities), ensure_ascii=False),
        "time_zone": d.time_zone,
        "address": d.address,
        "mfds_designation_number": d.mfds_designation_number,
        "mfds_designation_date": d.mfds_designation_date,
        "principal_investigators": json.dumps(
            [p.model_dump() for p in d.principal_investigators], ensure_ascii=False),
        "contacts": json.dumps([c.model_dump() for c in d.contacts], ensure_ascii=False),
        "status": site.status.value,
        "status_reason": site.status_reason,
        "status_change_time": site.status_change_time,
        "search_text": " ".join([d.display_name_en, d.display_name_ko, d.institution,
                                 d.city]).casefold(),
        "version": site.version,
        "create_time": site.create_time,
        "update_time": site.update_time,
    }


def _site(row: Any) -> Site:
    # Stored rows were validated on the way in; model_construct skips re-validation.
    details = SiteDetails.model_construct(
        display_name_en=row.display_name_en,
        display_name_ko=row.display_name_ko,
        institution=row.institution,
        country_code=row.country_code,
        region_code=row.region_code,
        city=row.city,
        irb_of_record=row.irb_of_record,
        therapeutic_areas=tuple(json.loads(row.therapeutic_areas)),
        capabilities=tuple(json.loads(row.capabilities)),
        time_zone=row.time_zone,
        address=row.address,
        mfds_designation_number=row.mfds_designation_number,
        mfds_designation_date=row.mfds_designation_date,
        principal_investigators=tuple(PrincipalInvestigator.model_construct(**p)
                                      for p in json.loads(row.principal_investigators)),
        contacts=tuple(Contact.model_construct(**c) for c in json.loads(row.contacts)),
    )
    return Site(
        site_id=row.site_id,
        details=details,
        status=SiteStatus(row.status),
        status_reason=row.status_reason,
        status_change_time=_utc(row.status_change_time) if row.status_change_time else None,
        version=row.version,
        create_time=_utc(row.create_time),
        update_time=_utc(row.update_time),
    )


class SqlSiteRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, site_id: str) -> Site | None:
        row = (await self._conn.execute(select(sites).where(sites.c.site_id == site_id))).first()
        return _site(row) if row else None

    async def find_by_institution(self, institution_key: str) -> Site | None:
        row = (await self._conn.execute(
            select(sites).where(sites.c.institution_key == institution_key))).first()
        return _site(row) if row else None

    async def add(self, site: Site) -> None:
        await self._conn.execute(sites.insert().values(**_row(site)))

    async def save(self, site: Site, expected_version: int) -> bool:
        values = _row(site)
        values.pop("site_id")
        values.pop("create_time")
        result = await self._conn.execute(
            update(sites)
            .where(sites.c.site_id == site.site_id, sites.c.version == expected_version)
            .values(**values)
        )
        return bool(result.rowcount)

    async def list(self, after: list[str] | None, limit: int, where: Node | None,
                   order: tuple[str, bool] | None = None) -> list[Site]:
        query = select(sites).where(to_sql(where, FILTER_FIELDS, [sites.c.search_text]))
        if order is None:
            if after is not None:
                query = query.where(sites.c.site_id > after[-1])
            query = query.order_by(sites.c.site_id)
        else:
            field, descending = order
            column = SORT_COLUMNS[field]
            if after is not None:
                value: Any = after[0]
                if field in _TIME_KEYS:
                    value = datetime.fromisoformat(value)
                beyond = column < value if descending else column > value
                query = query.where(or_(beyond, and_(column == value,
                                                     sites.c.site_id > after[1])))
            query = query.order_by(column.desc() if descending else column, sites.c.site_id)
        rows = (await self._conn.execute(query.limit(limit))).all()
        return [_site(r) for r in rows]


class SqlAuditLog:
    """Append and read; there is deliberately no update or delete."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def append(self, entry: AuditEntry) -> None:
        await self._conn.execute(site_audit.insert().values(
            site_id=entry.site_id, action=entry.action.value, actor_subject=entry.actor_subject,
            actor_role=entry.actor_role, create_time=entry.create_time,
            before=entry.before.model_dump_json() if entry.before else None,
            after=entry.after.model_dump_json(),
            changed_fields=json.dumps(list(entry.changed_fields)), reason=entry.reason))

    async def list(self, site_id: str, after: int | None, limit: int) -> list[AuditEntry]:
        query = select(site_audit).where(site_audit.c.site_id == site_id)
        if after is not None:
            query = query.where(site_audit.c.entry_id > after)
        rows = (await self._conn.execute(
            query.order_by(site_audit.c.entry_id).limit(limit))).all()
        return [AuditEntry(
            entry_id=r.entry_id, site_id=r.site_id, action=AuditAction(r.action),
            actor_subject=r.actor_subject, actor_role=r.actor_role,
            create_time=_utc(r.create_time),
            before=Site.model_validate_json(r.before) if r.before else None,
            after=Site.model_validate_json(r.after),
            changed_fields=tuple(json.loads(r.changed_fields)), reason=r.reason,
        ) for r in rows]
