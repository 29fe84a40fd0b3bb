"""An alert's progress is kept by the database as its deliveries change (migration 0025):
whatever is done to the ledger, in any order, committed or rolled back, the kept counts
equal the deliveries counted. On SQLite here, on PostgreSQL in CI (statement triggers
with transition tables there). Every test that uses the database checks the same at
its end (tests/conftest.py), so the real paths (broadcasts killed with -9, callbacks, the
reaper, purges) are checked too."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from rapidresponse import broadcast
from rapidresponse.db import Database
from rapidresponse.models import (
    Alert,
    AlertStatus,
    Delivery,
    DeliveryStatus,
    Subscriber,
    alert_progress,
    utcnow,
)

PEOPLE = 40
BATCHES = 2  # few, so that steps meet the rows earlier steps wrote
STATUSES = list(DeliveryStatus)


@dataclass(frozen=True)
class Step:
    """One change to the ledger, of the kinds the engine makes."""

    kind: str  # write | mark | unknown | rebatch | renew | forget
    alert: int
    batch: int
    statuses: tuple[DeliveryStatus, ...]
    to: DeliveryStatus
    how_many: int
    rolled_back: bool


steps = st.builds(
    Step,
    kind=st.sampled_from(["write", "mark", "unknown", "rebatch", "renew", "forget"]),
    alert=st.integers(0, 1),
    batch=st.integers(0, BATCHES - 1),
    statuses=st.lists(st.sampled_from(STATUSES), min_size=1, max_size=3, unique=True).map(tuple),
    to=st.sampled_from(STATUSES),
    how_many=st.integers(1, 15),
    rolled_back=st.booleans(),
)


SENT, PENDING = DeliveryStatus.SENT, DeliveryStatus.PENDING
# Every kind of change after a write, on the rows it wrote (random lists meet them less).
EVERY_KIND_ONCE = [
    Step("write", 0, 1, (), PENDING, 12, False),
    Step("write", 1, 1, (), PENDING, 5, False),
    Step("mark", 0, 1, (PENDING,), SENT, 7, False),
    Step("unknown", 0, 1, (), SENT, 1, False),
    Step("renew", 0, 1, (), SENT, 1, False),
    Step("rebatch", 0, 1, (), SENT, 1, False),
    Step("mark", 0, 0, (SENT,), DeliveryStatus.DELIVERED, 3, False),
    Step("forget", 0, 0, (PENDING, SENT), SENT, 1, False),
]


def people_and_alerts(database: Database) -> list[int]:
    with database.session() as session:
        session.execute(delete(Alert))
        session.execute(delete(Subscriber))
        session.add_all(
            Subscriber(phone_sealed=b"sealed", phone_index=f"{n:064d}") for n in range(PEOPLE)
        )
        alerts = [Alert(texts={"en": "x"}, status=AlertStatus.APPROVED) for _ in range(2)]
        session.add_all(alerts)
        session.flush()
        return [alert.id for alert in alerts]


def apply(session: Session, step: Step, alert_id: int) -> None:
    rows = Delivery.__table__
    here = (rows.c.alert_id == alert_id, rows.c.batch == step.batch)
    if step.kind == "write":
        # As the ledger does: several rows in one statement, for people not yet on it.
        fresh = session.scalars(
            select(Subscriber.id)
            .where(~Subscriber.id.in_(select(rows.c.subscriber_id).where(*here[:1])))
            .limit(step.how_many)
        ).all()
        if fresh:
            session.execute(
                insert(rows),
                [
                    {
                        "alert_id": alert_id,
                        "subscriber_id": person,
                        "batch": step.batch,
                        "status": step.to,
                        "unknown_outcomes": 0,
                        "attempts": 0,
                    }
                    for person in fresh
                ],
            )
    elif step.kind == "mark":
        chosen = (
            select(rows.c.id).where(*here, rows.c.status.in_(step.statuses)).limit(step.how_many)
        )
        session.execute(update(rows).where(rows.c.id.in_(chosen)).values(status=step.to))
    elif step.kind == "unknown":
        session.execute(
            update(rows).where(*here).values(unknown_outcomes=rows.c.unknown_outcomes + 1)
        )
    elif step.kind == "rebatch":
        session.execute(update(rows).where(*here).values(batch=(step.batch + 1) % BATCHES))
    elif step.kind == "renew":  # touches rows, moves no count
        later = utcnow() + timedelta(minutes=5)
        session.execute(update(rows).where(*here).values(lease_expires_at=later))
    else:
        session.execute(delete(rows).where(*here, rows.c.status.in_(step.statuses)))


def agree(database: Database, alert_ids: list[int]) -> None:
    with database.session() as session:
        for alert_id in alert_ids:
            assert broadcast.progress(session, alert_id) == broadcast.counted_progress(
                session, alert_id
            )


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(changes=st.lists(steps, min_size=1, max_size=30))
@example(changes=EVERY_KIND_ONCE)
@example(changes=[*EVERY_KIND_ONCE[:1], *(replace(s, rolled_back=True) for s in EVERY_KIND_ONCE)])
def test_kept_progress_equals_the_deliveries_after_any_changes(
    database: Database, changes: list[Step]
) -> None:
    alert_ids = people_and_alerts(database)
    for step in changes:
        session = database.sessions()
        try:
            apply(session, step, alert_ids[step.alert])
            if step.rolled_back:
                session.rollback()
            else:
                session.commit()
        finally:
            session.close()
    agree(database, alert_ids)


def test_progress_reads_one_row_per_batch_not_every_delivery(database: Database) -> None:
    """The progress read sums one row per batch: what the counters hold is the shape
    the read's cost depends on."""
    (alert_id, _) = people_and_alerts(database)
    with database.session() as session:
        session.execute(
            insert(Delivery.__table__),
            [
                {
                    "alert_id": alert_id,
                    "subscriber_id": person,
                    "batch": person % 3,
                    "status": DeliveryStatus.PENDING,
                    "unknown_outcomes": 0,
                    "attempts": 0,
                }
                for person in session.scalars(select(Subscriber.id))
            ],
        )
    with database.session() as session:
        kept_rows = session.scalar(
            select(func.count())
            .select_from(alert_progress)
            .where(alert_progress.c.alert_id == alert_id)
        )
        assert kept_rows == 3
        assert broadcast.progress(session, alert_id).pending == PEOPLE


def test_an_alert_deleted_takes_its_counts_with_it(database: Database) -> None:
    alert_ids = people_and_alerts(database)
    with database.session() as session:
        apply(session, Step("write", 0, 1, (), DeliveryStatus.SENT, 10, False), alert_ids[0])
    with database.session() as session:
        session.execute(delete(Alert).where(Alert.id == alert_ids[0]))
    with database.session() as session:
        left = session.scalar(select(func.count()).select_from(alert_progress))
        assert left == 0
        assert broadcast.progress(session, alert_ids[0]).total == 0
