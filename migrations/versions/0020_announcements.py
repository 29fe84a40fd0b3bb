"""announcements: their own consent, a time before which they wait (quiet hours), and
RSVP answers counted per delivery

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 21:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("news_consent_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("send_after", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("asks_rsvp", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("rsvp", sa.String(length=3), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("rsvp")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("asks_rsvp")
        batch.drop_column("send_after")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("news_consent_at")
