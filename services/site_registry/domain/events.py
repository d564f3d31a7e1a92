"""What happened in the registry, as the domain says it."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.identity import Principal
from services.site_registry.domain.model import Site


@dataclass(frozen=True)
class SiteRegistered:
    site: Site
    actor: Principal


@dataclass(frozen=True)
class SiteUpdated:
    site: Site
    before: Site
    changed_fields: tuple[str, ...]
    actor: Principal
    reason: str = ""


@dataclass(frozen=True)
class SiteStatusChanged:
    site: Site
    before: Site
    actor: Principal
    reason: str


RegistryEvent = SiteRegistered | SiteUpdated | SiteStatusChanged
