"""The notification service's own database schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from services.common.inbox import add_inbox_table
from services.common.outbox import add_outbox_tables
from services.common.unit_of_work import add_request_log_table

metadata = MetaData()

Seq = BigInteger().with_variant(Integer, "sqlite")

# Every event the service has consumed, once, in the order it was appended; the
# position is the cursor streams resume from.
notification_log = Table(
    "notification_log",
    metadata,
    Column("cursor", Seq, primary_key=True, autoincrement=True),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("event_type", String(255), nullable=False, index=True),
    Column("subject", String(512), nullable=False),
    Column("study", String(80), nullable=False, index=True),
    Column("site", String(80), nullable=False, index=True),
    Column("sponsor_org", String(63), nullable=False),
    Column("country_code", String(2), nullable=False),
    Column("region_code", String(6), nullable=False),
    Column("event_time", DateTime(timezone=True), nullable=False),
    Column("text_en", Text, nullable=False),
    Column("text_ko", Text, nullable=False),
    Column("payload", LargeBinary, nullable=False),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("subscription_id", String(63), primary_key=True),
    Column("owner_subject", String(255), nullable=False, index=True),
    Column("owner_role", String(16), nullable=False),
    Column("owner_org", String(63), nullable=True),
    Column("owner_sites", Text, nullable=False),  # JSON array
    Column("filter", Text, nullable=False),  # JSON of NotificationFilter
    Column("channel", String(16), nullable=False),
    Column("webhook_url", String(2000), nullable=True),
    Column("webhook_secret", String(256), nullable=True),
    Column("display_name", String(200), nullable=False),
    Column("start_cursor", Seq, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
)

study_directory = Table(
    "study_directory",
    metadata,
    Column("study", String(80), primary_key=True),
    Column("sponsor_org", String(63), nullable=False),
)

# One row per (webhook subscription, notification), written in the transaction that
# appends the notification, so a restart loses none; the worker delivers them.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("delivery_id", Seq, primary_key=True, autoincrement=True),
    Column("subscription_id", String(63), nullable=False, index=True),
    Column("cursor", Seq, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("event_type", String(255), nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, index=True),
    UniqueConstraint("subscription_id", "event_id"),  # never two deliveries of one event
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("attempt_id", Seq, primary_key=True, autoincrement=True),
    Column("delivery_id", BigInteger, nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("attempt_time", DateTime(timezone=True), nullable=False),
    Column("http_status", Integer, nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("error", String(500), nullable=False),
    Column("duration_ms", Integer, nullable=False),
)

# What alerts need to remember of the tracker's study-sites and milestones.
alert_study_sites = Table(
    "alert_study_sites",
    metadata,
    Column("name", String(170), primary_key=True),
    Column("study", String(80), nullable=False),
    Column("site", String(80), nullable=False, index=True),
    Column("sponsor_org", String(63), nullable=False),
    Column("country_code", String(2), nullable=False),
    Column("region_code", String(6), nullable=False),
    Column("protocol_number", String(200), nullable=False),
    Column("site_name_en", String(200), nullable=False),
    Column("site_name_ko", String(200), nullable=False),
    Column("blocked_since", DateTime(timezone=True), nullable=True),
    Column("blocked_alerted", Boolean, nullable=False, default=False),
    # IANA zone of the site: its milestones are overdue when the date there is past
    # their due date. 'UTC' when no event has said (rows from before revision 0002).
    Column("time_zone", String(64), nullable=False, server_default="UTC"),
)

alert_milestones = Table(
    "alert_milestones",
    metadata,
    Column("study_site", String(170), primary_key=True),
    Column("milestone", String(63), primary_key=True),
    Column("name_en", String(200), nullable=False),
    Column("name_ko", String(200), nullable=False),
    Column("status", String(32), nullable=False),
    Column("due_date", Date, nullable=True, index=True),
    Column("overdue_alerted", Boolean, nullable=False, default=False),
)

outbox, outbox_relay_lease = add_outbox_tables(metadata)
inbox = add_inbox_table(metadata)
request_log = add_request_log_table(metadata)
