"""Migrations on a database that holds data: nothing already stored is lost.

SQLite alters a table by recreating it (copy, drop, rename). With foreign keys enforced,
as every connection of ours has them, dropping the old ``incidents`` or ``alerts`` table
would cascade into deliveries and subscriptions, or fail: a collective upgrading its
small server would lose its ledger. Migrations run with enforcement off and check every
reference before they commit.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import func, select

from rapidresponse import broadcast
from rapidresponse.db import Database, alembic_config, upgrade
from rapidresponse.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Area,
    Delivery,
    Incident,
    Report,
    ReportChannel,
    Subscriber,
    Subscription,
    SubscriptionStatus,
)

COUNTED = (Area, Subscriber, Subscription, Incident, Report, Alert, Delivery)


def fill(database: Database) -> dict[str, int]:
    with database.session() as session:
        area = Area(slug="cully", name="Cully")
        session.add(area)
        session.flush()
        subscriber = Subscriber(phone_sealed=b"sealed", phone_index="i" * 64)
        session.add(subscriber)
        session.flush()
        session.add(
            Subscription(
                subscriber_id=subscriber.id, area_id=area.id, status=SubscriptionStatus.CONFIRMED
            )
        )
        incident = Incident(code="K7P2", area_id=area.id)
        session.add(incident)
        session.flush()
        session.add(Report(code="R7K2", incident_id=incident.id, channel=ReportChannel.SMS))
        alert = Alert(kind=AlertKind.ALERT, status=AlertStatus.COMPLETE, incident_id=incident.id)
        session.add(alert)
        session.flush()
        session.add(Delivery(alert_id=alert.id, subscriber_id=subscriber.id))
    return counts(database)


def counts(database: Database) -> dict[str, int]:
    with database.session() as session:
        return {
            model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in COUNTED
        }


@pytest.mark.parametrize("back_to", ["0021", "0019", "0012"])
def test_down_and_up_again_on_sqlite_keeps_every_row(tmp_path: Path, back_to: str) -> None:
    url = f"sqlite:///{tmp_path / 'rr.sqlite'}"
    upgrade(url)
    database = Database(url)
    try:
        before = fill(database)
        assert all(before.values())
        command.downgrade(alembic_config(url), back_to)
        upgrade(url)
        assert counts(database) == before
    finally:
        database.engine.dispose()


def test_foreign_keys_are_enforced_again_after_migrating(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'rr.sqlite'}"
    upgrade(url)
    database = Database(url)
    try:
        with database.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        database.engine.dispose()


def test_progress_is_counted_for_the_deliveries_already_there(tmp_path: Path) -> None:
    """A collective upgrading mid-morning: the alerts already sent show their counts."""
    url = f"sqlite:///{tmp_path / 'rr.sqlite'}"
    upgrade(url, "0024")
    database = Database(url)
    try:
        fill(database)
        upgrade(url)
        with database.session() as session:
            (alert_id,) = session.scalars(select(Alert.id)).all()
            kept = broadcast.progress(session, alert_id)
            assert kept.total == kept.pending == 1
            assert kept == broadcast.counted_progress(session, alert_id)
    finally:
        database.engine.dispose()
