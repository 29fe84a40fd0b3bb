"""a delivery's key is an integer the database counts up; old 32-hex ids still resolve

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07 20:00:00

A delivery row is written once per recipient: a million of them for a statewide alert.
Its key was 32 random hex digits: 33 bytes in the row, and 80 bytes per row in a primary
key index that random inserts keep half empty. An integer from a sequence is 8 bytes and
its index fills its pages: about 90 bytes less per delivery on PostgreSQL.

The key goes into the StatusCallback URL of every message, so a message sent before the
upgrade is called back with its old id, possibly hours later, or while its send's HTTP
answer was lost and only the callback says it left. Those rows keep their old id in
``legacy_id`` (a partial unique index: rows written after the upgrade hold nothing in
it) and a callback naming one is matched by it.

Two indexes become partial, holding only the rows that have a value: the provider id's
unique index (a pending row has none: on PostgreSQL a NULL still took an entry) and the
index of per-row leases, which no row has had since migration 0026 (it was on every status
change's path). The reaper's query for old leases names ``lease_expires_at IS NOT NULL``,
so SQLite uses the partial index too.

SQLite cannot change a primary key in place: the table is rebuilt from its own stored
definition, and its indexes and the progress counters' triggers are created again from
theirs. The counters need no recount: a rebuild copies rows, it changes no status.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from alembic import op
from sqlalchemy import text
from sqlalchemy.engine import Connection

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Partial indexes: a row holds an entry only once it has a value. A ledger's pending rows
# have no provider id yet, and since migration 0026 no row has a lease of its own.
PARTIAL_INDEXES = (
    "CREATE UNIQUE INDEX ix_deliveries_legacy_id ON deliveries (legacy_id) "
    "WHERE legacy_id IS NOT NULL",
    "CREATE UNIQUE INDEX uq_deliveries_provider_sid ON deliveries (provider_sid) "
    "WHERE provider_sid IS NOT NULL",
    "CREATE INDEX ix_deliveries_own_lease ON deliveries (lease_expires_at) "
    "WHERE lease_expires_at IS NOT NULL",
)
PROVIDER_SID_CONSTRAINT = "CONSTRAINT uq_deliveries_provider_sid UNIQUE (provider_sid)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _pg_upgrade()
    else:
        _sqlite_rebuild(
            [
                (
                    r"\bid VARCHAR\(32\) NOT NULL,",
                    "id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, legacy_id VARCHAR(32),",
                ),
                (r"CONSTRAINT pk_deliveries PRIMARY KEY \(id\),\s*", ""),
                (re.escape(PROVIDER_SID_CONSTRAINT) + r",\s*", ""),
            ],
            # Numbered in the order they were written; the old id kept beside.
            new_id="NULL",
            legacy_id="id",
            order="rowid",
        )
    op.execute("DROP INDEX ix_deliveries_status_lease")
    for create in PARTIAL_INDEXES:
        op.execute(create)


def downgrade() -> None:
    for index in (
        "ix_deliveries_legacy_id",
        "uq_deliveries_provider_sid",
        "ix_deliveries_own_lease",
    ):
        op.execute(f"DROP INDEX {index}")
    op.execute("CREATE INDEX ix_deliveries_status_lease ON deliveries (status, lease_expires_at)")
    if op.get_bind().dialect.name == "postgresql":
        _pg_downgrade()
    else:
        _sqlite_rebuild(
            [
                (
                    r"\bid INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,\s*legacy_id VARCHAR\(32\),",
                    "id VARCHAR(32) NOT NULL,",
                ),
                (
                    r"(\s)CONSTRAINT ",
                    rf"\1CONSTRAINT pk_deliveries PRIMARY KEY (id), {PROVIDER_SID_CONSTRAINT}, "
                    "CONSTRAINT ",
                ),
            ],
            new_id="coalesce(legacy_id, lower(hex(randomblob(16))))",
            legacy_id=None,
            order="id",
        )


# --- PostgreSQL ------------------------------------------------------------------------------


def _pg_upgrade() -> None:
    op.execute("ALTER TABLE deliveries DROP CONSTRAINT uq_deliveries_provider_sid")
    op.execute("ALTER TABLE deliveries DROP CONSTRAINT pk_deliveries")
    op.execute("ALTER TABLE deliveries RENAME COLUMN id TO legacy_id")
    op.execute("ALTER TABLE deliveries ALTER COLUMN legacy_id DROP NOT NULL")
    # A volatile default numbers every row already there as the column is added; the
    # progress triggers fire on INSERT, UPDATE and DELETE, not on this.
    op.execute("ALTER TABLE deliveries ADD COLUMN id BIGSERIAL NOT NULL")
    op.execute("ALTER TABLE deliveries ADD CONSTRAINT pk_deliveries PRIMARY KEY (id)")


def _pg_downgrade() -> None:
    op.execute("ALTER TABLE deliveries DROP CONSTRAINT pk_deliveries")
    op.execute("ALTER TABLE deliveries DROP COLUMN id")
    op.execute(
        "UPDATE deliveries SET legacy_id = replace(gen_random_uuid()::text, '-', '') "
        "WHERE legacy_id IS NULL"
    )
    op.execute("ALTER TABLE deliveries RENAME COLUMN legacy_id TO id")
    op.execute("ALTER TABLE deliveries ALTER COLUMN id SET NOT NULL")
    op.execute("ALTER TABLE deliveries ADD CONSTRAINT pk_deliveries PRIMARY KEY (id)")
    op.execute(f"ALTER TABLE deliveries ADD {PROVIDER_SID_CONSTRAINT}")


# --- SQLite ----------------------------------------------------------------------------------


def _sqlite_rebuild(
    edits: list[tuple[str, str]], *, new_id: str, legacy_id: str | None, order: str
) -> None:
    """Rebuild ``deliveries`` from its stored CREATE TABLE with ``edits`` (each must
    match exactly once, or the migration stops before it changes anything), copy every
    row, and create its indexes and triggers again as they were stored."""
    connection = op.get_bind()
    table_sql = _stored(connection, "table")[0]
    for pattern, replacement in edits:
        table_sql, found = re.subn(pattern, replacement, table_sql, count=1)
        if found != 1:
            raise RuntimeError(f"deliveries is not as migration 0029 expects: {pattern!r}")
    table_sql = re.sub(r'CREATE TABLE "?deliveries"?', "CREATE TABLE deliveries_rebuilt", table_sql)
    others = _stored(connection, "index") + _stored(connection, "trigger")
    kept = [
        row[1]
        for row in connection.execute(text("PRAGMA table_info(deliveries)"))
        if row[1] not in ("id", "legacy_id")
    ]
    columns = ", ".join(kept)
    target = f"id, {columns}" + (", legacy_id" if legacy_id else "")
    source = f"{new_id}, {columns}" + (f", {legacy_id}" if legacy_id else "")
    op.execute(table_sql)
    op.execute(
        f"INSERT INTO deliveries_rebuilt ({target}) SELECT {source} FROM deliveries ORDER BY {order}"
    )
    op.execute("DROP TABLE deliveries")
    op.execute("ALTER TABLE deliveries_rebuilt RENAME TO deliveries")
    for sql in others:
        op.execute(sql)


def _stored(connection: Connection, kind: str) -> list[str]:
    """The CREATE statements SQLite keeps for ``deliveries``' table, indexes or triggers
    (indexes made by constraints have none: they come back with the table)."""
    return [
        str(sql)
        for (sql,) in connection.execute(
            text(
                "SELECT sql FROM sqlite_master WHERE tbl_name = 'deliveries' "
                "AND type = :kind AND sql IS NOT NULL ORDER BY name"
            ),
            {"kind": kind},
        )
    ]
