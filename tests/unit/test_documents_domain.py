"""Essential documents: templates, the checklist's transitions and the greenlight rule,
directly (fast); tests/integration/test_documents_api.py repeats them over gRPC."""

from __future__ import annotations

import datetime as dt

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument
from services.startup_tracker.domain.documents import (
    GENERIC_TEMPLATE,
    KR_TEMPLATE,
    DocumentChange,
    DocumentStatus,
    SiteDocument,
    complete_on,
    document_template,
    missing,
    new_checklist,
    record_document,
)
from services.startup_tracker.domain.model import (
    MilestoneRecord,
    MilestoneStatus,
    SiteReplica,
    StudySite,
    apply_greenlight,
)
from services.startup_tracker.domain.templates import DEFAULT_TEMPLATE

NOW = dt.datetime(2026, 6, 30, 3, tzinfo=dt.UTC)
TODAY = dt.date(2026, 6, 30)
HASH = "sha256:" + "0f" * 32
GCP = KR_TEMPLATE.get("gcp-certificates")
CV = KR_TEMPLATE.get("pi-cv")
S = DocumentStatus


def received(expiry: dt.date | None = dt.date(2027, 1, 1), **fields: object) -> DocumentChange:
    values: dict[str, object] = dict(status=S.RECEIVED, version="1.0", uri="https://e/x",
                                     content_hash=HASH, expiry_date=expiry)
    values.update(fields)
    return DocumentChange(**values)  # type: ignore[arg-type]


def test_templates_carry_tmf_artifacts_and_kr_has_its_own() -> None:
    assert document_template("KR") is KR_TEMPLATE
    assert document_template("JP") is GENERIC_TEMPLATE
    assert {"irb-approval-letter", "mfds-ind-approval", "icf-korean", "gcp-certificates",
            "lab-certification", "delegation-log"} <= set(KR_TEMPLATE.keys)
    for d in (*KR_TEMPLATE.documents, *GENERIC_TEMPLATE.documents):
        assert d.tmf_artifact_name
        assert not d.tmf_artifact_number or len(d.tmf_artifact_number.split(".")) == 3
    assert GCP is not None and GCP.expires and GCP.required
    assert "pi-cv" not in document_template("KR", skip=("pi-cv",)).keys


def test_transitions_that_make_no_sense_are_refused() -> None:
    assert CV is not None
    expected = SiteDocument("pi-cv")
    for status in (S.APPROVED, S.REJECTED):
        with pytest.raises(FailedPrecondition):
            record_document("n", CV, expected, DocumentChange(status=status, reason="x"),
                            TODAY, NOW, "a")
    got = record_document("n", CV, expected, received(None), TODAY, NOW, "a")
    assert got.status is S.RECEIVED and got.content_hash == HASH
    with pytest.raises(FailedPrecondition):
        record_document("n", CV, got, received(None), TODAY, NOW, "a")
    rejected = record_document("n", CV, got, DocumentChange(S.REJECTED, reason="unsigned"),
                               TODAY, NOW, "a")
    assert rejected.reason == "unsigned" and rejected.version == "1.0"
    with pytest.raises(FailedPrecondition):
        record_document("n", CV, rejected, DocumentChange(S.APPROVED), TODAY, NOW, "a")
    again = record_document("n", CV, rejected, received(None, version="1.1"), TODAY, NOW, "a")
    approved = record_document("n", CV, again, DocumentChange(S.APPROVED), TODAY, NOW, "a")
    assert approved.approved_date == TODAY and approved.valid(TODAY)


def test_bad_fields_are_invalid_arguments() -> None:
    assert GCP is not None
    doc = SiteDocument("gcp-certificates")
    cases = [received(None), received(content_hash="md5:1"), received(uri="not a uri"),
             received(version=""), received(expiry=dt.date(2026, 6, 1)),
             received(status_date=dt.date(2026, 7, 1)), DocumentChange(S.EXPECTED),
             DocumentChange(S.REJECTED), DocumentChange(S.APPROVED, version="2")]
    for change in cases:
        with pytest.raises(InvalidArgument):
            record_document("n", GCP, doc, change, TODAY, NOW, "a")


def test_greenlight_needs_every_required_document_approved_and_unexpired() -> None:
    site = StudySite("s", SiteReplica("snuh", "SNUH", "서울대병원", "KR", "KR-11", "ACTIVE",
                                      "Asia/Seoul", 1))
    for key in ("irb-approved", "contract-executed"):
        site = StudySite(site.study_id, site.site, {**site.milestones, key: MilestoneRecord(
            key, MilestoneStatus.DONE, actual_date=dt.date(2026, 2, 1))})
    docs = new_checklist(KR_TEMPLATE, NOW)
    assert complete_on(KR_TEMPLATE, docs, TODAY) is None
    assert apply_greenlight(site, DEFAULT_TEMPLATE, None, "x", NOW) is None  # never given
    for d in KR_TEMPLATE.documents:
        docs[d.key] = SiteDocument(d.key, S.APPROVED, status_date=dt.date(2026, 3, 1),
                                   expiry_date=dt.date(2026, 7, 1) if d.expires else None)
    assert complete_on(KR_TEMPLATE, docs, TODAY) == dt.date(2026, 3, 1)
    granted = apply_greenlight(site, DEFAULT_TEMPLATE, dt.date(2026, 3, 1), "", NOW)
    assert granted is not None and granted[0].done("essential-documents-complete")
    later = dt.date(2026, 7, 1)  # the GCP certificate and lab documents expire
    assert [m.key for m in missing(KR_TEMPLATE, docs, later)] == [
        "gcp-certificates", "lab-certification", "lab-normal-ranges"]
    withdrawn = apply_greenlight(granted[0], DEFAULT_TEMPLATE, None, "expired", NOW)
    assert withdrawn is not None
    after = withdrawn[0]
    assert not after.done("essential-documents-complete") and after.greenlight_withdrawn


def test_an_expired_document_cannot_be_approved_and_a_later_rejection_is_allowed() -> None:
    assert GCP is not None
    got = record_document("n", GCP, SiteDocument("gcp-certificates"),
                          received(dt.date(2026, 7, 1), status_date=dt.date(2026, 6, 1)),
                          TODAY, NOW, "a")
    later = dt.date(2026, 7, 2)
    with pytest.raises(FailedPrecondition) as caught:
        record_document("n", GCP, got, DocumentChange(S.APPROVED), later, NOW, "a")
    assert [v.type for v in caught.value.violations] == ["DOCUMENT_EXPIRED"]
    approved = record_document("n", GCP, got, DocumentChange(S.APPROVED), TODAY, NOW, "a")
    revoked = record_document("n", GCP, approved, DocumentChange(S.REJECTED, reason="forged"),
                              TODAY, NOW, "a")
    assert revoked.status is S.REJECTED and revoked.approved_date == TODAY  # history kept
    with pytest.raises(FailedPrecondition) as caught:
        record_document("n", GCP, approved, DocumentChange(
            S.REJECTED, reason="x", status_date=dt.date(2026, 5, 1)), TODAY, NOW, "a")
    assert [v.type for v in caught.value.violations] == ["DOCUMENT_DATE"]
