"""Short human texts, in English and Korean, for each kind of event."""

from __future__ import annotations

from services.notifications.domain.model import Alert, AlertKind, EventFacts

_STATUS_EN = {"PLANNED": "planned", "IN_PROGRESS": "in progress", "DONE": "done",
              "NOT_APPLICABLE": "not applicable",
              "APPROVED_WITH_CONDITIONS": "approved with conditions", "REJECTED": "rejected"}
_STATUS_KO = {"PLANNED": "계획됨", "IN_PROGRESS": "진행 중", "DONE": "완료",
              "NOT_APPLICABLE": "해당 없음", "APPROVED_WITH_CONDITIONS": "조건부 승인",
              "REJECTED": "반려"}


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
    return (f"{kind} {facts.study or facts.site}", f"{kind} {facts.study or facts.site}")


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
