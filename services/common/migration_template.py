"""Shared pieces of each service's Alembic scripts."""

from __future__ import annotations

from typing import Any

from alembic import op


def create_baseline(metadata: Any) -> None:
    """Baseline revision: the schema as declared in the service's `tables.py`.

    Until the first release the baseline is the current schema; from then on,
    every schema change is a new revision that alters it, and the baseline creates
    the schema as it was then (see the notification service's 0001), not the
    current `tables.py`.
    """
    metadata.create_all(op.get_bind())


def drop_baseline(metadata: Any) -> None:
    metadata.drop_all(op.get_bind())
