"""Baseline schema of the notification service.

Revision ID: 0001
Revises:

The schema as it was at this revision, written out here rather than read from
`tables.py`: later revisions alter it, so creating today's `tables.py` here would
make them fail on a new database (the columns would already be there). The tables
every service shares (outbox, relay lease, inbox, request log) come from their
helpers in `services/common`, unchanged since.
"""

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
from services.common.migration_template import create_baseline, drop_baseline
from services.common.outbox import add_outbox_tables
from services.common.unit_of_work import add_request_log_table

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def baseline() -> MetaData:
    metadata = MetaData()
    seq = BigInteger().with_variant(Integer, "sqlite")
    Table(
        "notification_log", metadata,
        Column("cursor", seq, primary_key=True, autoincrement=True),
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
    Table(
        "subscriptions", metadata,
        Column("subscription_id", String(63), primary_key=True),
        Column("owner_subject", String(255), nullable=False, index=True),
        Column("owner_role", String(16), nullable=False),
        Column("owner_org", String(63), nullable=True),
        Column("owner_sites", Text, nullable=False),
        Column("filter", Text, nullable=False),
        Column("channel", String(16), nullable=False),
        Column("webhook_url", String(2000), nullable=True),
        Column("webhook_secret", String(256), nullable=True),
        Column("display_name", String(200), nullable=False),
        Column("start_cursor", seq, nullable=False),
        Column("create_time", DateTime(timezone=True), nullable=False),
    )
    Table(
        "study_directory", metadata,
        Column("study", String(80), primary_key=True),
        Column("sponsor_org", String(63), nullable=False),
    )
    Table(
        "webhook_deliveries", metadata,
        Column("delivery_id", seq, primary_key=True, autoincrement=True),
        Column("subscription_id", String(63), nullable=False, index=True),
        Column("cursor", seq, nullable=False),
        Column("event_id", String(64), nullable=False),
        Column("event_type", String(255), nullable=False),
        Column("state", String(16), nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("next_attempt_at", DateTime(timezone=True), nullable=False, index=True),
        UniqueConstraint("subscription_id", "event_id"),
    )
    Table(
        "webhook_attempts", metadata,
        Column("attempt_id", seq, primary_key=True, autoincrement=True),
        Column("delivery_id", BigInteger, nullable=False, index=True),
        Column("attempt", Integer, nullable=False),
        Column("attempt_time", DateTime(timezone=True), nullable=False),
        Column("http_status", Integer, nullable=False),
        Column("outcome", String(32), nullable=False),
        Column("error", String(500), nullable=False),
        Column("duration_ms", Integer, nullable=False),
    )
    Table(
        "alert_study_sites", metadata,
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
    )
    Table(
        "alert_milestones", metadata,
        Column("study_site", String(170), primary_key=True),
        Column("milestone", String(63), primary_key=True),
        Column("name_en", String(200), nullable=False),
        Column("name_ko", String(200), nullable=False),
        Column("status", String(32), nullable=False),
        Column("due_date", Date, nullable=True, index=True),
        Column("overdue_alerted", Boolean, nullable=False, default=False),
    )
    add_outbox_tables(metadata)
    add_inbox_table(metadata)
    add_request_log_table(metadata)
    return metadata


def upgrade() -> None:
    create_baseline(baseline())


def downgrade() -> None:
    drop_baseline(baseline())
