"""Sites of the network and the rules they follow. Pure: stdlib and pydantic only."""

from __future__ import annotations

import datetime as dt
import unicodedata
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from services.common.errors import FailedPrecondition, PreconditionViolation
from services.common.geography import COUNTRY_CODES, DEFAULT_TIME_ZONES, region_problem


class SiteStatus(StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    CLOSED = "CLOSED"


Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
RequiredText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                max_length=200)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, min_length=1,
                                       max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9-]*$")]

# Fields a client may set; the rest (name, status, times, etag) are the registry's.
UPDATABLE_FIELDS = (
    "display_name_en", "display_name_ko", "institution", "country_code", "region_code", "city",
    "irb_of_record", "therapeutic_areas", "capabilities", "time_zone", "address",
    "mfds_designation_number", "mfds_designation_date", "principal_investigators", "contacts",
)


class PrincipalInvestigator(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    display_name: RequiredText
    specialty: Text = ""


class Contact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    role: Text = ""
    display_name: RequiredText
    # Loose on purpose: a registry of many countries gets many styles of address.
    email: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200,
                                            pattern=r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$")] = ""
    phone: Annotated[str, StringConstraints(strip_whitespace=True, max_length=40,
                                            pattern=r"^[0-9+()\- .]*$")] = ""


class Transition(StrEnum):
    """Status changes an admin may make; each needs a reason."""

    SUSPEND = "SUSPEND"
    REACTIVATE = "REACTIVATE"
    CLOSE = "CLOSE"


# From which status each transition is allowed, and where it leads. Closed is final.
TRANSITIONS: dict[Transition, tuple[frozenset[SiteStatus], SiteStatus]] = {
    Transition.SUSPEND: (frozenset({SiteStatus.ACTIVE}), SiteStatus.SUSPENDED),
    Transition.REACTIVATE: (frozenset({SiteStatus.SUSPENDED}), SiteStatus.ACTIVE),
    Transition.CLOSE: (frozenset({SiteStatus.ACTIVE, SiteStatus.SUSPENDED}), SiteStatus.CLOSED),
}


class SiteDetails(BaseModel):
    """What describes a site; validated the same way on create and on update."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    display_name_en: RequiredText
    display_name_ko: Text = ""
    institution: Text = ""
    country_code: Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True)]
    region_code: Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True)] = ""
    city: Text = ""
    irb_of_record: Text = ""
    therapeutic_areas: tuple[Tag, ...] = Field(default=(), max_length=50)
    capabilities: tuple[Tag, ...] = Field(default=(), max_length=50)
    time_zone: Text = ""
    address: Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] = ""
    mfds_designation_number: Annotated[str, StringConstraints(strip_whitespace=True,
                                                              max_length=64)] = ""
    mfds_designation_date: dt.date | None = None
    principal_investigators: tuple[PrincipalInvestigator, ...] = Field(default=(), max_length=200)
    contacts: tuple[Contact, ...] = Field(default=(), max_length=50)

    @field_validator("country_code")
    @classmethod
    def _country(cls, value: str) -> str:
        if value not in COUNTRY_CODES:
            raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
        return value

    @field_validator("therapeutic_areas", "capabilities")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(value))

    @model_validator(mode="after")
    def _region_and_zone(self) -> SiteDetails:
        if self.region_code:
            problem = region_problem(self.country_code, self.region_code)
            if problem:
                raise ValueError(f"region_code: {problem}")
        zone = self.time_zone or DEFAULT_TIME_ZONES.get(self.country_code, "UTC")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"time_zone: {zone!r} is not an IANA time zone") from exc
        object.__setattr__(self, "time_zone", zone)
        return self

    @property
    def institution_key(self) -> str:
        """What makes two registrations the same institution: country plus normalised name."""
        name = self.institution or self.display_name_en
        folded = unicodedata.normalize("NFKC", name).casefold()
        return f"{self.country_code}:{' '.join(folded.split())}"


class Site(BaseModel):
    model_config = ConfigDict(frozen=True)

    site_id: str
    details: SiteDetails
    status: SiteStatus = SiteStatus.ACTIVE
    status_reason: str = ""
    status_change_time: datetime | None = None
    version: int = 1
    create_time: datetime
    update_time: datetime

    @property
    def name(self) -> str:
        return f"sites/{self.site_id}"

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    def sort_key(self, order: str | None) -> list[str]:
        """Where a page ends under `order` (a sort field or None for id order): the sort
        value and the id, so the next page resumes exactly after it."""
        if order is None:
            return [self.site_id]
        if order in ("create_time", "update_time"):
            moment: datetime = getattr(self, order)
            return [moment.isoformat(), self.site_id]
        return [str(getattr(self.details, order)), self.site_id]

    def transitioned(self, transition: Transition, reason: str, now: datetime) -> Site:
        """The site after `transition`; an invalid one is a failed precondition."""
        allowed_from, target = TRANSITIONS[transition]
        if self.status not in allowed_from:
            final = " (closed is final)" if self.status is SiteStatus.CLOSED else ""
            raise FailedPrecondition([PreconditionViolation(
                "SITE_STATUS", self.name,
                f"cannot {transition.value.lower()} a site that is {self.status.value}{final}; "
                f"allowed from {', '.join(sorted(s.value for s in allowed_from))}")])
        return self.model_copy(update={
            "status": target, "status_reason": reason, "status_change_time": now,
            "version": self.version + 1, "update_time": now,
        })

    def updated(self, changes: dict[str, Any], now: datetime) -> tuple[Site, list[str]]:
        """The site with `changes` applied, and which fields really changed."""
        merged = {**self.details.model_dump(), **changes}
        details = SiteDetails.model_validate(merged)
        changed = [f for f in UPDATABLE_FIELDS
                   if getattr(details, f) != getattr(self.details, f)]
        if not changed:
            return self, []
        return self.model_copy(update={
            "details": details, "version": self.version + 1, "update_time": now,
        }), changed


class AuditAction(StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    SUSPEND = "SUSPEND"
    REACTIVATE = "REACTIVATE"
    CLOSE = "CLOSE"
    IMPORT = "IMPORT"


class AuditEntry(BaseModel):
    """One change to a site, kept for good (ICH E6(R3), 21 CFR Part 11): append-only."""

    model_config = ConfigDict(frozen=True)

    entry_id: int = 0  # assigned by storage, increasing
    site_id: str
    action: AuditAction
    actor_subject: str
    actor_role: str
    create_time: datetime
    before: Site | None
    after: Site
    changed_fields: tuple[str, ...] = ()
    reason: str = ""
