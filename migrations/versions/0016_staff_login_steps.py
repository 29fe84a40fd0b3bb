"""the step between password and code is a server-side row (a hashed nonce), and
browsers that completed a sign-in are remembered (hashed) so strangers cannot lock
their owner out

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table, last_used in (("staff_login_steps", False), ("staff_devices", True)):
        columns = [
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("token_hash", sa.String(length=64), nullable=False),
            sa.Column("user_id", sa.Integer(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        ]
        if last_used:
            columns.append(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False))
        op.create_table(
            table,
            *columns,
            sa.ForeignKeyConstraint(
                ["user_id"],
                ["staff_users.id"],
                name=op.f(f"fk_{table}_user_id_staff_users"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
            sa.UniqueConstraint("token_hash", name=op.f(f"uq_{table}_token_hash")),
        )
        op.create_index(op.f(f"ix_{table}_user_id"), table, ["user_id"])
    op.create_index(op.f("ix_staff_login_steps_created_at"), "staff_login_steps", ["created_at"])


def downgrade() -> None:
    op.drop_table("staff_devices")
    op.drop_table("staff_login_steps")
