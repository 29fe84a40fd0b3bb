"""an alert's progress kept as it happens: counts per batch and status, moved by triggers

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-07 13:00:00

Reading an alert's progress counted its deliveries (GROUP BY status): 200 ms at 200,000
recipients, on every board render of every recent alert. The counts now live in
``alert_progress``, one row per (alert, batch), and the database moves them in the same
transaction as the delivery rows, whoever writes them: a trigger cannot be forgotten by
a new code path, and a rolled-back change rolls its counts back with it.

PostgreSQL: statement-level triggers with transition tables, so a statement that marks
a chunk of 50 deliveries moves each counter row once, and the ledger's INSERT ... SELECT
of 100,000 rows adds one aggregate, not 100,000 trigger calls. SQLite has only row
triggers; it has one writer at a time anyway.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# DeliveryStatus as of this revision: a status added later adds its column and triggers.
STATUSES = (
    "pending",
    "claimed",
    "sent",
    "delivered",
    "failed",
    "undeliverable",
    "opted_out",
    "expired",
)
COUNTS = (*STATUSES, "unknown_outcomes")
COLUMNS = ", ".join(COUNTS)


def _counts_of(row: str) -> list[str]:
    """What one delivery row counts for, in COUNTS order."""
    return [f"CASE WHEN {row}.status = '{status}' THEN 1 ELSE 0 END" for status in STATUSES] + [
        f"{row}.unknown_outcomes"
    ]


def _added(target: str) -> str:
    return ", ".join(f"{count} = {target}.{count} + excluded.{count}" for count in COUNTS)


# --- PostgreSQL ------------------------------------------------------------------------------

# Net change per counter of rows (alert_id, batch, status, unknown_outcomes, sign).
PG_SUMS = [f"sum(CASE WHEN status = '{s}' THEN sign ELSE 0 END)" for s in STATUSES] + [
    "sum(sign * unknown_outcomes)"
]


def _pg_rows(table: str, sign: int) -> str:
    return f"SELECT alert_id, batch, status, unknown_outcomes, {sign} AS sign FROM {table}"


def _pg_move(changed: str) -> str:
    """Add the net change of ``changed`` to the counters. Groups that net to nothing (a
    lease renewed, a timestamp set) touch no counter row; the rest are written in key
    order, so two statements lock counter rows in the same order and cannot deadlock."""
    moved = " OR ".join(f"{total} <> 0" for total in PG_SUMS)
    return f"""
        INSERT INTO alert_progress AS counted (alert_id, batch, {COLUMNS})
        SELECT alert_id, batch, {", ".join(PG_SUMS)}
        FROM ({changed}) AS changed
        GROUP BY alert_id, batch
        HAVING {moved}
        ORDER BY alert_id, batch
        ON CONFLICT (alert_id, batch) DO UPDATE SET {_added("counted")};
    """


# A delivery deleted with its alert: the alert's counters are gone already (cascade), so
# a delete only subtracts from rows that are still there and never inserts one.
PG_DELETE = f"""
    UPDATE alert_progress AS counted
    SET {", ".join(f"{count} = counted.{count} + gone.{count}" for count in COUNTS)}
    FROM (
        SELECT alert_id, batch, {", ".join(f"{t} AS {c}" for t, c in zip(PG_SUMS, COUNTS))}
        FROM ({_pg_rows("old_rows", -1)}) AS changed GROUP BY alert_id, batch
    ) AS gone
    WHERE counted.alert_id = gone.alert_id AND counted.batch = gone.batch;
"""
PG_TRIGGERS = {
    "insert": ("REFERENCING NEW TABLE AS new_rows", _pg_move(_pg_rows("new_rows", 1))),
    # Transition tables allow no column list: every UPDATE fires, and _pg_move keeps
    # only what changed a count.
    "update": (
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        _pg_move(f"{_pg_rows('new_rows', 1)} UNION ALL {_pg_rows('old_rows', -1)}"),
    ),
    "delete": ("REFERENCING OLD TABLE AS old_rows", PG_DELETE),
}


def _pg_upgrade() -> None:
    for event, (referencing, body) in PG_TRIGGERS.items():
        op.execute(
            f"""
            CREATE FUNCTION alert_progress_{event}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                {body}
                RETURN NULL;
            END;
            $$;
            """
        )
        op.execute(
            f"""
            CREATE TRIGGER deliveries_progress_{event}
            AFTER {event.upper()} ON deliveries {referencing}
            FOR EACH STATEMENT EXECUTE FUNCTION alert_progress_{event}();
            """
        )


def _pg_downgrade() -> None:
    for event in PG_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS deliveries_progress_{event} ON deliveries")
        op.execute(f"DROP FUNCTION IF EXISTS alert_progress_{event}()")


# --- SQLite ----------------------------------------------------------------------------------


def _sqlite_add(row: str) -> str:
    return f"""
        INSERT INTO alert_progress (alert_id, batch, {COLUMNS})
        VALUES ({row}.alert_id, {row}.batch, {", ".join(_counts_of(row))})
        ON CONFLICT (alert_id, batch) DO UPDATE SET {_added("alert_progress")};
    """


def _sqlite_take(row: str) -> str:
    taken = ", ".join(
        f"{count} = {count} - {value}"
        for count, value in zip(COUNTS, _counts_of(row), strict=True)
    )
    return f"""
        UPDATE alert_progress SET {taken}
        WHERE alert_id = {row}.alert_id AND batch = {row}.batch;
    """


SQLITE_TRIGGERS = {
    "insert": ("AFTER INSERT ON deliveries", _sqlite_add("NEW")),
    "update": (
        "AFTER UPDATE OF status, batch, unknown_outcomes ON deliveries "
        "WHEN OLD.status IS NOT NEW.status OR OLD.batch IS NOT NEW.batch "
        "OR OLD.unknown_outcomes IS NOT NEW.unknown_outcomes",
        _sqlite_take("OLD") + _sqlite_add("NEW"),
    ),
    "delete": ("AFTER DELETE ON deliveries", _sqlite_take("OLD")),
}


def _sqlite_upgrade() -> None:
    for event, (when, body) in SQLITE_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER deliveries_progress_{event} {when} BEGIN {body} END")


def _sqlite_downgrade() -> None:
    for event in SQLITE_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS deliveries_progress_{event}")


# --- both --------------------------------------------------------------------------------


def _count_what_is_there() -> None:
    counts = ", ".join(f"sum({value})" for value in _counts_of("deliveries"))
    op.execute(
        f"""
        INSERT INTO alert_progress (alert_id, batch, {COLUMNS})
        SELECT alert_id, batch, {counts} FROM deliveries GROUP BY alert_id, batch
        """
    )


def upgrade() -> None:
    op.create_table(
        "alert_progress",
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("batch", sa.Integer(), nullable=False, autoincrement=False),
        *(
            sa.Column(count, sa.Integer(), nullable=False, server_default="0")
            for count in COUNTS
        ),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["alerts.id"],
            name=op.f("fk_alert_progress_alert_id_alerts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("alert_id", "batch", name=op.f("pk_alert_progress")),
    )
    _count_what_is_there()
    if op.get_bind().dialect.name == "postgresql":
        _pg_upgrade()
    else:
        _sqlite_upgrade()


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _pg_downgrade()
    else:
        _sqlite_downgrade()
    op.drop_table("alert_progress")
