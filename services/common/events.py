"""The event envelope: a protobuf payload plus CloudEvents 1.0 attributes.

On Kafka the attributes travel as headers in binary content mode (`ce_id`,
`ce_type`, ...), as the CloudEvents Kafka protocol binding says. This is the
one place that reads and writes them; a test checks it against the
`cloudevents` SDK's own Kafka binding.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/protobuf"

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Envelope:
    """One event as it is stored in the outbox and carried on a topic."""

    type: str  # full protobuf message name, e.g. "sitenet.events.v1.SiteRegistered"
    source: str  # the service, e.g. "//sitenet/site-registry"
    subject: str  # the resource, e.g. "sites/snuh"
    topic: str
    key: str
    data: bytes  # serialized protobuf message of `type`
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

    def headers(self) -> Headers:
        return [
            ("ce_specversion", SPEC_VERSION.encode()),
            ("ce_id", self.id.encode()),
            ("ce_type", self.type.encode()),
            ("ce_source", self.source.encode()),
            ("ce_subject", self.subject.encode()),
            ("ce_time", format_time(self.time).encode()),
            ("content-type", CONTENT_TYPE.encode()),
        ]

    @classmethod
    def from_record(
        cls, topic: str, key: bytes | None, value: bytes | None, headers: Headers
    ) -> Envelope:
        attrs = {name: raw.decode() for name, raw in headers if raw is not None}
        missing = [a for a in ("ce_id", "ce_type", "ce_source") if a not in attrs]
        if missing:
            raise ValueError(f"record on {topic} lacks CloudEvents headers {missing}")
        return cls(
            id=attrs["ce_id"],
            type=attrs["ce_type"],
            source=attrs["ce_source"],
            subject=attrs.get("ce_subject", ""),
            time=parse_time(attrs["ce_time"]) if "ce_time" in attrs else datetime.now(UTC),
            topic=topic,
            key=key.decode() if key else "",
            data=value or b"",
        )


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as CloudEvents requires."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
