"""Study-sites keep their site's time zone, so overdue is judged by the date there.

Revision ID: 0002
Revises: 0001

Existing rows get the zone the registry gives a site of their country when none is
set (Asia/Seoul for KR), else 'UTC' (what they were judged by until now); the next
event that names the site's own zone (a tracker event of the study-site, a registry
event of the site) corrects it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


# The registry's defaults by country (services/common/geography.DEFAULT_TIME_ZONES) as
# they were at this revision: a migration must not change when the code does.
_COUNTRY_ZONES = {"KR": "Asia/Seoul", "JP": "Asia/Tokyo", "TW": "Asia/Taipei",
                  "SG": "Asia/Singapore", "CN": "Asia/Shanghai", "AU": "Australia/Sydney",
                  "GB": "Europe/London", "DE": "Europe/Berlin", "FR": "Europe/Paris"}


def upgrade() -> None:
    # A server default fills the rows already there, on SQLite and PostgreSQL alike.
    with op.batch_alter_table("alert_study_sites") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(64), nullable=False,
                                   server_default="UTC"))
    sites = sa.table("alert_study_sites", sa.column("country_code", sa.String),
                     sa.column("time_zone", sa.String))
    for country, zone in _COUNTRY_ZONES.items():
        op.execute(sites.update().where(sites.c.country_code == country)
                   .values(time_zone=zone))


def downgrade() -> None:
    with op.batch_alter_table("alert_study_sites") as batch:
        batch.drop_column("time_zone")
