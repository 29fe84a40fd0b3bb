"""reports may come over WhatsApp (a channel of their own)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _channels(*values: str) -> None:
    with op.batch_alter_table("reports") as batch:
        batch.drop_constraint(op.f("ck_reports_reportchannel"), type_="check")
        listed = ", ".join(f"'{value}'" for value in values)
        batch.create_check_constraint("reportchannel", f"channel IN ({listed})")


def upgrade() -> None:
    _channels("sms", "web", "whatsapp")


def downgrade() -> None:
    op.execute("UPDATE reports SET channel = 'sms' WHERE channel = 'whatsapp'")
    _channels("sms", "web")
