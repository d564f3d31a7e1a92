"""Tracker events as `sitenet.events.v1` messages; registry events read into replicas."""

from __future__ import annotations

import datetime as dt

from google.protobuf.message import Message

from services.common import topics
from services.common.events import Envelope
from services.common.identity import Principal
from services.common.rpc.convert import date_message, timestamp
from services.common.stream import PoisonEvent
from services.startup_tracker.domain.events import (
    CountryApprovalRecorded,
    DocumentReminder,
    DocumentStatusRecorded,
    GreenlightChanged,
    MilestoneRecorded,
    StudyCreated,
    StudySiteActivated,
    StudySiteAdded,
    StudySiteFlagged,
    StudyUpdated,
    TrackerEvent,
)
from services.startup_tracker.domain.model import MilestoneRecord, SiteReplica, Study, StudySite
from services.startup_tracker.domain.templates import (
    MilestoneDefinition,
    MilestoneTemplate,
    template_for,
)
from sitenet.events.v1 import events_pb2

SOURCE = "//sitenet/startup-tracker"
# Registry events whose `site` field (a SiteState) the replica keeps. Any registry event
# with such a field (e.g. a SiteStatusChanged) works once it is listed here.
SITE_EVENT_TYPES: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (events_pb2.SiteRegistered, events_pb2.SiteUpdated,
                events_pb2.SiteStatusChanged)
}


def actor(principal: Principal) -> events_pb2.Actor:
    return events_pb2.Actor(subject=principal.subject, role=principal.role.value)


def study_state(study: Study) -> events_pb2.StudyState:
    d = study.details
    return events_pb2.StudyState(
        name=study.name, protocol_number=d.protocol_number, title=d.title,
        sponsor_org=d.sponsor_org, phase=d.phase.value, therapeutic_area=d.therapeutic_area,
        country_codes=list(d.country_codes))


def study_site_ref(study: Study, study_site: StudySite) -> events_pb2.StudySiteRef:
    site = study_site.site
    return events_pb2.StudySiteRef(
        name=study_site.name, study=study.name, site=site.name,
        sponsor_org=study.details.sponsor_org, country_code=site.country_code,
        region_code=site.region_code, site_display_name_en=site.display_name_en,
        site_display_name_ko=site.display_name_ko,
        protocol_number=study.details.protocol_number, time_zone=site.time_zone)


def milestone_state(definition: MilestoneDefinition, record: MilestoneRecord,
                    due_date: dt.date | None = None) -> events_pb2.MilestoneState:
    state = events_pb2.MilestoneState(
        milestone=definition.key, display_name=definition.display_name,
        display_name_ko=definition.display_name_ko,
        status=record.status.value if record.status else "", note=record.note)
    for field in ("baseline_date", "planned_date", "actual_date"):
        value: dt.date | None = getattr(record, field)
        if value is not None:
            getattr(state, field).CopyFrom(date_message(value))
    if due_date is not None:
        state.due_date.CopyFrom(date_message(due_date))
    return state


class TrackerEventCodec:
    def __init__(self, topic_prefix: str = "") -> None:
        self._topic = f"{topic_prefix}{topics.STUDIES.name}"

    def __call__(self, event: TrackerEvent) -> list[Envelope]:
        study = event.study
        if isinstance(event, StudyCreated):
            message: object = events_pb2.StudyCreated(study=study_state(study),
                                                      actor=actor(event.actor))
            subject = study.name
        elif isinstance(event, StudySiteAdded):
            message = events_pb2.StudySiteAdded(
                study_site=study_site_ref(study, event.study_site), actor=actor(event.actor))
            subject = event.study_site.name
        elif isinstance(event, MilestoneRecorded):
            after = event.after
            day = (event.study_site.startup_day(after.actual_date)
                   if after.actual_date else 0)
            due = event.study_site.target_date(template_of_event(event), event.definition.key)
            message = events_pb2.MilestoneRecorded(
                study_site=study_site_ref(study, event.study_site),
                before=milestone_state(event.definition, event.before, due),
                after=milestone_state(event.definition, after, due), actor=actor(event.actor),
                reason=event.reason, startup_day=day,
                record_time=timestamp(after.update_time or event.study_site.update_time))
            subject = f"{event.study_site.name}/milestones/{event.definition.key}"
        elif isinstance(event, StudyUpdated):
            message = events_pb2.StudyUpdated(
                study=study_state(study), before=study_state(event.before),
                changed_fields=list(event.changed_fields), actor=actor(event.actor),
                reason=event.reason)
            subject = study.name
        elif isinstance(event, CountryApprovalRecorded):
            a = event.after
            message = events_pb2.CountryApprovalRecorded(
                study=study_state(study), country_code=a.country_code, authority=a.authority,
                status=a.status.value if a.status else "",
                before_status=event.before.status.value if event.before.status else "",
                actor=actor(event.actor), reason=event.reason, reference=a.reference)
            if a.decision_date is not None:
                message.decision_date.CopyFrom(date_message(a.decision_date))
            subject = f"{study.name}/countries/{a.country_code}"
        elif isinstance(event, StudySiteActivated):
            message = events_pb2.StudySiteActivated(
                study_site=study_site_ref(study, event.study_site),
                activation_date=date_message(event.activation_date),
                startup_day=event.study_site.startup_day(event.activation_date),
                actor=actor(event.actor))
            subject = event.study_site.name
        elif isinstance(event, StudySiteFlagged):
            ss = event.study_site
            message = events_pb2.StudySiteFlagged(
                study_site=study_site_ref(study, ss), flagged=ss.flagged,
                reason=ss.flag_reason or f"site {ss.site.status} in the registry",
                site_status=ss.site.status)
            subject = ss.name
        elif isinstance(event, DocumentStatusRecorded):
            d, doc = event.document, event.after
            message = events_pb2.DocumentStatusRecorded(
                study_site=study_site_ref(study, event.study_site), document=d.key,
                display_name=d.display_name, display_name_ko=d.display_name_ko,
                before_status=event.before.status.value, status=doc.status.value,
                version=doc.version, uri=doc.uri, content_hash=doc.content_hash,
                reason=doc.reason,
                actor=actor(event.actor))
            if doc.expiry_date is not None:
                message.expiry_date.CopyFrom(date_message(doc.expiry_date))
            subject = f"{event.study_site.name}/documents/{d.key}"
        elif isinstance(event, GreenlightChanged):
            message = events_pb2.GreenlightChanged(
                study_site=study_site_ref(study, event.study_site), granted=event.granted,
                missing_documents=[m.key for m in event.missing], reason=event.reason)
            if event.on is not None:
                message.granted_date.CopyFrom(date_message(event.on))
            subject = event.study_site.name
        elif isinstance(event, DocumentReminder):
            d, state = event.document, event.state
            message = events_pb2.DocumentReminder(
                study_site=study_site_ref(study, event.study_site), document=d.key,
                display_name=d.display_name, display_name_ko=d.display_name_ko,
                kind=event.kind, days=event.days, status=state.status.value)
            if state.expiry_date is not None:
                message.expiry_date.CopyFrom(date_message(state.expiry_date))
            subject = f"{event.study_site.name}/documents/{d.key}"
        else:  # pragma: no cover
            raise TypeError(f"not a tracker event: {event!r}")
        return [Envelope(
            type=message.DESCRIPTOR.full_name,  # type: ignore[attr-defined]
            source=SOURCE, subject=subject, topic=self._topic, key=study.study_id,
            data=message.SerializeToString(),  # type: ignore[attr-defined]
        )]


def template_of_event(event: MilestoneRecorded) -> MilestoneTemplate:
    return template_for(event.study.template_choice)


def site_replica_from(ce_type: str, data: bytes) -> SiteReplica | None:
    """The site a registry event carries; None for event types the tracker does not keep."""
    message_type = SITE_EVENT_TYPES.get(ce_type)
    if message_type is None:
        return None
    try:
        message = message_type.FromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise PoisonEvent(f"cannot decode {ce_type}: {exc}") from exc
    s: events_pb2.SiteState = getattr(message, "site")  # noqa: B009 - any type with a site
    return SiteReplica(site_id=s.name.removeprefix("sites/"), display_name_en=s.display_name_en,
                       display_name_ko=s.display_name_ko, country_code=s.country_code,
                       region_code=s.region_code, status=s.status, time_zone=s.time_zone,
                       version=s.version)
