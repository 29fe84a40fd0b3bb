"""Migrations on a database that holds data: nothing already stored is lost.

SQLite alters a table by recreating it (copy, drop, rename). With foreign keys enforced,
as every connection of ours has them, dropping the old ``incidents`` or ``alerts`` table
would cascade into deliveries and subscriptions, or fail: a collective upgrading its
small server would lose its ledger. Migrations run with enforcement off and check every
reference before they commit.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import MetaData, Table, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from rapidresponse import broadcast
from rapidresponse.broadcast import CallbackStatus
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
        add_delivery(session, alert.id, subscriber.id)
    return counts(database)


def add_delivery(
    session: Session, alert_id: int, subscriber_id: int, **values: object
) -> str | None:
    """A pending delivery, written as the schema in place takes it: before migration
    0029 with a 32-hex id of its own (returned), after it with the id the database
    counts (None returned). The table as it is: the model describes only the newest schema."""
    deliveries = Table("deliveries", MetaData(), autoload_with=session.connection())
    now = datetime.now(UTC).replace(tzinfo=None)
    row: dict[str, object] = {
        "alert_id": alert_id,
        "subscriber_id": subscriber_id,
        "language": "en",
        "status": "pending",
        "attempts": 0,
        "created_at": now,
        "updated_at": now,
        **values,
    }
    legacy = None if "legacy_id" in deliveries.c else uuid.uuid4().hex
    if legacy is not None:
        row["id"] = legacy
    session.execute(deliveries.insert().values(row))
    return legacy


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


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database of its own, on SQLite and, when the suite runs against PostgreSQL,
    there too (a database created for the test beside the suite's, then dropped)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'rr.sqlite'}"
        return
    given = os.environ.get("TEST_DATABASE_URL", "")
    if not given.startswith("postgresql"):
        pytest.skip("only on PostgreSQL: the suite runs against SQLite (TEST_DATABASE_URL)")
    suite = make_url(given)
    name = f"{suite.database}_migration_{os.getpid()}"
    server = Database(suite.render_as_string(hide_password=False))
    with server.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as admin:
        admin.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield suite.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as admin:
            admin.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        server.dispose()


def test_callbacks_for_messages_sent_before_integer_keys_still_find_their_row(
    empty_database_url: str,
) -> None:
    """A collective upgrading mid-broadcast: messages already out name their delivery
    by its old 32-hex id; their callbacks, even one whose send's answer was lost, land
    on the right row after the upgrade, and the counters stay right."""
    url = empty_database_url
    upgrade(url, "0028")
    database = Database(url)
    try:
        fill(database)
        with database.session() as session:
            alert_id = session.scalars(select(Alert.id)).one()
            subscribers = [
                Subscriber(phone_sealed=b"sealed", phone_index=f"{n:064d}") for n in range(3)
            ]
            session.add_all(subscribers)
            session.flush()
            lost_answer = add_delivery(
                session, alert_id, subscribers[0].id, status="claimed", batch=1
            )
            sent = add_delivery(
                session, alert_id, subscribers[1].id, status="sent", provider_sid="SM" + "1" * 32
            )
        before = counts(database)
        upgrade(url)
        database.dispose()
        database = Database(url)
        assert counts(database) == before
        with database.session() as session:
            rows = session.execute(
                select(Delivery.id, Delivery.legacy_id).order_by(Delivery.id)
            ).all()
            # Numbered in the order they were written, each keeping its old id.
            assert [legacy for _, legacy in rows][1:] == [lost_answer, sent]
            assert all(isinstance(key, int) for key, _ in rows)
            assert all(legacy is not None for _, legacy in rows)
            now = datetime.now(UTC)
            for key, sid in ((lost_answer, "SM" + "2" * 32), (sent, "SM" + "1" * 32)):
                assert key is not None
                outcome = broadcast.record_callback(
                    session,
                    key,
                    message_sid=sid,
                    status=CallbackStatus.DELIVERED,
                    error_code=None,
                    now=now,
                )
                assert outcome.changed and outcome.alert_id == alert_id
            # A newer row takes the next integer and no old id; its key is that integer.
            newest = Delivery(alert_id=alert_id, subscriber_id=subscribers[2].id)
            session.add(newest)
            session.flush()
            assert newest.id > rows[-1][0] and newest.legacy_id is None
            found = broadcast.delivery_for_callback(session, broadcast.callback_key(newest.id))
            assert found is newest
        with database.session() as session:
            statuses = session.scalars(
                select(Delivery.status).where(Delivery.legacy_id.in_([lost_answer, sent]))
            ).all()
            assert [s.value for s in statuses] == ["delivered", "delivered"]
            kept = broadcast.progress(session, alert_id)
            assert kept == broadcast.counted_progress(session, alert_id)
            assert kept.total == 4 and kept.delivered == 2
        # And back: every row has a 32-hex id again, the old ones their own.
        database.dispose()
        command.downgrade(alembic_config(url), "0028")
        with database.engine.connect() as connection:
            ids = set(connection.execute(text("SELECT id FROM deliveries")).scalars())
        assert len(ids) == 4 and {lost_answer, sent} <= ids
        assert all(len(key) == 32 for key in ids)
        upgrade(url)
        assert counts(database) == {**before, "deliveries": 4}
    finally:
        database.dispose()
