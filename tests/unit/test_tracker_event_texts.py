"""Notifications read the tracker's new events and say them in English and Korean."""

from __future__ import annotations

from services.notifications.adapters.event_codec import EVENT_TYPES, facts_of
from services.notifications.domain.messages import render
from sitenet.events.v1 import events_pb2

REF = events_pb2.StudySiteRef(name="studies/s1/sites/snuh", study="studies/s1",
                              site="sites/snuh", sponsor_org="acme", country_code="KR",
                              site_display_name_en="SNUH", site_display_name_ko="서울대병원",
                              protocol_number="ONC-301")
STUDY = events_pb2.StudyState(name="studies/s1", protocol_number="ONC-301", sponsor_org="acme")


def test_each_new_event_has_facts_and_both_texts() -> None:
    cases = [
        (events_pb2.StudyUpdated(study=STUDY, changed_fields=["title"]),
         "Study ONC-301 updated: title", "임상시험 ONC-301 정보 변경: title"),
        (events_pb2.CountryApprovalRecorded(study=STUDY, country_code="KR", authority="MFDS",
                                            status="DONE"),
         "MFDS approval in KR done (ONC-301)", "KR MFDS 승인 완료 (ONC-301)"),
        (events_pb2.StudySiteActivated(study_site=REF, startup_day=58),
         "SNUH activated on day 58 of start-up (ONC-301)",
         "서울대병원 개시 (스타트업 58일차) (ONC-301)"),
        (events_pb2.StudySiteFlagged(study_site=REF, flagged=True, site_status="SUSPENDED"),
         "SNUH flagged in ONC-301: site suspended in the registry",
         "서울대병원, ONC-301에서 주의 표시: 레지스트리에서 SUSPENDED"),
        (events_pb2.StudySiteFlagged(study_site=REF, flagged=False, site_status="ACTIVE"),
         "SNUH no longer flagged in ONC-301", "서울대병원, ONC-301 주의 표시 해제"),
    ]
    for message, en, ko in cases:
        ce_type = message.DESCRIPTOR.full_name
        assert ce_type in EVENT_TYPES
        facts = facts_of(ce_type, message)
        assert facts.study == "studies/s1" and facts.sponsor_org == "acme"
        assert render(facts) == (en, ko)
    approval = facts_of("sitenet.events.v1.CountryApprovalRecorded", cases[1][0])
    assert approval.country_code == "KR"  # routes to subscribers filtering by country


def test_document_events_have_facts_and_both_texts() -> None:
    gcp = dict(study_site=REF, document="gcp-certificates",
               display_name="GCP training certificates", display_name_ko="GCP 교육 이수증")
    expiry = {"year": 2026, "month": 7, "day": 15}
    cases = [
        (events_pb2.DocumentStatusRecorded(**gcp, status="REJECTED", before_status="RECEIVED",
                                           reason="unsigned"),
         "SNUH: GCP training certificates rejected: unsigned (ONC-301)",
         "서울대병원: GCP 교육 이수증 반려: unsigned (ONC-301)"),
        (events_pb2.DocumentStatusRecorded(**gcp, status="APPROVED"),
         "SNUH: GCP training certificates approved (ONC-301)",
         "서울대병원: GCP 교육 이수증 승인 (ONC-301)"),
        (events_pb2.DocumentReminder(**gcp, kind="EXPIRING", days=15, expiry_date=expiry),
         "SNUH: GCP training certificates expires on 2026-07-15, in 15 days (ONC-301)",
         "서울대병원: GCP 교육 이수증 2026-07-15 만료 예정, 15일 남음 (ONC-301)"),
        (events_pb2.DocumentReminder(**gcp, kind="EXPIRED", expiry_date=expiry),
         "SNUH: GCP training certificates expired on 2026-07-15 (ONC-301)",
         "서울대병원: GCP 교육 이수증 2026-07-15 만료 (ONC-301)"),
        (events_pb2.DocumentReminder(**gcp, kind="OUTSTANDING", days=45),
         "SNUH: GCP training certificates outstanding for 45 days (ONC-301)",
         "서울대병원: GCP 교육 이수증 45일째 미제출 (ONC-301)"),
        (events_pb2.GreenlightChanged(study_site=REF, granted=True),
         "SNUH: essential documents complete, greenlight given (ONC-301)",
         "서울대병원: 필수문서 완비, 그린라이트 부여 (ONC-301)"),
        (events_pb2.GreenlightChanged(study_site=REF, granted=False,
                                      missing_documents=["gcp-certificates"]),
         "SNUH: greenlight withdrawn, documents missing: gcp-certificates (ONC-301)",
         "서울대병원: 그린라이트 철회, 미비 문서: gcp-certificates (ONC-301)"),
    ]
    for message, en, ko in cases:
        ce_type = message.DESCRIPTOR.full_name
        assert ce_type in EVENT_TYPES
        facts = facts_of(ce_type, message)  # routing: study, site, sponsor_org, country
        assert (facts.study, facts.site, facts.sponsor_org, facts.country_code) == (
            "studies/s1", "sites/snuh", "acme", "KR")
        assert render(facts) == (en, ko)
