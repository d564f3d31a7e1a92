"""Reading sitenet events into the plain facts notifications are made of, and
writing the service's own alerts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from google.type import date_pb2

from services.common.stream import PoisonEvent
from services.notifications.domain.model import ALERT_TYPE, Alert, EventFacts
from sitenet.events.v1 import events_pb2
from sitenet.notifications.v1 import notifications_pb2

EVENT_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (events_pb2.SiteRegistered, events_pb2.SiteUpdated, events_pb2.StudyCreated,
                events_pb2.StudySiteAdded, events_pb2.MilestoneRecorded,
                events_pb2.SiteStatusChanged,
                events_pb2.StudyUpdated, events_pb2.CountryApprovalRecorded,
                events_pb2.StudySiteActivated, events_pb2.StudySiteFlagged,
                events_pb2.DocumentStatusRecorded, events_pb2.GreenlightChanged,
                events_pb2.DocumentReminder)
}


def decode(ce_type: str, data: bytes) -> Message | None:
    """The event message, or None for a type this service does not know (skipped)."""
    cls = EVENT_TYPES.get(ce_type)
    if cls is None:
        return None
    try:
        return cls.FromString(data)
    except DecodeError as exc:
        raise PoisonEvent(f"cannot decode {ce_type}: {exc}") from exc


def _study_site_facts(ce_type: str, ref: events_pb2.StudySiteRef, **more: object) -> EventFacts:
    return EventFacts(
        event_type=ce_type, study=ref.study, site=ref.site, sponsor_org=ref.sponsor_org,
        country_code=ref.country_code, region_code=ref.region_code,
        protocol_number=ref.protocol_number, site_name_en=ref.site_display_name_en,
        site_name_ko=ref.site_display_name_ko, study_site=ref.name, time_zone=ref.time_zone,
        **more)  # type: ignore[arg-type]


def _date(value: date_pb2.Date) -> dt.date | None:
    return dt.date(value.year, value.month, value.day) if value.year else None


def _due(state: events_pb2.MilestoneState) -> dt.date | None:
    """The target: `due_date` if the tracker sends one (a later field), else the planned date."""
    due = getattr(state, "due_date", None)
    if isinstance(due, date_pb2.Date) and due.year:
        return _date(due)
    return _date(state.planned_date)


def facts_of(ce_type: str, message: Message) -> EventFacts:
    if isinstance(message, (events_pb2.SiteRegistered, events_pb2.SiteUpdated,
                            events_pb2.SiteStatusChanged)):
        s = message.site
        details = {}
        before = ""
        if isinstance(message, events_pb2.SiteUpdated):
            details["changed_fields"] = ", ".join(message.changed_fields)
            details["reason"] = message.reason
            before = message.before.status
        if isinstance(message, events_pb2.SiteStatusChanged):
            details.update(before_status=message.before_status, reason=message.reason)
            before = message.before_status
        return EventFacts(event_type=ce_type, site=s.name, country_code=s.country_code,
                          region_code=s.region_code, site_name_en=s.display_name_en,
                          site_name_ko=s.display_name_ko, status=s.status,
                          before_status=before, details=details, time_zone=s.time_zone)
    if isinstance(message, events_pb2.StudyCreated):
        st = message.study
        return EventFacts(event_type=ce_type, study=st.name, sponsor_org=st.sponsor_org,
                          protocol_number=st.protocol_number)
    if isinstance(message, events_pb2.StudySiteAdded):
        return _study_site_facts(ce_type, message.study_site)
    if isinstance(message, events_pb2.MilestoneRecorded):
        after = message.after
        return _study_site_facts(
            ce_type, message.study_site, milestone_en=after.display_name,
            milestone_ko=after.display_name_ko, status=after.status,
            startup_day=message.startup_day, milestone=after.milestone,
            due_date=_due(after), before_status=message.before.status)
    if isinstance(message, (events_pb2.StudyUpdated, events_pb2.CountryApprovalRecorded)):
        st = message.study
        more = {"changed_fields": ", ".join(message.changed_fields)} \
            if isinstance(message, events_pb2.StudyUpdated) else {
                "country_code": message.country_code, "authority": message.authority}
        return EventFacts(event_type=ce_type, study=st.name, sponsor_org=st.sponsor_org,
                          protocol_number=st.protocol_number,
                          country_code=getattr(message, "country_code", ""),
                          status=getattr(message, "status", ""), details=more)
    if isinstance(message, events_pb2.StudySiteActivated):
        return _study_site_facts(ce_type, message.study_site, startup_day=message.startup_day)
    if isinstance(message, events_pb2.StudySiteFlagged):
        return _study_site_facts(ce_type, message.study_site, status=message.site_status,
                                 details={"flagged": "true" if message.flagged else "false"})
    if isinstance(message, (events_pb2.DocumentStatusRecorded, events_pb2.DocumentReminder)):
        more = {"document": message.document, "reason": getattr(message, "reason", "")}
        if isinstance(message, events_pb2.DocumentReminder):
            more.update(kind=message.kind, days=str(message.days))
        if message.HasField("expiry_date"):
            e = message.expiry_date
            more["expiry_date"] = f"{e.year:04d}-{e.month:02d}-{e.day:02d}"
        return _study_site_facts(ce_type, message.study_site, milestone_en=message.display_name,
                                 milestone_ko=message.display_name_ko, status=message.status,
                                 details=more)
    if isinstance(message, events_pb2.GreenlightChanged):
        return _study_site_facts(ce_type, message.study_site,
                                 status="GRANTED" if message.granted else "WITHDRAWN",
                                 details={"missing": ", ".join(message.missing_documents)})
    raise PoisonEvent(f"no facts for {ce_type}")


def encode_alert(alert: Alert) -> bytes:
    raised = alert.raise_time
    message = notifications_pb2.Alert(
        kind=notifications_pb2.Alert.Kind.Value(alert.kind.value),
        study_site=alert.where.name, study=alert.where.study, site=alert.where.site,
        milestone=alert.milestone,
        due_date=alert.due_date.isoformat() if alert.due_date else "",
        cause_event_id=alert.cause_event_id, detail=alert.detail)
    message.raise_time.FromDatetime(raised)
    return message.SerializeToString()


def event_json(ce_type: str, payload: bytes) -> dict[str, Any] | None:
    """The event as JSON (proto3 JSON mapping), for webhook bodies."""
    cls = notifications_pb2.Alert if ce_type == ALERT_TYPE else EVENT_TYPES.get(ce_type)
    if cls is None:
        return None
    try:
        return json_format.MessageToDict(cls.FromString(payload),
                                         preserving_proto_field_name=True)
    except DecodeError:
        return None
