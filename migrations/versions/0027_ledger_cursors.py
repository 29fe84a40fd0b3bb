"""a streamed ledger: approval writes the first segment, jobs write the rest

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-07 16:40:00

Approval wrote every delivery row in one transaction before anything was enqueued: the
first message of a 1,000,000-recipient alert waited 40-70 s for the whole ledger. It
now writes the first segment with the alert and enqueues it; ledger jobs write the rest,
each segment in one transaction with its cursor (``ledger_cursors``), so a crash resumes
from the last committed segment and nobody is written twice (the cursor moves with the
rows) or skipped (the walk is in subscriber id order, up to the newest at approval).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_cursors",
        sa.Column("alert_id", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("last_rank", sa.Integer(), nullable=False),
        sa.Column("after_id", sa.Integer(), nullable=False),
        sa.Column("span", sa.Integer(), nullable=False),
        sa.Column("upto_id", sa.Integer(), nullable=False),
        sa.Column("next_batch", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name=op.f("fk_ledger_cursors_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("alert_id", name=op.f("pk_ledger_cursors")),
    )


def downgrade() -> None:
    op.drop_table("ledger_cursors")
