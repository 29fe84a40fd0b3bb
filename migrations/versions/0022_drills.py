"""drills: a rehearsal on the real system, its participants, and the incidents and
alerts that belong to it

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 00:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "drills",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=12), nullable=False),
        sa.Column("area_id", sa.Integer(), nullable=False),
        sa.Column("scenario", sa.String(length=500), nullable=False),
        sa.Column("started_by_id", sa.Integer(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("card", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["area_id"], ["areas.id"], name=op.f("fk_drills_area_id_areas")),
        sa.ForeignKeyConstraint(
            ["started_by_id"],
            ["staff_users.id"],
            name=op.f("fk_drills_started_by_id_staff_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drills")),
        sa.UniqueConstraint("code", name=op.f("uq_drills_code")),
    )
    op.create_table(
        "drill_participants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("drill_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("responder_id", sa.Integer(), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(subscriber_id IS NULL) <> (responder_id IS NULL)",
            name=op.f("ck_drill_participants_one_person"),
        ),
        sa.ForeignKeyConstraint(
            ["drill_id"],
            ["drills.id"],
            name=op.f("fk_drill_participants_drill_id_drills"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name=op.f("fk_drill_participants_subscriber_id_subscribers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["responder_id"],
            ["responders.id"],
            name=op.f("fk_drill_participants_responder_id_responders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drill_participants")),
        sa.UniqueConstraint(
            "drill_id", "subscriber_id", name=op.f("uq_drill_participants_drill_id_subscriber_id")
        ),
        sa.UniqueConstraint(
            "drill_id", "responder_id", name=op.f("uq_drill_participants_drill_id_responder_id")
        ),
    )
    for table in ("incidents", "alerts"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("drill_id", sa.Integer(), nullable=True))
            batch.create_index(batch.f(f"ix_{table}_drill_id"), ["drill_id"], unique=False)
            batch.create_foreign_key(
                batch.f(f"fk_{table}_drill_id_drills"),
                "drills",
                ["drill_id"],
                ["id"],
            )


def downgrade() -> None:
    for table in ("alerts", "incidents"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(batch.f(f"fk_{table}_drill_id_drills"), type_="foreignkey")
            batch.drop_index(batch.f(f"ix_{table}_drill_id"))
            batch.drop_column("drill_id")
    op.drop_table("drill_participants")
    op.drop_table("drills")
