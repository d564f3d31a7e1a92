"""What happened in study start-up, as the domain says it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.common.identity import Principal
from services.startup_tracker.domain.model import (
    CountryApproval,
    MilestoneRecord,
    Study,
    StudySite,
)
from services.startup_tracker.domain.templates import MilestoneDefinition


@dataclass(frozen=True)
class StudyCreated:
    study: Study
    actor: Principal


@dataclass(frozen=True)
class StudySiteAdded:
    study: Study
    study_site: StudySite
    actor: Principal


@dataclass(frozen=True)
class MilestoneRecorded:
    study: Study
    study_site: StudySite
    definition: MilestoneDefinition
    before: MilestoneRecord
    after: MilestoneRecord
    actor: Principal
    reason: str = ""


@dataclass(frozen=True)
class StudyUpdated:
    study: Study
    before: Study
    changed_fields: tuple[str, ...]
    actor: Principal


@dataclass(frozen=True)
class CountryApprovalRecorded:
    study: Study
    before: CountryApproval
    after: CountryApproval
    actor: Principal
    reason: str = ""


@dataclass(frozen=True)
class StudySiteActivated:
    study: Study
    study_site: StudySite
    activation_date: dt.date
    actor: Principal


@dataclass(frozen=True)
class StudySiteFlagged:
    """The registry suspended or closed a site in the study (or made it active again)."""

    study: Study
    study_site: StudySite


TrackerEvent = (StudyCreated | StudySiteAdded | MilestoneRecorded | StudyUpdated
                | CountryApprovalRecorded | StudySiteActivated | StudySiteFlagged)
