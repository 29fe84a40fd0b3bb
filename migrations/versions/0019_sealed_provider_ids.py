"""the ids of messages waiting to be deleted at the provider are sealed under an hour's
shred key, destroyed once that hour's deletions are done

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 18:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Rows scheduled before this keep their readable id (``sid``) until they are done;
    # new rows never fill it.
    with op.batch_alter_table("provider_redactions") as batch:
        batch.alter_column("sid", existing_type=sa.String(length=64), nullable=True)
        batch.add_column(sa.Column("sid_sealed", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("sid_digest", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("key_name", sa.String(length=48), nullable=True))
        batch.create_unique_constraint(batch.f("uq_provider_redactions_sid_digest"), ["sid_digest"])
        batch.create_index(batch.f("ix_provider_redactions_key_name"), ["key_name"])


def downgrade() -> None:
    # A sealed id cannot be written back readable here (the keys are not in reach of a
    # migration): those deletions are dropped, which only leaves the copy at Twilio.
    op.execute("DELETE FROM provider_redactions WHERE sid IS NULL")
    with op.batch_alter_table("provider_redactions") as batch:
        batch.drop_index(batch.f("ix_provider_redactions_key_name"))
        batch.drop_constraint(batch.f("uq_provider_redactions_sid_digest"), type_="unique")
        batch.drop_column("key_name")
        batch.drop_column("sid_digest")
        batch.drop_column("sid_sealed")
        batch.alter_column("sid", existing_type=sa.String(length=64), nullable=False)
