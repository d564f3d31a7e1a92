"""Sites in SQL (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.filtering import Node
from services.common.sql_filter import FilterField, to_sql
from services.site_registry.adapters.tables import sites
from services.site_registry.domain.model import Site, SiteDetails, SiteStatus

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
        "status": site.status.value,
        "search_text": " ".join([d.display_name_en, d.display_name_ko, d.institution,
                                 d.city]).casefold(),
        "version": site.version,
        "create_time": site.create_time,
        "update_time": site.update_time,
    }


def _site(row: Any) -> Site:
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
    )
    return Site(
        site_id=row.site_id,
        details=details,
        status=SiteStatus(row.status),
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

    async def list(self, after: str | None, limit: int, where: Node | None) -> list[Site]:
        query = select(sites).where(to_sql(where, FILTER_FIELDS, [sites.c.search_text]))
        if after is not None:
            query = query.where(sites.c.site_id > after)
        rows = (await self._conn.execute(query.order_by(sites.c.site_id).limit(limit))).all()
        return [_site(r) for r in rows]
