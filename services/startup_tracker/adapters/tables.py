"""The tracker's own database schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKeyConstraint,
    Integer,
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

Version = BigInteger().with_variant(Integer, "sqlite")

studies = Table(
    "studies",
    metadata,
    Column("study_id", String(63), primary_key=True),
    Column("protocol_number", String(200), nullable=False),
    Column("title", String(500), nullable=False),
    Column("sponsor_org", String(63), nullable=False, index=True),
    Column("phase", String(16), nullable=False),
    Column("therapeutic_area", String(64), nullable=False),
    Column("country_codes", Text, nullable=False),  # JSON array
    Column("template_key", String(63), nullable=False),
    Column("template_choice", Text, nullable=False),  # JSON
    Column("target_activation_date", Date, nullable=True),
    Column("target_active_sites", Integer, nullable=False),
    Column("version", Version, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    UniqueConstraint("sponsor_org", "protocol_number", name="uq_studies_protocol"),
)

# The tracker's replica of the registry's sites, kept from sitenet.registry.site.v1.
sites_replica = Table(
    "sites_replica",
    metadata,
    Column("site_id", String(63), primary_key=True),
    Column("display_name_en", String(200), nullable=False),
    Column("display_name_ko", String(200), nullable=False),
    Column("country_code", String(2), nullable=False),
    Column("region_code", String(6), nullable=False),
    Column("status", String(16), nullable=False),
    Column("time_zone", String(64), nullable=False),
    Column("version", Version, nullable=False),
)

study_sites = Table(
    "study_sites",
    metadata,
    Column("study_id", String(63), primary_key=True),
    Column("site_id", String(63), primary_key=True),
    Column("country_code", String(2), nullable=False),
    Column("region_code", String(6), nullable=False),
    Column("current_milestone", String(63), nullable=False),
    Column("flagged", Boolean, nullable=False),
    Column("flag_reason", Text, nullable=False),
    Column("greenlight_withdrawn", Boolean, nullable=False, default=False),
    Column("greenlight_reason", Text, nullable=False, default=""),
    Column("version", Version, nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(["study_id"], ["studies.study_id"]),
)

milestones = Table(
    "milestones",
    metadata,
    Column("study_id", String(63), primary_key=True),
    Column("site_id", String(63), primary_key=True),
    Column("milestone", String(63), primary_key=True),
    Column("status", String(32), nullable=False),
    Column("baseline_date", Date, nullable=True),
    Column("planned_date", Date, nullable=True),
    Column("actual_date", Date, nullable=True),
    Column("note", Text, nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(["study_id", "site_id"], ["study_sites.study_id", "study_sites.site_id"]),
)

# One regulatory approval per study and country; its history goes to milestone_history
# with site_id "" and milestone "country-approval/{country}".
country_approvals = Table(
    "country_approvals",
    metadata,
    Column("study_id", String(63), primary_key=True),
    Column("country_code", String(2), primary_key=True),
    Column("authority", String(100), nullable=False),
    Column("status", String(32), nullable=False),
    Column("submitted_date", Date, nullable=True),
    Column("decision_date", Date, nullable=True),
    Column("reference", String(200), nullable=False),
    Column("note", Text, nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
    ForeignKeyConstraint(["study_id"], ["studies.study_id"]),
)

# A study-site's essential documents as they stand; each change also goes to
# milestone_history as milestone "document/{key}" (append-only).
site_documents = Table(
    "site_documents",
    metadata,
    Column("study_id", String(63), primary_key=True),
    Column("site_id", String(63), primary_key=True),
    Column("document", String(63), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("version", String(64), nullable=False),
    Column("uri", Text, nullable=False),
    Column("content_hash", String(80), nullable=False),
    Column("expiry_date", Date, nullable=True),
    Column("status_date", Date, nullable=True),
    Column("approved_date", Date, nullable=True),
    Column("reason", Text, nullable=False),
    Column("note", Text, nullable=False),
    Column("actor", String(255), nullable=False),
    Column("expected_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=True),
    ForeignKeyConstraint(["study_id", "site_id"], ["study_sites.study_id", "study_sites.site_id"]),
)

# Reminders already raised: each (document, kind, occasion) once, however often the
# check runs. `occasion` is the expiry date or the date the document became outstanding.
document_reminders = Table(
    "document_reminders",
    metadata,
    Column("study_id", String(63), primary_key=True),
    Column("site_id", String(63), primary_key=True),
    Column("document", String(63), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("occasion", String(32), primary_key=True),
    Column("raise_time", DateTime(timezone=True), nullable=False),
)

# Append-only: every recorded change, with who, when, before, after and why.
milestone_history = Table(
    "milestone_history",
    metadata,
    Column("entry_id", Version, primary_key=True, autoincrement=True),
    Column("study_id", String(63), nullable=False, index=True),
    Column("site_id", String(63), nullable=False),
    Column("milestone", String(63), nullable=False),
    Column("before", Text, nullable=False),  # JSON
    Column("after", Text, nullable=False),  # JSON
    Column("actor", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("record_time", DateTime(timezone=True), nullable=False),
)

outbox, outbox_relay_lease = add_outbox_tables(metadata)
inbox = add_inbox_table(metadata)
request_log = add_request_log_table(metadata)
