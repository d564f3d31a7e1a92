"""Essential documents: the templates, a site's checklist, its rules and the greenlight.

sitenet tracks documents (status, version, where the file lives and its hash); it does
not store the files. Pure: stdlib only.

Artifact names and numbers are those of the CDISC TMF Reference Model v3.3.1.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from enum import StrEnum

from services.common.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PreconditionViolation,
)

GREENLIGHT_MILESTONE = "essential-documents-complete"  # derived, never typed in
TMF_MODEL = "CDISC TMF Reference Model v3.3.1"


class Provider(StrEnum):
    SITE = "SITE"
    SPONSOR = "SPONSOR"


class DocumentStatus(StrEnum):
    EXPECTED = "EXPECTED"
    RECEIVED = "RECEIVED"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"


@dataclass(frozen=True)
class DocumentType:
    key: str
    display_name: str
    display_name_ko: str
    tmf_artifact_name: str
    tmf_artifact_number: str  # "" where we are not sure of the model's number
    required: bool = True  # for activation
    expires: bool = False  # e.g. GCP certificates, lab certification
    provider: Provider = Provider.SITE


@dataclass(frozen=True)
class DocumentTemplate:
    key: str
    documents: tuple[DocumentType, ...]

    def get(self, key: str) -> DocumentType | None:
        return next((d for d in self.documents if d.key == key), None)

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(d.key for d in self.documents)


D = DocumentType
S = Provider.SPONSOR

_COMMON = (
    D("irb-approval-letter", "IRB approval letter", "IRB 승인서", "IRB or IEC Decision",
      "04.01.02"),
    D("contract-executed", "Executed clinical trial agreement", "체결된 임상시험계약서",
      "Clinical Trial Agreement", "05.02.12"),
    D("protocol-signature-page", "Signed protocol signature page",
      "서명된 임상시험계획서 서명 페이지",
      "Protocol Signature Page", "05.02.02"),
    D("pi-cv", "Principal investigator CV", "책임연구자 이력서",
      "Principal Investigator Curriculum Vitae", "05.02.04"),
    D("sub-investigator-cvs", "Sub-investigator CVs", "공동연구자 이력서",
      "Sub-Investigator Curriculum Vitae", "05.02.05"),
    D("gcp-certificates", "GCP training certificates", "GCP 교육 이수증",
      "Site Staff Qualification Supporting Information", "05.02.07", expires=True),
    D("delegation-log", "Delegation log", "업무 위임 기록",
      "Site Signature Sheet", "05.03.02"),
    D("lab-certification", "Laboratory certification", "검사실 인증서",
      "Certification or Accreditation", "08.01.01", expires=True),
    D("lab-normal-ranges", "Laboratory normal ranges", "검사실 정상 범위",
      "Normal Ranges", "08.01.04", expires=True),
    D("ib-acknowledgement", "Investigator's brochure acknowledgement",
      "임상시험자 자료집 수령 확인서", "Acceptance of Investigator Brochure", "05.02.01"),
)

KR_TEMPLATE = DocumentTemplate(key="kr-essential-documents", documents=(
    *_COMMON,
    D("mfds-ind-approval", "MFDS IND approval", "식약처 임상시험계획 승인서",
      "Regulatory Authority Decision", "03.01.02", provider=S),
    D("icf-korean", "Informed consent form approved in Korean", "승인된 한국어 동의서",
      "Informed Consent Form", "02.02.03"),
))

GENERIC_TEMPLATE = DocumentTemplate(key="generic-essential-documents", documents=(
    *_COMMON,
    D("regulatory-approval", "Regulatory authority approval", "규제기관 승인서",
      "Regulatory Authority Decision", "03.01.02", provider=S),
    D("icf-approved", "Approved informed consent form", "승인된 동의서",
      "Informed Consent Form", "02.02.03"),
    D("financial-disclosure", "Financial disclosure form", "재정 공개서",
      "Financial Disclosure Form", "05.02.10", required=False),
))


def document_template(country_code: str, skip: tuple[str, ...] = ()) -> DocumentTemplate:
    """The country's default checklist (KR's own, a generic one elsewhere), less what the
    study skipped (a skip of a document the country does not use changes nothing)."""
    base = KR_TEMPLATE if country_code == "KR" else GENERIC_TEMPLATE
    if not skip:
        return base
    return DocumentTemplate(key=f"{base.key}+custom",
                            documents=tuple(d for d in base.documents if d.key not in skip))


def check_skip(skip: tuple[str, ...]) -> list[str]:
    """Keys that are no document of any template (a study may skip only known ones)."""
    known = set(KR_TEMPLATE.keys) | set(GENERIC_TEMPLATE.keys)
    return [k for k in skip if k not in known]


@dataclass(frozen=True)
class SiteDocument:
    """One expected document of a study-site, as it stands now."""

    key: str
    status: DocumentStatus = DocumentStatus.EXPECTED
    version: str = ""
    uri: str = ""
    content_hash: str = ""
    expiry_date: dt.date | None = None
    status_date: dt.date | None = None  # the site's calendar date of the latest status
    reason: str = ""  # why it was rejected
    note: str = ""
    actor: str = ""
    expected_time: dt.datetime | None = None
    update_time: dt.datetime | None = None
    approved_date: dt.date | None = None  # first approval: the sponsor's cycle time

    def expired(self, today: dt.date) -> bool:
        return self.expiry_date is not None and self.expiry_date <= today

    def valid(self, today: dt.date) -> bool:
        return self.status is DocumentStatus.APPROVED and not self.expired(today)


@dataclass(frozen=True)
class DocumentChange:
    status: DocumentStatus
    version: str = ""
    uri: str = ""
    content_hash: str = ""
    expiry_date: dt.date | None = None
    status_date: dt.date | None = None  # defaults to today at the site
    reason: str = ""
    note: str = ""


# What may follow what: a new version may be received over an approved one (a renewed
# certificate), and an approved one may be rejected later (a problem found after the
# review); nothing is approved or rejected without being received first.
TRANSITIONS: dict[DocumentStatus, frozenset[DocumentStatus]] = {
    DocumentStatus.EXPECTED: frozenset({DocumentStatus.RECEIVED}),
    DocumentStatus.RECEIVED: frozenset({DocumentStatus.APPROVED, DocumentStatus.REJECTED}),
    DocumentStatus.REJECTED: frozenset({DocumentStatus.RECEIVED}),
    DocumentStatus.APPROVED: frozenset({DocumentStatus.RECEIVED, DocumentStatus.REJECTED}),
}
HASH = re.compile(r"^sha256:[0-9a-f]{64}$")
URI = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$")
MAX_TEXT = 500


def new_checklist(template: DocumentTemplate, now: dt.datetime) -> dict[str, SiteDocument]:
    return {d.key: SiteDocument(key=d.key, expected_time=now) for d in template.documents}


def record_document(name: str, document: DocumentType, before: SiteDocument,
                    change: DocumentChange, today: dt.date, now: dt.datetime,
                    actor: str) -> SiteDocument:
    """`before` after `change`; InvalidArgument for bad fields, FailedPrecondition for a
    transition that makes no sense. `today` is the date at the site."""
    violations: list[FieldViolation] = []
    when = change.status_date or today
    if change.status is DocumentStatus.EXPECTED:
        violations.append(FieldViolation("status", "EXPECTED is where a document starts; "
                                                   "record RECEIVED, APPROVED or REJECTED"))
    if when > today:
        violations.append(FieldViolation("status_date", f"{when.isoformat()} is in the future "
                                                        f"(today is {today.isoformat()} at "
                                                        "the site)"))
    if change.status is DocumentStatus.RECEIVED:
        if not change.version:
            violations.append(FieldViolation("version", "required for RECEIVED"))
        if not URI.match(change.uri):
            violations.append(FieldViolation("uri", "required for RECEIVED: where the file "
                                                    "lives, e.g. 'https://...' or 's3://...'"))
        if not HASH.match(change.content_hash):
            violations.append(FieldViolation("content_hash", "required for RECEIVED: "
                                                             "'sha256:' and 64 hex digits"))
        if document.expires and change.expiry_date is None:
            violations.append(FieldViolation("expiry_date",
                                             f"required: {document.key} expires"))
        if change.expiry_date is not None and change.expiry_date <= when:
            violations.append(FieldViolation("expiry_date", "already expired"))
    else:
        for label, value in (("version", change.version), ("uri", change.uri),
                             ("content_hash", change.content_hash)):
            if value:
                violations.append(FieldViolation(label, "given only with RECEIVED"))
        if change.expiry_date is not None:
            violations.append(FieldViolation("expiry_date", "given only with RECEIVED"))
    if change.status is DocumentStatus.REJECTED and not change.reason:
        violations.append(FieldViolation("reason", "say why the document is rejected"))
    for label, text, limit in (("version", change.version, 64), ("uri", change.uri, 2000),
                               ("reason", change.reason, MAX_TEXT),
                               ("note", change.note, 2000)):
        if len(text) > limit:
            violations.append(FieldViolation(label, f"longer than {limit} characters"))
    if violations:
        raise InvalidArgument(violations)
    if change.status not in TRANSITIONS[before.status]:
        raise FailedPrecondition([PreconditionViolation(
            "DOCUMENT_STATUS", name,
            f"{document.key} is {before.status.value}; it cannot become "
            f"{change.status.value}")])
    if before.status_date and when < before.status_date:
        raise FailedPrecondition([PreconditionViolation(
            "DOCUMENT_DATE", name,
            f"{change.status.value} on {when.isoformat()} cannot precede "
            f"{before.status.value} on {before.status_date.isoformat()}")])
    if change.status is DocumentStatus.APPROVED and before.expired(today):
        raise FailedPrecondition([PreconditionViolation(
            "DOCUMENT_EXPIRED", name,
            f"{document.key} expired on {before.expiry_date}; receive a current version")])
    received = change.status is DocumentStatus.RECEIVED
    return replace(
        before, status=change.status,
        version=change.version if received else before.version,
        uri=change.uri if received else before.uri,
        content_hash=change.content_hash if received else before.content_hash,
        expiry_date=change.expiry_date if received else before.expiry_date,
        status_date=when, reason=change.reason, note=change.note, actor=actor,
        update_time=now,
        approved_date=before.approved_date or (
            when if change.status is DocumentStatus.APPROVED else None))


@dataclass(frozen=True)
class Missing:
    """A required document standing between the site and its greenlight."""

    key: str
    status: DocumentStatus
    why: str


def missing(template: DocumentTemplate, documents: dict[str, SiteDocument],
            today: dt.date) -> list[Missing]:
    out = []
    for d in template.documents:
        if not d.required:
            continue
        doc = documents.get(d.key) or SiteDocument(key=d.key)
        if doc.valid(today):
            continue
        if doc.status is DocumentStatus.APPROVED:
            why = f"expired on {doc.expiry_date}"
        elif doc.status is DocumentStatus.REJECTED:
            why = f"rejected: {doc.reason}"
        elif doc.status is DocumentStatus.RECEIVED:
            why = "received, awaiting review"
        else:
            why = "not received"
        out.append(Missing(d.key, doc.status, why))
    return out


def complete_on(template: DocumentTemplate, documents: dict[str, SiteDocument],
                today: dt.date) -> dt.date | None:
    """The date the checklist became complete (the last required approval), or None."""
    if missing(template, documents, today):
        return None
    dates = [doc.status_date for d in template.documents if d.required
             and (doc := documents.get(d.key)) is not None and doc.status_date]
    return max(dates) if dates else today
