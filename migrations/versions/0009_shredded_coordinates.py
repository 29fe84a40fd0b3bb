"""coordinates sealed under the incident's shred key

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 22:30:00

Coordinates of existing incidents and reports are dropped (their area stays): kept as
plain numbers they could never be erased from the database's log, and sealing them needs
the shred keys, which a migration does not hold.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("incidents", "reports"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("location_sealed", sa.LargeBinary(), nullable=True))
            batch_op.drop_column("latitude")
            batch_op.drop_column("longitude")


def downgrade() -> None:
    for table in ("incidents", "reports"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("longitude", sa.Float(), nullable=True))
            batch_op.add_column(sa.Column("latitude", sa.Float(), nullable=True))
            batch_op.drop_column("location_sealed")
