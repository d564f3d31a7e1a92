"""Registry events as `sitenet.events.v1` messages in CloudEvents envelopes."""

from __future__ import annotations

from services.common import topics
from services.common.events import Envelope
from services.common.identity import Principal
from services.site_registry.domain.events import (
    RegistryEvent,
    SiteRegistered,
    SiteStatusChanged,
    SiteUpdated,
)
from services.site_registry.domain.model import Site
from sitenet.events.v1 import events_pb2

SOURCE = "//sitenet/site-registry"


def site_state(site: Site) -> events_pb2.SiteState:
    d = site.details
    return events_pb2.SiteState(
        name=site.name,
        display_name_en=d.display_name_en,
        display_name_ko=d.display_name_ko,
        institution=d.institution,
        country_code=d.country_code,
        region_code=d.region_code,
        city=d.city,
        irb_of_record=d.irb_of_record,
        therapeutic_areas=list(d.therapeutic_areas),
        capabilities=list(d.capabilities),
        status=site.status.value,
        time_zone=d.time_zone,
        version=site.version,
        status_reason=site.status_reason,
        address=d.address,
        mfds_designation_number=d.mfds_designation_number,
    )


def actor(principal: Principal) -> events_pb2.Actor:
    return events_pb2.Actor(subject=principal.subject, role=principal.role.value)


class RegistryEventCodec:
    def __init__(self, topic_prefix: str = "") -> None:
        self._topic = f"{topic_prefix}{topics.SITES.name}"

    def __call__(self, event: RegistryEvent) -> list[Envelope]:
        message: events_pb2.SiteRegistered | events_pb2.SiteUpdated | events_pb2.SiteStatusChanged
        if isinstance(event, SiteRegistered):
            message = events_pb2.SiteRegistered(site=site_state(event.site),
                                                actor=actor(event.actor))
        elif isinstance(event, SiteUpdated):
            message = events_pb2.SiteUpdated(
                site=site_state(event.site), before=site_state(event.before),
                changed_fields=list(event.changed_fields), actor=actor(event.actor),
                reason=event.reason)
        elif isinstance(event, SiteStatusChanged):
            message = events_pb2.SiteStatusChanged(
                site=site_state(event.site), before_status=event.before.status.value,
                after_status=event.site.status.value, actor=actor(event.actor),
                reason=event.reason)
        else:  # pragma: no cover - exhaustive over RegistryEvent
            raise TypeError(f"not a registry event: {event!r}")
        return [Envelope(
            type=message.DESCRIPTOR.full_name,
            source=SOURCE,
            subject=event.site.name,
            topic=self._topic,
            key=event.site.site_id,
            data=message.SerializeToString(),
        )]
