"""Studies, their sites and milestones, and the rules of recording them.
Pure: stdlib and pydantic only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from services.common.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PreconditionViolation,
)
from services.common.geography import COUNTRY_CODES
from services.startup_tracker.domain.templates import MilestoneDefinition, MilestoneTemplate


class Phase(StrEnum):
    PHASE_1 = "PHASE_1"
    PHASE_1_2 = "PHASE_1_2"
    PHASE_2 = "PHASE_2"
    PHASE_2_3 = "PHASE_2_3"
    PHASE_3 = "PHASE_3"
    PHASE_4 = "PHASE_4"


class MilestoneStatus(StrEnum):
    PLANNED = "PLANNED"
    IN_PROGRESS = "IN_PROGRESS"
    DONE = "DONE"
    NOT_APPLICABLE = "NOT_APPLICABLE"
    APPROVED_WITH_CONDITIONS = "APPROVED_WITH_CONDITIONS"
    REJECTED = "REJECTED"

    @property
    def completes(self) -> bool:
        """Counts as done for the milestones that depend on it."""
        return self in (MilestoneStatus.DONE, MilestoneStatus.APPROVED_WITH_CONDITIONS,
                        MilestoneStatus.NOT_APPLICABLE)

    @property
    def happened(self) -> bool:
        """Has an actual date."""
        return self in (MilestoneStatus.DONE, MilestoneStatus.APPROVED_WITH_CONDITIONS,
                        MilestoneStatus.REJECTED)


RequiredText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                max_length=200)]
Org = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=63,
                                       pattern=r"^[a-z0-9][a-z0-9-]*$")]


class StudyDetails(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol_number: RequiredText
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                            max_length=500)]
    sponsor_org: Org
    phase: Phase
    therapeutic_area: Annotated[str, StringConstraints(strip_whitespace=True,
                                                       max_length=64)] = ""
    country_codes: tuple[str, ...] = Field(default=(), max_length=100)

    @field_validator("country_codes")
    @classmethod
    def _countries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        codes = tuple(dict.fromkeys(c.strip().upper() for c in value))
        bad = [c for c in codes if c not in COUNTRY_CODES]
        if bad:
            raise ValueError(f"not ISO 3166-1 alpha-2 country codes: {', '.join(bad)}")
        return codes


class Study(BaseModel):
    model_config = ConfigDict(frozen=True)

    study_id: str
    details: StudyDetails
    template_key: str
    version: int = 1
    create_time: dt.datetime
    update_time: dt.datetime

    @property
    def name(self) -> str:
        return f"studies/{self.study_id}"

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


@dataclass(frozen=True)
class SiteReplica:
    """The tracker's copy of a registry site, kept from the registry's events."""

    site_id: str
    display_name_en: str
    display_name_ko: str
    country_code: str
    region_code: str
    status: str  # ACTIVE, SUSPENDED, CLOSED
    time_zone: str
    version: int

    @property
    def name(self) -> str:
        return f"sites/{self.site_id}"


@dataclass(frozen=True)
class MilestoneRecord:
    key: str
    status: MilestoneStatus | None = None  # None: never recorded
    baseline_date: dt.date | None = None
    planned_date: dt.date | None = None
    actual_date: dt.date | None = None
    note: str = ""
    update_time: dt.datetime | None = None


@dataclass(frozen=True)
class StudySite:
    study_id: str
    site: SiteReplica
    milestones: dict[str, MilestoneRecord] = field(default_factory=dict)
    current: str = ""  # latest milestone done, kept by record_milestone
    version: int = 1
    create_time: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    update_time: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def name(self) -> str:
        return f"studies/{self.study_id}/sites/{self.site.site_id}"

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    def milestone(self, key: str) -> MilestoneRecord:
        return self.milestones.get(key) or MilestoneRecord(key=key)

    def current_milestone(self, template: MilestoneTemplate) -> str:
        """Latest milestone, in template order, that is done."""
        done = [m.key for m in template.milestones
                if (s := self.milestone(m.key).status) is not None and s.completes
                and s is not MilestoneStatus.NOT_APPLICABLE]
        return done[-1] if done else ""

    def startup_day(self, on: dt.date) -> int:
        """Day of start-up `on` falls on; day 1 is the day the site was selected."""
        selected = self.milestone("site-selected").actual_date
        return (on - selected).days + 1 if selected else 0


@dataclass(frozen=True)
class MilestoneChange:
    status: MilestoneStatus
    planned_date: dt.date | None
    actual_date: dt.date | None
    note: str
    reason: str


MAX_NOTE = 2000
MAX_REASON = 500


def record_milestone(study_site: StudySite, template: MilestoneTemplate, key: str,
                     change: MilestoneChange, today: dt.date,
                     now: dt.datetime) -> tuple[StudySite, MilestoneRecord, MilestoneRecord]:
    """Apply `change` to milestone `key`; returns (study-site after, before, after).

    `today` is the current date in the site's time zone: an actual date after it
    lies in the future.
    """
    definition = template.get(key)
    if definition is None:
        raise InvalidArgument([FieldViolation(
            "milestone", f"{key!r} is not a milestone of template {template.key!r}; "
                         f"milestones: {', '.join(template.keys)}")])
    _check_fields(definition, change, today)
    before = study_site.milestone(key)
    if before.status is not None and before.status.happened and not change.reason:
        raise InvalidArgument([FieldViolation(
            "reason", f"{key} is already {before.status.value}: say why it is being corrected")])
    if change.status.completes or change.status.happened:
        _check_prerequisites(study_site, template, definition, change)
    after = MilestoneRecord(
        key=key,
        status=change.status,
        baseline_date=before.baseline_date or change.planned_date,
        planned_date=change.planned_date or before.planned_date,
        actual_date=change.actual_date if change.status.happened else None,
        note=change.note,
        update_time=now,
    )
    milestones = {**study_site.milestones, key: after}
    updated = replace(study_site, milestones=milestones, version=study_site.version + 1,
                      update_time=now)
    updated = replace(updated, current=updated.current_milestone(template))
    return updated, before, after


def _check_fields(definition: MilestoneDefinition, change: MilestoneChange,
                  today: dt.date) -> None:
    violations = []
    if change.status in (MilestoneStatus.APPROVED_WITH_CONDITIONS, MilestoneStatus.REJECTED) \
            and not definition.irb_decision:
        violations.append(FieldViolation(
            "status", f"{change.status.value} applies only to an IRB decision"))
    if change.status.happened and change.actual_date is None:
        violations.append(FieldViolation("actual_date", f"required for {change.status.value}"))
    if not change.status.happened and change.actual_date is not None:
        violations.append(FieldViolation(
            "actual_date", f"only a milestone that happened has one, not {change.status.value}"))
    if change.actual_date is not None and change.actual_date > today:
        violations.append(FieldViolation(
            "actual_date", f"{change.actual_date.isoformat()} is in the future "
                           f"(today is {today.isoformat()} at the site)"))
    if len(change.note) > MAX_NOTE:
        violations.append(FieldViolation("note", f"longer than {MAX_NOTE} characters"))
    if len(change.reason) > MAX_REASON:
        violations.append(FieldViolation("reason", f"longer than {MAX_REASON} characters"))
    if violations:
        raise InvalidArgument(violations)


def _check_prerequisites(study_site: StudySite, template: MilestoneTemplate,
                         definition: MilestoneDefinition, change: MilestoneChange) -> None:
    violations = []
    for key in definition.prerequisites:
        record = study_site.milestone(key)
        subject = f"{study_site.name}/milestones/{key}"
        if record.status is None or not record.status.completes:
            state = record.status.value if record.status else "not recorded"
            violations.append(PreconditionViolation(
                "MILESTONE", subject, f"{key} must be done first (it is {state})"))
        elif (change.actual_date and record.actual_date
              and change.actual_date < record.actual_date):
            violations.append(PreconditionViolation(
                "MILESTONE_DATE", subject,
                f"{definition.key} cannot happen on {change.actual_date.isoformat()}, before "
                f"{key} on {record.actual_date.isoformat()}"))
    if violations:
        raise FailedPrecondition(violations)
