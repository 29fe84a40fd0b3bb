"""alerts send their incident's own area before adjacent ones (held batches); a draft's
sealed optional line per language

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("held_from_batch", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("lines_sealed", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("lines_sealed")
        batch.drop_column("held_from_batch")
