"""broadcast batches, in-flight marks and alert expiry

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 03:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("recipient_count", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("batch", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("sending_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(
            sa.Column("unknown_outcomes", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.create_index("ix_deliveries_alert_batch", ["alert_id", "batch"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_alert_batch")
        batch_op.drop_column("unknown_outcomes")
        batch_op.drop_column("sending_at")
        batch_op.drop_column("batch")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("recipient_count")
        batch_op.drop_column("expires_at")
