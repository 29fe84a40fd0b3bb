"""an incident's alert texts sealed under its shred key

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 22:40:00

Alerts drafted before this keep their texts in the clear (a migration holds no shred
key); every alert drafted from now on for an incident is sealed.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("texts_sealed", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("texts_sealed")
