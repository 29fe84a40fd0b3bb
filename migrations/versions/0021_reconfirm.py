"""keeping the list alive: a yearly "still want alerts?", and a paused status for those
who do not answer

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 21:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _statuses(*values: str) -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_constraint(op.f("ck_subscribers_subscriberstatus"), type_="check")
        listed = ", ".join(f"'{value}'" for value in values)
        batch.create_check_constraint("subscriberstatus", f"status IN ({listed})")


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("reconfirm_asked_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("reconfirmed_at", sa.DateTime(timezone=True), nullable=True))
    _statuses("active", "opted_out", "undeliverable", "paused")


def downgrade() -> None:
    # Paused people had stopped answering: downgraded, they are active again (as before).
    op.execute("UPDATE subscribers SET status = 'active' WHERE status = 'paused'")
    _statuses("active", "opted_out", "undeliverable")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("reconfirmed_at")
        batch.drop_column("reconfirm_asked_at")
