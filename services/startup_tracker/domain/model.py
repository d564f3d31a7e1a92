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
from services.common.validation import MAX_REASON
from services.startup_tracker.domain.documents import GREENLIGHT_MILESTONE
from services.startup_tracker.domain.templates import (
    COUNTRY_GATED,
    MilestoneDefinition,
    MilestoneTemplate,
    TemplateChoice,
)


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
    target_activation_date: dt.date | None = None
    target_active_sites: int = Field(default=0, ge=0, le=100_000)

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
    template_choice: TemplateChoice = TemplateChoice()
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
class CountryApproval:
    """A country's regulatory approval of a study (MFDS IND approval for KR)."""

    country_code: str
    authority: str
    status: MilestoneStatus | None = None
    submitted_date: dt.date | None = None
    decision_date: dt.date | None = None
    reference: str = ""
    note: str = ""
    update_time: dt.datetime | None = None

    @property
    def approved(self) -> bool:
        return self.status is not None and self.status in (
            MilestoneStatus.DONE, MilestoneStatus.APPROVED_WITH_CONDITIONS)


@dataclass(frozen=True)
class HistoryEntry:
    """One audit entry, as stored: before and after are JSON texts."""

    entry_id: int
    milestone: str
    before: str
    after: str
    actor: str
    role: str
    reason: str
    record_time: dt.datetime


class StudySiteStatus(StrEnum):
    NOT_STARTED = "NOT_STARTED"
    IN_STARTUP = "IN_STARTUP"
    ACTIVATED = "ACTIVATED"
    ENROLLING = "ENROLLING"


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
    flagged: bool = False  # the registry suspended or closed the site while in the study
    flag_reason: str = ""
    # The greenlight (essential documents complete) was withdrawn: a required document
    # expired, was rejected or replaced after it had been given.
    greenlight_withdrawn: bool = False
    greenlight_reason: str = ""
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

    def done(self, key: str) -> bool:
        status = self.milestone(key).status
        return status in (MilestoneStatus.DONE, MilestoneStatus.APPROVED_WITH_CONDITIONS)

    def target_date(self, template: MilestoneTemplate, key: str) -> dt.date | None:
        """Site selection plus the template's target days; None before selection."""
        definition = template.get(key)
        selected = self.milestone("site-selected").actual_date
        if definition is None or definition.target_days is None or selected is None:
            return None
        return selected + dt.timedelta(days=definition.target_days)

    def days_overdue(self, template: MilestoneTemplate, key: str, today: dt.date) -> int:
        """Days past its target while not done (0 when on time, done or not applicable)."""
        status = self.milestone(key).status
        target = self.target_date(template, key)
        if target is None or (status is not None and status.completes):
            return 0
        return max(0, (today - target).days)

    def overdue(self, template: MilestoneTemplate, today: dt.date) -> list[tuple[str, int]]:
        return [(k, d) for k in template.keys if (d := self.days_overdue(template, k, today))]

    def status(self) -> StudySiteStatus:
        if self.done("first-patient-in"):
            return StudySiteStatus.ENROLLING
        if self.done("site-activated"):
            return StudySiteStatus.ACTIVATED
        if any(m.status is not None and (m.status.happened or m.status.completes)
               for m in self.milestones.values()):
            return StudySiteStatus.IN_STARTUP
        return StudySiteStatus.NOT_STARTED

    def planned_activation_date(self, template: MilestoneTemplate) -> dt.date | None:
        record = self.milestone("site-activated")
        return record.planned_date or self.target_date(template, "site-activated")

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
NEVER_NOT_APPLICABLE = frozenset({"site-selected", "site-activated"})


def slip_days(record: MilestoneRecord) -> tuple[int, int]:
    """(planned - baseline, actual - baseline) in days; 0 where a date is missing."""
    base = record.baseline_date
    planned = (record.planned_date - base).days if base and record.planned_date else 0
    actual = (record.actual_date - base).days if base and record.actual_date else 0
    return planned, actual


def _is_resubmission(study_site: StudySite, definition: MilestoneDefinition,
                     template: MilestoneTemplate, change: MilestoneChange) -> bool:
    """An IRB resubmission after a rejection, or the decision on it: new entries, not
    corrections, so they need no reason (history keeps the rejected round)."""
    decisions = [k for k in template.dependents(definition.key)
                 if (d := template.get(k)) is not None and d.irb_decision]
    for decision in decisions:  # definition is the submission
        record = study_site.milestone(decision)
        if record.status is MilestoneStatus.REJECTED and change.actual_date and \
                record.actual_date and change.actual_date >= record.actual_date:
            return True
    before = study_site.milestone(definition.key)
    if definition.irb_decision and before.status is MilestoneStatus.REJECTED:
        for key in definition.prerequisites:  # resubmitted on or after the rejection
            submitted = study_site.milestone(key).actual_date
            if submitted and before.actual_date and submitted >= before.actual_date:
                return True
    return False


def record_milestone(study_site: StudySite, template: MilestoneTemplate, key: str,
                     change: MilestoneChange, today: dt.date, now: dt.datetime,
                     approval: CountryApproval | None = None
                     ) -> tuple[StudySite, MilestoneRecord, MilestoneRecord]:
    """Apply `change` to milestone `key`; returns (study-site after, before, after).

    `today` is the current date in the site's time zone: an actual date after it
    lies in the future. `approval` is the study's regulatory approval in the
    site's country, which activation waits for.
    """
    definition = template.get(key)
    if definition is None:
        raise InvalidArgument([FieldViolation(
            "milestone", f"{key!r} is not a milestone of template {template.key!r}; "
                         f"milestones: {', '.join(template.keys)}")])
    if key == GREENLIGHT_MILESTONE:
        raise FailedPrecondition([PreconditionViolation(
            "DERIVED_MILESTONE", f"{study_site.name}/milestones/{key}",
            f"{key} is derived: it is done when every required document of the site is "
            "approved and unexpired (RecordDocumentStatus)")])
    _check_fields(definition, change, today)
    before = study_site.milestone(key)
    if before.status is not None and before.status.happened and not change.reason \
            and not _is_resubmission(study_site, definition, template, change):
        raise InvalidArgument([FieldViolation(
            "reason", f"{key} is already {before.status.value}: say why it is being corrected")])
    if change.status.happened:
        _check_prerequisites(study_site, template, definition, change)
        if key in COUNTRY_GATED:
            _check_gates(study_site, change, approval)
    _check_dependents(study_site, template, definition, change)
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
    if change.status is MilestoneStatus.NOT_APPLICABLE and \
            definition.key in NEVER_NOT_APPLICABLE:
        violations.append(FieldViolation(
            "status", f"{definition.key} cannot be NOT_APPLICABLE"))
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


def _check_gates(study_site: StudySite, change: MilestoneChange,
                 approval: CountryApproval | None) -> None:
    """Activation also waits for the country's approval and an active registry site."""
    violations = []
    country = study_site.site.country_code
    subject = f"studies/{study_site.study_id}/countries/{country}"
    if approval is None or not approval.approved:
        state = approval.status.value if approval and approval.status else "not recorded"
        authority = approval.authority if approval else "the regulator"
        violations.append(PreconditionViolation(
            "COUNTRY_APPROVAL", subject,
            f"regulatory approval in {country} ({authority}) must be done first (it is {state})"))
    elif change.actual_date and approval.decision_date and \
            change.actual_date < approval.decision_date:
        violations.append(PreconditionViolation(
            "COUNTRY_APPROVAL_DATE", subject,
            f"activation on {change.actual_date.isoformat()} cannot precede the approval in "
            f"{country} on {approval.decision_date.isoformat()}"))
    if study_site.site.status != "ACTIVE":
        violations.append(PreconditionViolation(
            "SITE_STATUS", study_site.site.name,
            f"{study_site.site.name} is {study_site.site.status} in the registry"))
    if violations:
        raise FailedPrecondition(violations)


def _check_dependents(study_site: StudySite, template: MilestoneTemplate,
                      definition: MilestoneDefinition, change: MilestoneChange) -> None:
    """A correction cannot pull a milestone out from under one already done after it."""
    violations = []
    for key in template.dependents(definition.key):
        record = study_site.milestone(key)
        if not study_site.done(key):
            continue
        subject = f"{study_site.name}/milestones/{key}"
        if not change.status.completes:
            violations.append(PreconditionViolation(
                "DEPENDENT_MILESTONE", subject,
                f"{key} is already done, so {definition.key} must stay done"))
        elif change.actual_date and record.actual_date and \
                change.actual_date > record.actual_date:
            violations.append(PreconditionViolation(
                "DEPENDENT_MILESTONE_DATE", subject,
                f"{definition.key} cannot move to {change.actual_date.isoformat()}, after "
                f"{key} on {record.actual_date.isoformat()}"))
    if violations:
        raise FailedPrecondition(violations)


@dataclass(frozen=True)
class ApprovalChange:
    status: MilestoneStatus
    authority: str
    submitted_date: dt.date | None
    decision_date: dt.date | None
    reference: str
    note: str
    reason: str


def record_country_approval(study: Study, country: str, before: CountryApproval,
                            change: ApprovalChange, today: dt.date, now: dt.datetime,
                            activated: list[StudySite]) -> CountryApproval:
    """The approval after `change`; `activated` are the country's sites already active."""
    violations = []
    countries = study.details.country_codes
    if country not in COUNTRY_CODES:
        violations.append(FieldViolation("name", f"{country!r} is not an ISO 3166-1 country"))
    elif countries and country not in countries:
        violations.append(FieldViolation(
            "name", f"{country} is not among the study's countries ({', '.join(countries)})"))
    if change.status is MilestoneStatus.NOT_APPLICABLE:
        violations.append(FieldViolation("approval.status", "a regulatory approval applies"))
    decided = change.status in (MilestoneStatus.DONE, MilestoneStatus.APPROVED_WITH_CONDITIONS,
                                MilestoneStatus.REJECTED)
    if decided and change.decision_date is None:
        violations.append(FieldViolation("approval.decision_date",
                                         f"required for {change.status.value}"))
    if not decided and change.decision_date is not None:
        violations.append(FieldViolation("approval.decision_date",
                                         f"only a decision has one, not {change.status.value}"))
    for name, value in (("submitted_date", change.submitted_date),
                        ("decision_date", change.decision_date)):
        if value is not None and value > today:
            violations.append(FieldViolation(
                f"approval.{name}", f"{value.isoformat()} is in the future (today is "
                                    f"{today.isoformat()})"))
    if change.submitted_date and change.decision_date and \
            change.decision_date < change.submitted_date:
        violations.append(FieldViolation("approval.decision_date",
                                         "cannot precede the submitted date"))
    for label, text, limit in (("approval.reference", change.reference, 200),
                               ("approval.note", change.note, MAX_NOTE),
                               ("approval.authority", change.authority, 100),
                               ("reason", change.reason, MAX_REASON)):
        if len(text) > limit:
            violations.append(FieldViolation(label, f"longer than {limit} characters"))
    if before.status is not None and before.status in (
            MilestoneStatus.DONE, MilestoneStatus.APPROVED_WITH_CONDITIONS) and not change.reason:
        violations.append(FieldViolation(
            "reason", f"the approval in {country} is already {before.status.value}: say why it "
                      "is being corrected"))
    if violations:
        raise InvalidArgument(violations)
    after = CountryApproval(
        country_code=country, authority=change.authority or before.authority,
        status=change.status, submitted_date=change.submitted_date or before.submitted_date,
        decision_date=change.decision_date, reference=change.reference or before.reference,
        note=change.note, update_time=now)
    blocked = []
    for study_site in activated:
        on = study_site.milestone("site-activated").actual_date
        if not after.approved or (on and after.decision_date and after.decision_date > on):
            blocked.append(PreconditionViolation(
                "ACTIVATED_SITE", f"{study_site.name}/milestones/site-activated",
                f"{study_site.name} was activated on {on.isoformat() if on else '?'} on the "
                "strength of this approval"))
    if blocked:
        raise FailedPrecondition(blocked)
    return after


def apply_greenlight(study_site: StudySite, template: MilestoneTemplate,
                     complete_on: dt.date | None, why_not: str, now: dt.datetime
                     ) -> tuple[StudySite, MilestoneRecord, MilestoneRecord] | None:
    """Derive essential-documents-complete from the checklist; None when nothing changes.

    `complete_on` is the date the last required document was approved (None while one
    is missing). The greenlight also waits for the milestone's own prerequisites (IRB
    approval, contract) and takes the later date, so the milestone rules keep holding.
    Withdrawing a greenlight once given flags the study-site; giving it clears the flag.
    """
    definition = template.get(GREENLIGHT_MILESTONE)
    if definition is None:  # the study skipped the milestone
        return None
    before = study_site.milestone(GREENLIGHT_MILESTONE)
    dates = [complete_on] if complete_on else []
    for key in definition.prerequisites:
        if not study_site.done(key) and study_site.milestone(key).status \
                is not MilestoneStatus.NOT_APPLICABLE:
            dates = []
            break
        if (on := study_site.milestone(key).actual_date) and dates:
            dates.append(on)
    if dates:
        on = max(dates)
        if before.status is MilestoneStatus.DONE and before.actual_date == on:
            return None
        after = replace(before, status=MilestoneStatus.DONE, actual_date=on,
                        note="all required documents approved", update_time=now)
        flagged, reason = False, ""
    else:
        if not study_site.done(GREENLIGHT_MILESTONE):
            return None
        after = replace(before, status=MilestoneStatus.IN_PROGRESS, actual_date=None,
                        note=why_not, update_time=now)
        flagged, reason = True, why_not
    updated = replace(study_site, milestones={**study_site.milestones,
                                              GREENLIGHT_MILESTONE: after},
                      greenlight_withdrawn=flagged, greenlight_reason=reason,
                      update_time=now)
    return replace(updated, current=updated.current_milestone(template)), before, after
