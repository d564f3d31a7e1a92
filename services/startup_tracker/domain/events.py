"""What happened in study start-up, as the domain says it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from services.common.identity import Principal
from services.startup_tracker.domain.documents import DocumentType, Missing, SiteDocument
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
    reason: str = ""


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


@dataclass(frozen=True)
class DocumentStatusRecorded:
    study: Study
    study_site: StudySite
    document: DocumentType
    before: SiteDocument
    after: SiteDocument
    actor: Principal


@dataclass(frozen=True)
class GreenlightChanged:
    """Essential documents became complete (granted) or stopped being so (withdrawn)."""

    study: Study
    study_site: StudySite
    granted: bool
    on: dt.date | None
    missing: tuple[Missing, ...]
    reason: str


class ReminderKind:
    EXPIRING = "EXPIRING"  # expires within the configured window
    EXPIRED = "EXPIRED"
    OUTSTANDING = "OUTSTANDING"  # expected or rejected for longer than the threshold


@dataclass(frozen=True)
class DocumentReminder:
    study: Study
    study_site: StudySite
    document: DocumentType
    state: SiteDocument
    kind: str
    days: int  # days left before expiry, or days outstanding


TrackerEvent = (StudyCreated | StudySiteAdded | MilestoneRecorded | StudyUpdated
                | CountryApprovalRecorded | StudySiteActivated | StudySiteFlagged
                | DocumentStatusRecorded | GreenlightChanged | DocumentReminder)
