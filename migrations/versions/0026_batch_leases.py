"""a batch's lease is one row: workers claim and renew a batch, not every delivery in it

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-07 13:30:00

A worker claimed every row of its batch, renewed the lease of every row still claimed,
marked each chunk in flight and recorded its outcome: about four writes per delivery
(fifteen with a renewal per chunk). The lease now lives in ``batch_leases`` and a row
is claimed with its chunk, as it is marked in flight: written when the ledger is, when
it leaves, and when its outcome is known. Rows claimed under the old scheme keep their
own lease, which the reaper still honours.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "batch_leases",
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False, autoincrement=False),
        sa.Column("lease_token", sa.String(length=32), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name=op.f("fk_batch_leases_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("alert_id", "batch", name=op.f("pk_batch_leases")),
    )


def downgrade() -> None:
    op.drop_table("batch_leases")
