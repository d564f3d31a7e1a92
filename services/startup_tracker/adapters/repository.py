"""Studies, study-sites, milestones and the site replica in SQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from services.common.filtering import Node
from services.common.sql_filter import FilterField, to_sql
from services.startup_tracker.adapters.tables import (
    country_approvals,
    document_reminders,
    milestone_history,
    milestones,
    site_documents,
    sites_replica,
    studies,
    study_sites,
)
from services.startup_tracker.domain.documents import DocumentStatus, SiteDocument
from services.startup_tracker.domain.model import (
    CountryApproval,
    HistoryEntry,
    MilestoneRecord,
    MilestoneStatus,
    Phase,
    SiteReplica,
    Study,
    StudyDetails,
    StudySite,
)
from services.startup_tracker.domain.templates import MilestoneDefinition, TemplateChoice

STUDY_FILTERS = {
    "sponsor_org": FilterField(studies.c.sponsor_org),
    "phase": FilterField(studies.c.phase, normalise=str.upper),
    "therapeutic_area": FilterField(studies.c.therapeutic_area),
    "protocol_number": FilterField(studies.c.protocol_number),
    "country_codes": FilterField(studies.c.country_codes, kind="list", normalise=str.upper),
}


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def choice_json(choice: TemplateChoice) -> str:
    return json.dumps({
        "skip": list(choice.skip), "target_days": dict(choice.target_days),
        "extra": [{"key": m.key, "display_name": m.display_name,
                   "display_name_ko": m.display_name_ko,
                   "prerequisites": list(m.prerequisites), "target_days": m.target_days}
                  for m in choice.extra],
        "skip_documents": list(choice.skip_documents)})


def choice_from(text: str) -> TemplateChoice:
    data = json.loads(text or "{}")
    return TemplateChoice(
        skip=tuple(data.get("skip", ())),
        target_days=tuple((k, int(v)) for k, v in data.get("target_days", {}).items()),
        extra=tuple(MilestoneDefinition(
            key=m["key"], display_name=m["display_name"], display_name_ko=m["display_name_ko"],
            prerequisites=tuple(m["prerequisites"]), target_days=m["target_days"])
            for m in data.get("extra", ())),
        skip_documents=tuple(data.get("skip_documents", ())))


def _study(row: Any) -> Study:
    details = StudyDetails.model_construct(
        protocol_number=row.protocol_number, title=row.title, sponsor_org=row.sponsor_org,
        phase=Phase(row.phase), therapeutic_area=row.therapeutic_area,
        country_codes=tuple(json.loads(row.country_codes)),
        target_activation_date=row.target_activation_date,
        target_active_sites=row.target_active_sites)
    return Study(study_id=row.study_id, details=details, template_key=row.template_key,
                 template_choice=choice_from(row.template_choice),
                 version=row.version, create_time=_utc(row.create_time),
                 update_time=_utc(row.update_time))


def _study_values(study: Study) -> dict[str, Any]:
    d = study.details
    return dict(
        protocol_number=d.protocol_number, title=d.title, sponsor_org=d.sponsor_org,
        phase=d.phase.value, therapeutic_area=d.therapeutic_area,
        country_codes=json.dumps(list(d.country_codes)), template_key=study.template_key,
        template_choice=choice_json(study.template_choice),
        target_activation_date=d.target_activation_date,
        target_active_sites=d.target_active_sites, version=study.version,
        update_time=study.update_time)


def _replica(row: Any) -> SiteReplica:
    return SiteReplica(site_id=row.site_id, display_name_en=row.display_name_en,
                       display_name_ko=row.display_name_ko, country_code=row.country_code,
                       region_code=row.region_code, status=row.status,
                       time_zone=row.time_zone, version=row.version)


class SqlStudyRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, study_id: str) -> Study | None:
        row = (await self._conn.execute(
            select(studies).where(studies.c.study_id == study_id))).first()
        return _study(row) if row else None

    async def find_by_protocol(self, sponsor_org: str, protocol_number: str) -> Study | None:
        row = (await self._conn.execute(select(studies).where(
            studies.c.sponsor_org == sponsor_org,
            studies.c.protocol_number == protocol_number))).first()
        return _study(row) if row else None

    async def add(self, study: Study) -> None:
        await self._conn.execute(studies.insert().values(
            study_id=study.study_id, create_time=study.create_time, **_study_values(study)))

    async def save(self, study: Study, expected_version: int) -> bool:
        result = await self._conn.execute(update(studies).where(
            studies.c.study_id == study.study_id, studies.c.version == expected_version
        ).values(**_study_values(study)))
        return bool(result.rowcount)

    async def list(self, after: str | None, limit: int, where: Node | None,
                   sponsor_org: str | None, site_ids: frozenset[str] | None) -> list[Study]:
        query = select(studies).where(to_sql(where, STUDY_FILTERS))
        if sponsor_org is not None:
            query = query.where(studies.c.sponsor_org == sponsor_org)
        if site_ids is not None:
            query = query.where(studies.c.study_id.in_(
                select(study_sites.c.study_id).where(study_sites.c.site_id.in_(site_ids))))
        if after is not None:
            query = query.where(studies.c.study_id > after)
        rows = (await self._conn.execute(query.order_by(studies.c.study_id).limit(limit))).all()
        return [_study(r) for r in rows]


# Built once: a statement whose values come as parameters is compiled once and found in
# SQLAlchemy's cache by its shape, not rebuilt and re-keyed value by value on every call.
_UPDATE_MILESTONE = update(milestones).where(
    milestones.c.study_id == bindparam("b_study_id"),
    milestones.c.site_id == bindparam("b_site_id"),
    milestones.c.milestone == bindparam("b_milestone"))
_MILESTONE_FIELDS = ("status", "baseline_date", "planned_date", "actual_date", "note",
                     "update_time")


def _milestone_row(study_site: StudySite, m: MilestoneRecord) -> dict[str, Any]:
    assert m.status is not None
    return {"study_id": study_site.study_id, "site_id": study_site.site.site_id,
            "milestone": m.key, "status": m.status.value, "baseline_date": m.baseline_date,
            "planned_date": m.planned_date, "actual_date": m.actual_date, "note": m.note,
            "update_time": m.update_time or study_site.update_time}


class SqlStudySiteRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        # The milestones as loaded in this transaction, so `save` writes only what changed
        # (a study-site has a dozen or more; a change touches one or two).
        self._loaded: dict[tuple[str, str], dict[str, MilestoneRecord]] = {}

    async def _load(self, rows: list[Any]) -> list[StudySite]:
        if not rows:
            return []
        keys = [(r.study_id, r.site_id) for r in rows]
        site_rows = (await self._conn.execute(select(sites_replica).where(
            sites_replica.c.site_id.in_({k[1] for k in keys})))).all()
        replicas = {r.site_id: _replica(r) for r in site_rows}
        milestone_rows = (await self._conn.execute(select(milestones).where(
            milestones.c.study_id.in_({k[0] for k in keys}),
            milestones.c.site_id.in_({k[1] for k in keys})))).all()
        by_site: dict[tuple[str, str], dict[str, MilestoneRecord]] = {}
        for m in milestone_rows:
            by_site.setdefault((m.study_id, m.site_id), {})[m.milestone] = MilestoneRecord(
                key=m.milestone, status=MilestoneStatus(m.status),
                baseline_date=m.baseline_date, planned_date=m.planned_date,
                actual_date=m.actual_date, note=m.note, update_time=_utc(m.update_time))
        for r in rows:
            self._loaded[(r.study_id, r.site_id)] = dict(by_site.get((r.study_id, r.site_id), {}))
        return [
            StudySite(study_id=r.study_id, site=replicas[r.site_id],
                      milestones=by_site.get((r.study_id, r.site_id), {}),
                      current=r.current_milestone, flagged=bool(r.flagged),
                      flag_reason=r.flag_reason,
                      greenlight_withdrawn=bool(r.greenlight_withdrawn),
                      greenlight_reason=r.greenlight_reason, version=r.version,
                      create_time=_utc(r.create_time), update_time=_utc(r.update_time))
            for r in rows
        ]

    async def get(self, study_id: str, site_id: str) -> StudySite | None:
        rows = (await self._conn.execute(select(study_sites).where(
            study_sites.c.study_id == study_id, study_sites.c.site_id == site_id))).all()
        loaded = await self._load(list(rows))
        return loaded[0] if loaded else None

    async def add(self, study_site: StudySite) -> None:
        await self._conn.execute(study_sites.insert().values(
            study_id=study_site.study_id, site_id=study_site.site.site_id,
            country_code=study_site.site.country_code, region_code=study_site.site.region_code,
            current_milestone="", flagged=study_site.flagged,
            flag_reason=study_site.flag_reason,
            greenlight_withdrawn=study_site.greenlight_withdrawn,
            greenlight_reason=study_site.greenlight_reason, version=study_site.version,
            create_time=study_site.create_time, update_time=study_site.update_time))

    async def save(self, study_site: StudySite, expected_version: int) -> bool:
        key = and_(study_sites.c.study_id == study_site.study_id,
                   study_sites.c.site_id == study_site.site.site_id)
        result = await self._conn.execute(
            update(study_sites).where(key, study_sites.c.version == expected_version).values(
                version=study_site.version, update_time=study_site.update_time,
                current_milestone=study_site.current, flagged=study_site.flagged,
                flag_reason=study_site.flag_reason,
                greenlight_withdrawn=study_site.greenlight_withdrawn,
                greenlight_reason=study_site.greenlight_reason))
        if not result.rowcount:
            return False
        site_key = (study_site.study_id, study_site.site.site_id)
        records = {k: m for k, m in study_site.milestones.items() if m.status is not None}
        stored = self._loaded.get(site_key)
        if stored is None:  # not loaded here: replace them all
            await self._conn.execute(delete(milestones).where(
                milestones.c.study_id == study_site.study_id,
                milestones.c.site_id == study_site.site.site_id))
            stored = {}
        gone = [k for k in stored if k not in records]
        if gone:
            await self._conn.execute(delete(milestones).where(
                milestones.c.study_id == study_site.study_id,
                milestones.c.site_id == study_site.site.site_id,
                milestones.c.milestone.in_(gone)))
        changed = [_milestone_row(study_site, m) for k, m in records.items()
                   if k in stored and stored[k] != m]
        if changed:
            await self._conn.execute(_UPDATE_MILESTONE, [
                {"b_study_id": row["study_id"], "b_site_id": row["site_id"],
                 "b_milestone": row["milestone"], **{f: row[f] for f in _MILESTONE_FIELDS}}
                for row in changed])
        added = [_milestone_row(study_site, m) for k, m in records.items() if k not in stored]
        if added:
            await self._conn.execute(insert(milestones), added)
        self._loaded[site_key] = records
        return True

    async def all_of_study(self, study_id: str,
                           site_ids: frozenset[str] | None) -> list[StudySite]:
        query = select(study_sites).where(study_sites.c.study_id == study_id)
        if site_ids is not None:
            query = query.where(study_sites.c.site_id.in_(site_ids))
        rows = (await self._conn.execute(query.order_by(study_sites.c.site_id))).all()
        return await self._load(list(rows))

    async def of_site(self, site_id: str) -> list[StudySite]:
        rows = (await self._conn.execute(select(study_sites).where(
            study_sites.c.site_id == site_id).order_by(study_sites.c.study_id))).all()
        return await self._load(list(rows))


def _approval(row: Any) -> CountryApproval:
    return CountryApproval(
        country_code=row.country_code, authority=row.authority,
        status=MilestoneStatus(row.status), submitted_date=row.submitted_date,
        decision_date=row.decision_date, reference=row.reference, note=row.note,
        update_time=_utc(row.update_time))


class SqlCountryApprovalRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, study_id: str, country_code: str) -> CountryApproval | None:
        row = (await self._conn.execute(select(country_approvals).where(
            country_approvals.c.study_id == study_id,
            country_approvals.c.country_code == country_code))).first()
        return _approval(row) if row else None

    async def of_study(self, study_id: str) -> list[CountryApproval]:
        rows = (await self._conn.execute(select(country_approvals).where(
            country_approvals.c.study_id == study_id).order_by(
                country_approvals.c.country_code))).all()
        return [_approval(r) for r in rows]

    async def put(self, study_id: str, approval: CountryApproval) -> None:
        assert approval.status is not None
        values = {"authority": approval.authority, "status": approval.status.value,
                  "submitted_date": approval.submitted_date,
                  "decision_date": approval.decision_date, "reference": approval.reference,
                  "note": approval.note, "update_time": approval.update_time}
        key = and_(country_approvals.c.study_id == study_id,
                   country_approvals.c.country_code == approval.country_code)
        result = await self._conn.execute(update(country_approvals).where(key).values(**values))
        if not result.rowcount:
            await self._conn.execute(country_approvals.insert().values(
                study_id=study_id, country_code=approval.country_code, **values))


class SqlSiteReplicaRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def get(self, site_id: str) -> SiteReplica | None:
        row = (await self._conn.execute(
            select(sites_replica).where(sites_replica.c.site_id == site_id))).first()
        return _replica(row) if row else None

    async def upsert(self, site: SiteReplica) -> bool:
        values = {"display_name_en": site.display_name_en,
                  "display_name_ko": site.display_name_ko, "country_code": site.country_code,
                  "region_code": site.region_code, "status": site.status,
                  "time_zone": site.time_zone, "version": site.version}
        existing = await self.get(site.site_id)
        if existing is None:
            await self._conn.execute(sites_replica.insert().values(site_id=site.site_id,
                                                                   **values))
            return True
        if existing.version >= site.version:
            return False  # an older event arriving late changes nothing
        await self._conn.execute(update(sites_replica).where(
            sites_replica.c.site_id == site.site_id).values(**values))
        await self._conn.execute(update(study_sites).where(
            study_sites.c.site_id == site.site_id).values(
                country_code=site.country_code, region_code=site.region_code))
        return True


class SqlMilestoneHistory:
    """Append-only: this class has no update or delete, and neither has the API."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def append(self, study_id: str, site_id: str, key: str, before: dict[str, object],
                     after: dict[str, object], actor: str, role: str, reason: str,
                     record_time: datetime) -> None:
        await self._conn.execute(milestone_history.insert(), dict(
            study_id=study_id, site_id=site_id, milestone=key,
            before=json.dumps(before, ensure_ascii=False),
            after=json.dumps(after, ensure_ascii=False), actor=actor, role=role,
            reason=reason, record_time=record_time))

    async def list(self, study_id: str, site_id: str, after: int | None,
                   limit: int) -> list[HistoryEntry]:
        query = select(milestone_history).where(milestone_history.c.study_id == study_id,
                                                milestone_history.c.site_id == site_id)
        if after is not None:
            query = query.where(milestone_history.c.entry_id > after)
        rows = (await self._conn.execute(
            query.order_by(milestone_history.c.entry_id).limit(limit))).all()
        return [HistoryEntry(entry_id=r.entry_id, milestone=r.milestone, before=r.before,
                             after=r.after, actor=r.actor, role=r.role, reason=r.reason,
                             record_time=_utc(r.record_time)) for r in rows]


def _document(row: Any) -> SiteDocument:
    return SiteDocument(
        key=row.document, status=DocumentStatus(row.status), version=row.version,
        uri=row.uri, content_hash=row.content_hash, expiry_date=row.expiry_date,
        status_date=row.status_date, approved_date=row.approved_date, reason=row.reason,
        note=row.note, actor=row.actor, expected_time=_utc(row.expected_time),
        update_time=_utc(row.update_time) if row.update_time else None)


class SqlSiteDocuments:
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def of_site(self, study_id: str, site_id: str) -> dict[str, SiteDocument]:
        rows = (await self._conn.execute(select(site_documents).where(
            site_documents.c.study_id == study_id, site_documents.c.site_id == site_id))).all()
        return {r.document: _document(r) for r in rows}

    async def of_study(self, study_id: str) -> dict[str, dict[str, SiteDocument]]:
        rows = (await self._conn.execute(select(site_documents).where(
            site_documents.c.study_id == study_id))).all()
        out: dict[str, dict[str, SiteDocument]] = {}
        for r in rows:
            out.setdefault(r.site_id, {})[r.document] = _document(r)
        return out

    async def put(self, study_id: str, site_id: str, doc: SiteDocument) -> None:
        values = {"status": doc.status.value, "version": doc.version, "uri": doc.uri,
                  "content_hash": doc.content_hash, "expiry_date": doc.expiry_date,
                  "status_date": doc.status_date, "approved_date": doc.approved_date,
                  "reason": doc.reason, "note": doc.note, "actor": doc.actor,
                  "expected_time": doc.expected_time, "update_time": doc.update_time}
        key = and_(site_documents.c.study_id == study_id, site_documents.c.site_id == site_id,
                   site_documents.c.document == doc.key)
        result = await self._conn.execute(update(site_documents).where(key).values(**values))
        if not result.rowcount:
            await self._conn.execute(site_documents.insert().values(
                study_id=study_id, site_id=site_id, document=doc.key, **values))

    async def study_ids(self) -> list[str]:
        rows = (await self._conn.execute(
            select(site_documents.c.study_id).distinct().order_by(
                site_documents.c.study_id))).all()
        return [r.study_id for r in rows]

    async def claim_reminder(self, study_id: str, site_id: str, document: str, kind: str,
                             occasion: str, now: datetime) -> bool:
        """True the first time this reminder is claimed; False ever after."""
        exists = (await self._conn.execute(select(document_reminders.c.kind).where(
            document_reminders.c.study_id == study_id, document_reminders.c.site_id == site_id,
            document_reminders.c.document == document, document_reminders.c.kind == kind,
            document_reminders.c.occasion == occasion))).first()
        if exists:
            return False
        await self._conn.execute(insert(document_reminders).values(
            study_id=study_id, site_id=site_id, document=document, kind=kind,
            occasion=occasion, raise_time=now))
        return True
