"""Baseline schema of the notification service.

Revision ID: 0001
Revises:
"""

from services.common.migration_template import create_baseline, drop_baseline
from services.notifications.adapters.tables import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_baseline(metadata)


def downgrade() -> None:
    drop_baseline(metadata)
