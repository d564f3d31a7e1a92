"""What the tracker's use cases need from storage."""

from __future__ import annotations

from typing import Protocol

from services.common.filtering import Node
from services.common.ports import Inbox, RequestLog
from services.startup_tracker.domain.events import TrackerEvent
from services.startup_tracker.domain.model import SiteReplica, Study, StudySite


class StudyRepository(Protocol):
    async def get(self, study_id: str) -> Study | None: ...
    async def find_by_protocol(self, sponsor_org: str, protocol_number: str) -> Study | None: ...
    async def add(self, study: Study) -> None: ...
    async def list(self, after: str | None, limit: int, where: Node | None,
                   sponsor_org: str | None, site_ids: frozenset[str] | None) -> list[Study]: ...


class StudySiteRepository(Protocol):
    async def get(self, study_id: str, site_id: str) -> StudySite | None: ...
    async def add(self, study_site: StudySite) -> None: ...
    async def save(self, study_site: StudySite, expected_version: int) -> bool: ...
    async def list(self, study_id: str, after: str | None, limit: int, where: Node | None,
                   site_ids: frozenset[str] | None) -> list[StudySite]: ...


class SiteReplicaRepository(Protocol):
    async def get(self, site_id: str) -> SiteReplica | None: ...
    async def upsert(self, site: SiteReplica) -> bool:
        """Store `site` unless a newer version is already held; True if stored."""
        ...


class MilestoneHistory(Protocol):
    async def append(self, study_site: StudySite, key: str, before: dict[str, object],
                     after: dict[str, object], actor: str, role: str, reason: str) -> None: ...


class TrackerUnitOfWork(Protocol):
    studies: StudyRepository
    study_sites: StudySiteRepository
    sites: SiteReplicaRepository
    history: MilestoneHistory
    inbox: Inbox
    requests: RequestLog

    async def __aenter__(self) -> TrackerUnitOfWork: ...
    async def __aexit__(self, *exc: object) -> None: ...
    def emit(self, event: TrackerEvent) -> None: ...
    async def commit(self) -> None: ...
