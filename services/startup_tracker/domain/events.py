"""What happened in study start-up, as the domain says it."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.identity import Principal
from services.startup_tracker.domain.model import MilestoneRecord, Study, StudySite
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


TrackerEvent = StudyCreated | StudySiteAdded | MilestoneRecorded
