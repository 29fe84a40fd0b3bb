"""audit events are chained after they are recorded: a chain position, hashes set then

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 01:50:00

Events recorded before this were chained one at a time in id order, so their position
is their id.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("position", sa.BigInteger(), nullable=True))
        batch_op.alter_column("prev_hash", existing_type=sa.String(64), nullable=True)
        batch_op.alter_column("hash", existing_type=sa.String(64), nullable=True)
        batch_op.create_unique_constraint("uq_audit_events_position", ["position"])
    op.execute("UPDATE audit_events SET position = id")


def downgrade() -> None:
    op.execute("DELETE FROM audit_events WHERE position IS NULL")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_constraint("uq_audit_events_position", type_="unique")
        batch_op.alter_column("hash", existing_type=sa.String(64), nullable=False)
        batch_op.alter_column("prev_hash", existing_type=sa.String(64), nullable=False)
        batch_op.drop_column("position")
