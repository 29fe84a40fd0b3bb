"""the subscriptions' area index ends with the subscriber, for a ledger segment's range

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07 17:00:00

A segment of a streamed ledger asks for the confirmed subscriptions of some areas with
subscriber ids in a range. With statistics that do not know a bulk import yet,
PostgreSQL read it from (area_id, status) and filtered the range: every subscription of
the area, 120 ms per segment at a million. With the subscriber id in the index the range
is read from the index itself, whatever the planner believes.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_subscriptions_area_status", table_name="subscriptions")
    op.create_index(
        "ix_subscriptions_area_status_subscriber",
        "subscriptions",
        ["area_id", "status", "subscriber_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_subscriptions_area_status_subscriber", table_name="subscriptions")
    op.create_index("ix_subscriptions_area_status", "subscriptions", ["area_id", "status"])
