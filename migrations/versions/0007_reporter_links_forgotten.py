"""reporter links live in the volatile Redis: no inbound message ids, counted reporters

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 22:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("reporter_count", sa.Integer(), server_default="0", nullable=False)
        )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("links_forgotten", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    # Count the reporters of existing incidents while their hashes are still there.
    op.execute(
        "UPDATE incidents SET reporter_count = (SELECT COUNT(DISTINCT COALESCE("
        "reports.reporter_hash, 'report:' || CAST(reports.id AS VARCHAR(20)))) "
        "FROM reports WHERE reports.incident_id = incidents.id)"
    )
    # Message ids tied each report to the provider's copy (sender and text) forever.
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inbound_messages_received_at"))
    op.drop_table("inbound_messages")


def downgrade() -> None:
    op.create_table(
        "inbound_messages",
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sid", name=op.f("pk_inbound_messages")),
    )
    with op.batch_alter_table("inbound_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_inbound_messages_received_at"), ["received_at"], unique=False
        )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_column("links_forgotten")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_column("reporter_count")
