"""What the registry's use cases need from storage, as protocols (adapters implement them)."""

from __future__ import annotations

from typing import Protocol

from services.common.filtering import Node
from services.common.ports import RequestLog
from services.site_registry.domain.events import RegistryEvent
from services.site_registry.domain.model import Site


class SiteRepository(Protocol):
    async def get(self, site_id: str) -> Site | None: ...
    async def find_by_institution(self, institution_key: str) -> Site | None: ...
    async def add(self, site: Site) -> None: ...
    async def save(self, site: Site, expected_version: int) -> bool:
        """Store `site` if the stored version is still `expected_version`."""
        ...
    async def list(self, after: str | None, limit: int, where: Node | None) -> list[Site]: ...


class RegistryUnitOfWork(Protocol):
    sites: SiteRepository
    requests: RequestLog

    async def __aenter__(self) -> RegistryUnitOfWork: ...
    async def __aexit__(self, *exc: object) -> None: ...
    def emit(self, event: RegistryEvent) -> None: ...
    async def commit(self) -> None: ...
