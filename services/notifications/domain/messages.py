"""Short human texts, in English and Korean, for each kind of event."""

from __future__ import annotations

from services.notifications.domain.model import Alert, AlertKind, EventFacts

_STATUS_EN = {"PLANNED": "planned", "IN_PROGRESS": "in progress", "DONE": "done",
              "NOT_APPLICABLE": "not applicable",
              "APPROVED_WITH_CONDITIONS": "approved with conditions", "REJECTED": "rejected"}
_STATUS_KO = {"PLANNED": "계획됨", "IN_PROGRESS": "진행 중", "DONE": "완료",
              "NOT_APPLICABLE": "해당 없음", "APPROVED_WITH_CONDITIONS": "조건부 승인",
              "REJECTED": "반려"}

_SITE_STATUS_EN = {"ACTIVE": "active", "SUSPENDED": "suspended", "CLOSED": "closed"}
_SITE_STATUS_KO = {"ACTIVE": "운영 중", "SUSPENDED": "일시 중지", "CLOSED": "폐쇄"}


def render(facts: EventFacts) -> tuple[str, str]:
    """(English, Korean) one-line text for a notification."""
    kind = facts.event_type.rsplit(".", 1)[-1]
    site_en = facts.site_name_en or facts.site
    site_ko = facts.site_name_ko or site_en
    study = facts.protocol_number or facts.study
    if kind == "MilestoneRecorded":
        status_en = _STATUS_EN.get(facts.status, facts.status.lower())
        status_ko = _STATUS_KO.get(facts.status, facts.status)
        day_en = f" on day {facts.startup_day} of start-up" if facts.startup_day > 0 else ""
        day_ko = f" (스타트업 {facts.startup_day}일차)" if facts.startup_day > 0 else ""
        return (
            f"{site_en}: {facts.milestone_en} {status_en}{day_en} ({study})",
            f"{site_ko}: {facts.milestone_ko or facts.milestone_en} {status_ko}{day_ko} ({study})",
        )
    if kind == "StudyUpdated":
        changed = facts.details.get("changed_fields", "")
        return (f"Study {study} updated: {changed}", f"임상시험 {study} 정보 변경: {changed}")
    if kind == "CountryApprovalRecorded":
        country = facts.details.get("country_code", "")
        authority = facts.details.get("authority", "")
        status_en = _STATUS_EN.get(facts.status, facts.status.lower())
        status_ko = _STATUS_KO.get(facts.status, facts.status)
        return (f"{authority} approval in {country} {status_en} ({study})",
                f"{country} {authority} 승인 {status_ko} ({study})")
    if kind == "StudySiteActivated":
        day_en = f" on day {facts.startup_day} of start-up" if facts.startup_day > 0 else ""
        day_ko = f" (스타트업 {facts.startup_day}일차)" if facts.startup_day > 0 else ""
        return (f"{site_en} activated{day_en} ({study})", f"{site_ko} 개시{day_ko} ({study})")
    if kind == "StudySiteFlagged":
        if facts.details.get("flagged") == "true":
            return (f"{site_en} flagged in {study}: site {facts.status.lower()} in the registry",
                    f"{site_ko}, {study}에서 주의 표시: 레지스트리에서 {facts.status}")
        return (f"{site_en} no longer flagged in {study}", f"{site_ko}, {study} 주의 표시 해제")
    if kind in ("DocumentStatusRecorded", "DocumentReminder", "GreenlightChanged"):
        return _document_text(kind, facts, site_en, site_ko, study)
    if kind == "StudySiteAdded":
        return (f"{site_en} joined study {study}", f"{site_ko}, 임상시험 {study}에 참여")
    if kind == "StudyCreated":
        return (f"Study {study} created", f"임상시험 {study} 등록")
    if kind == "SiteRegistered":
        return (f"Site {site_en} registered", f"실시기관 {site_ko} 등록")
    if kind == "SiteUpdated":
        changed = facts.details.get("changed_fields", "")
        suffix = f": {changed}" if changed else ""
        return (f"Site {site_en} updated{suffix}", f"실시기관 {site_ko} 정보 변경{suffix}")
    if kind == "SiteStatusChanged":
        reason = facts.details.get("reason", "")
        before = facts.details.get("before_status", "")
        after_en = _SITE_STATUS_EN.get(facts.status, facts.status.lower())
        after_ko = _SITE_STATUS_KO.get(facts.status, facts.status)
        before_en = _SITE_STATUS_EN.get(before, before.lower())
        before_ko = _SITE_STATUS_KO.get(before, before)
        why = f" ({reason})" if reason else ""
        return (f"Site {site_en} {after_en} (was {before_en}){why}",
                f"실시기관 {site_ko} {after_ko} (이전: {before_ko}){why}")
    return (f"{kind} {facts.study or facts.site}", f"{kind} {facts.study or facts.site}")


_DOC_STATUS_EN = {"EXPECTED": "expected", "RECEIVED": "received", "APPROVED": "approved",
                  "REJECTED": "rejected"}
_DOC_STATUS_KO = {"EXPECTED": "제출 대기", "RECEIVED": "접수", "APPROVED": "승인",
                  "REJECTED": "반려"}


def _document_text(kind: str, facts: EventFacts, site_en: str, site_ko: str,
                   study: str) -> tuple[str, str]:
    """Essential documents and the greenlight (issue 6)."""
    doc_en = facts.milestone_en or facts.details.get("document", "")
    doc_ko = facts.milestone_ko or doc_en
    if kind == "GreenlightChanged":
        if facts.status == "GRANTED":
            return (f"{site_en}: essential documents complete, greenlight given ({study})",
                    f"{site_ko}: 필수문서 완비, 그린라이트 부여 ({study})")
        missing = facts.details.get("missing", "")
        return (f"{site_en}: greenlight withdrawn, documents missing: {missing} ({study})",
                f"{site_ko}: 그린라이트 철회, 미비 문서: {missing} ({study})")
    if kind == "DocumentReminder":
        days = facts.details.get("days", "")
        expiry = facts.details.get("expiry_date", "")
        reminder = facts.details.get("kind", "")
        if reminder == "EXPIRING":
            return (f"{site_en}: {doc_en} expires on {expiry}, in {days} days ({study})",
                    f"{site_ko}: {doc_ko} {expiry} 만료 예정, {days}일 남음 ({study})")
        if reminder == "EXPIRED":
            return (f"{site_en}: {doc_en} expired on {expiry} ({study})",
                    f"{site_ko}: {doc_ko} {expiry} 만료 ({study})")
        return (f"{site_en}: {doc_en} outstanding for {days} days ({study})",
                f"{site_ko}: {doc_ko} {days}일째 미제출 ({study})")
    status_en = _DOC_STATUS_EN.get(facts.status, facts.status.lower())
    status_ko = _DOC_STATUS_KO.get(facts.status, facts.status)
    reason = facts.details.get("reason", "")
    why = f": {reason}" if facts.status == "REJECTED" and reason else ""
    return (f"{site_en}: {doc_en} {status_en}{why} ({study})",
            f"{site_ko}: {doc_ko} {status_ko}{why} ({study})")


def render_alert(alert: Alert) -> tuple[str, str]:
    """(English, Korean) one-line text for an alert the service raised."""
    w = alert.where
    site_en = w.site_name_en or w.site
    site_ko = w.site_name_ko or site_en
    study = w.protocol_number or w.study
    m_en = alert.milestone_en or alert.milestone
    m_ko = alert.milestone_ko or m_en
    due = alert.due_date.isoformat() if alert.due_date else ""
    if alert.kind is AlertKind.MILESTONE_OVERDUE:
        return (f"Overdue: {site_en}: {m_en} was due {due} ({study})",
                f"지연: {site_ko}: {m_ko} 목표일 {due} 경과 ({study})")
    if alert.kind is AlertKind.MILESTONE_OVERDUE_CLEARED:
        return (f"Cleared: {site_en}: overdue {m_en} is done ({study})",
                f"해제: {site_ko}: 지연된 {m_ko} 완료 ({study})")
    if alert.kind is AlertKind.IRB_REJECTED:
        return (f"IRB rejected: {site_en}: {m_en} ({study})",
                f"IRB 반려: {site_ko}: {m_ko} ({study})")
    if alert.kind is AlertKind.SITE_SUSPENDED:
        return (f"Site suspended while in study {study}: {site_en}",
                f"임상시험 {study} 진행 중 실시기관 정지: {site_ko}")
    return (f"Blocked: {site_en} has been blocked since {due or 'long ago'} ({study})",
            f"차단: {site_ko}, {due or '오래전'}부터 진행 불가 ({study})")
