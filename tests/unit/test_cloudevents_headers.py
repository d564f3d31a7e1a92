"""Our CloudEvents Kafka headers match the CloudEvents SDK's own Kafka binding."""

from __future__ import annotations

from datetime import UTC, datetime

from cloudevents.core.bindings import kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from services.common.events import Envelope
from sitenet.events.v1 import events_pb2


def _envelope() -> Envelope:
    message = events_pb2.SiteRegistered(site=events_pb2.SiteState(name="sites/snuh"))
    return Envelope(type="sitenet.events.v1.SiteRegistered", source="//sitenet/site-registry",
                    subject="sites/snuh", topic="sitenet.registry.site.v1", key="snuh",
                    data=message.SerializeToString(),
                    time=datetime(2026, 11, 25, 9, 30, 0, 123456, tzinfo=UTC))


def test_sdk_reads_our_headers_as_the_same_event() -> None:
    envelope = _envelope()
    message = kafka.KafkaMessage(headers=dict(envelope.headers()), key=envelope.key.encode(),
                                 value=envelope.data)
    event = kafka.from_binary(message, JSONFormat(), CloudEvent)
    assert event.get_id() == envelope.id
    assert event.get_type() == envelope.type
    assert event.get_source() == envelope.source
    assert event.get_subject() == envelope.subject
    assert event.get_specversion() == "1.0"
    assert event.get_time() == envelope.time
    assert event.get_datacontenttype() == "application/protobuf"


def test_our_headers_are_what_the_sdk_writes() -> None:
    envelope = _envelope()
    event = CloudEvent(
        attributes={"id": envelope.id, "type": envelope.type, "source": envelope.source,
                    "subject": envelope.subject, "time": envelope.time, "specversion": "1.0",
                    "datacontenttype": "application/protobuf"},
        data=envelope.data,
    )
    written = kafka.to_binary(event, JSONFormat())
    ours = dict(envelope.headers())
    assert set(ours) == set(written.headers)
    for name, value in written.headers.items():
        if name == "ce_time":  # same instant; the SDK may spell the offset differently
            assert Envelope.from_record("t", None, None, [("ce_id", b"x"), ("ce_type", b"x"),
                                                          ("ce_source", b"x"),
                                                          ("ce_time", value)]).time == envelope.time
        else:
            assert ours[name] == value, name


def test_record_round_trips_through_envelope() -> None:
    envelope = _envelope()
    back = Envelope.from_record(envelope.topic, envelope.key.encode(), envelope.data,
                                envelope.headers())
    assert back == envelope
