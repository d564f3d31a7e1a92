"""Study-sites keep their site's time zone, so overdue is judged by the date there.

Revision ID: 0002
Revises: 0001

Existing rows get 'UTC', what they were judged by until now; the next event that
names the site's zone (a tracker event of the study-site after a restart, a registry
event of the site) sets it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A server default fills the rows already there, on SQLite and PostgreSQL alike.
    with op.batch_alter_table("alert_study_sites") as batch:
        batch.add_column(sa.Column("time_zone", sa.String(64), nullable=False,
                                   server_default="UTC"))


def downgrade() -> None:
    with op.batch_alter_table("alert_study_sites") as batch:
        batch.drop_column("time_zone")
