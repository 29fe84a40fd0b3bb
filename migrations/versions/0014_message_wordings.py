"""coordinators' wordings of the alert messages, per language

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "message_wordings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "language",
            sa.Enum(
                "en",
                "es",
                name="language",
                native_enum=False,
                length=20,
                create_constraint=True,
            ),
            nullable=False,
        ),
        sa.Column("message_id", sa.String(length=60), nullable=False),
        sa.Column("text", sa.String(length=400), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["updated_by_id"],
            ["staff_users.id"],
            name=op.f("fk_message_wordings_updated_by_id_staff_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_wordings")),
        sa.UniqueConstraint(
            "language", "message_id", name=op.f("uq_message_wordings_language_message_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("message_wordings")
