"""Who is calling: the principal a verified token stands for, and what it may see."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    SPONSOR = "sponsor"  # scoped to its organisation's studies
    SITE = "site"  # scoped to its own sites
    OPS = "ops"  # reads everything, changes nothing


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role
    org: str | None = None
    sites: frozenset[str] = field(default_factory=frozenset)  # site ids, e.g. "snuh"

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def may_read_study(self, sponsor_org: str) -> bool:
        if self.role in (Role.ADMIN, Role.OPS):
            return True
        if self.role is Role.SPONSOR:
            return self.org == sponsor_org
        return False  # site users see study-sites of their own sites, not whole studies

    def may_read_site(self, site_id: str) -> bool:
        if self.role is Role.SITE:
            return site_id in self.sites
        return True
