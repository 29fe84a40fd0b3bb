"""WhatsApp as a channel of its own: a consent and a STOP per channel, the channel of
each subscription and delivery, and the registry of approved WhatsApp templates

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("active", "opted_out", "undeliverable", "paused")
STATUSES = (*BEFORE, "no_consent")


def _listed(values: Sequence[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def _channel_column() -> sa.Column[str]:
    return sa.Column(
        "channel",
        sa.Enum(
            "sms", "whatsapp", name="channel", native_enum=False, create_constraint=True, length=20
        ),
        nullable=False,
        server_default="sms",
    )


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_constraint(op.f("ck_subscribers_subscriberstatus"), type_="check")
        batch.create_check_constraint("subscriberstatus", f"status IN ({_listed(STATUSES)})")
        batch.add_column(
            sa.Column(
                "whatsapp_status",
                sa.Enum(
                    *STATUSES,
                    name="whatsappstatus",
                    native_enum=False,
                    create_constraint=True,
                    length=20,
                ),
                nullable=False,
                server_default="no_consent",
            )
        )
        batch.add_column(
            sa.Column("whatsapp_opted_out_at", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(_channel_column())
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(_channel_column())
        batch.add_column(sa.Column("superseded_sids", sa.JSON(), nullable=True))
    op.create_table(
        "whatsapp_templates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "alert",
                "update",
                "all_clear",
                "correction",
                "announcement",
                name="alertkind",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column(
            "language",
            sa.Enum(
                "en", "es", name="language", native_enum=False, create_constraint=True, length=20
            ),
            nullable=False,
        ),
        sa.Column("content_sid", sa.String(length=34), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "approved",
                "pending",
                "rejected",
                name="templatestatus",
                native_enum=False,
                create_constraint=True,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["updated_by_id"],
            ["staff_users.id"],
            name=op.f("fk_whatsapp_templates_updated_by_id_staff_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_whatsapp_templates")),
        sa.UniqueConstraint("kind", "language", name=op.f("uq_whatsapp_templates_kind_language")),
    )


def downgrade() -> None:
    op.drop_table("whatsapp_templates")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("superseded_sids")
        batch.drop_constraint(op.f("ck_deliveries_channel"), type_="check")
        batch.drop_column("channel")
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_constraint(op.f("ck_subscriptions_channel"), type_="check")
        batch.drop_column("channel")
    # Someone who only ever wrote on WhatsApp had no SMS consent: downgraded, they are
    # opted out of SMS rather than texted.
    op.execute("UPDATE subscribers SET status = 'opted_out' WHERE status = 'no_consent'")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("whatsapp_opted_out_at")
        batch.drop_constraint(op.f("ck_subscribers_whatsappstatus"), type_="check")
        batch.drop_column("whatsapp_status")
        batch.drop_constraint(op.f("ck_subscribers_subscriberstatus"), type_="check")
        batch.create_check_constraint("subscriberstatus", f"status IN ({_listed(BEFORE)})")
