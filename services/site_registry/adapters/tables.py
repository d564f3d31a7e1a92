"""The registry's own database schema."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from services.common.inbox import add_inbox_table
from services.common.outbox import add_outbox_tables
from services.common.unit_of_work import add_request_log_table

metadata = MetaData()

sites = Table(
    "sites",
    metadata,
    Column("site_id", String(63), primary_key=True),
    Column("display_name_en", String(200), nullable=False),
    Column("display_name_ko", String(200), nullable=False),
    Column("institution", String(200), nullable=False),
    Column("institution_key", String(260), nullable=False, unique=True),
    Column("country_code", String(2), nullable=False, index=True),
    Column("region_code", String(6), nullable=False, index=True),
    Column("city", String(200), nullable=False),
    Column("irb_of_record", String(200), nullable=False),
    Column("therapeutic_areas", Text, nullable=False),  # JSON array of strings
    Column("capabilities", Text, nullable=False),  # JSON array of strings
    Column("time_zone", String(64), nullable=False),
    Column("address", String(500), nullable=False, server_default=""),
    Column("mfds_designation_number", String(64), nullable=False, server_default=""),
    Column("mfds_designation_date", Date, nullable=True),
    Column("principal_investigators", Text, nullable=False, server_default="[]"),  # JSON
    Column("contacts", Text, nullable=False, server_default="[]"),  # JSON
    Column("status", String(16), nullable=False, index=True),
    Column("status_reason", String(500), nullable=False, server_default=""),
    Column("status_change_time", DateTime(timezone=True), nullable=True),
    Column("search_text", Text, nullable=False),  # case-folded names, for free-text filters
    Column("version", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("update_time", DateTime(timezone=True), nullable=False),
)

# Keyset pages under each order_by: the sort key, then the id.
Index("ix_sites_name_en", sites.c.display_name_en, sites.c.site_id)
Index("ix_sites_create_time", sites.c.create_time, sites.c.site_id)

# Append-only: the application only ever inserts here, and no API alters or deletes.
site_audit = Table(
    "site_audit",
    metadata,
    Column("entry_id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("site_id", String(63), ForeignKey("sites.site_id"), nullable=False, index=True),
    Column("action", String(16), nullable=False),
    Column("actor_subject", String(200), nullable=False),
    Column("actor_role", String(16), nullable=False),
    Column("create_time", DateTime(timezone=True), nullable=False),
    Column("before", Text, nullable=True),  # JSON of the site, null on create
    Column("after", Text, nullable=False),  # JSON of the site
    Column("changed_fields", Text, nullable=False),  # JSON array
    Column("reason", String(500), nullable=False),
)

outbox, outbox_relay_lease = add_outbox_tables(metadata)
inbox = add_inbox_table(metadata)
request_log = add_request_log_table(metadata)
