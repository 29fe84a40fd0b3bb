"""provider redaction: messages to delete at Twilio; deliveries forget provider ids

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 22:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "provider_redactions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_redactions")),
        sa.UniqueConstraint("sid", name=op.f("uq_provider_redactions_sid")),
    )
    with op.batch_alter_table("provider_redactions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_provider_redactions_due_at"), ["due_at"], unique=False
        )
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("provider_forgotten_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("provider_forgotten_at")
    with op.batch_alter_table("provider_redactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_provider_redactions_due_at"))
    op.drop_table("provider_redactions")
