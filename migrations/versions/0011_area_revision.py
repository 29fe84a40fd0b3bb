"""the areas' revision: every process rebuilds its area directory only when it changes

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 01:05:00

One row, rewritten with a random value whenever an area is added, changed or removed
(see ``rapidresponse.directory``). Filled now so that the first read finds it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "area_revision",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("revision", sa.String(32), nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "revision": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table("area_revision")
