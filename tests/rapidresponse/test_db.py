"""The schema: migrations match the models, SQLite is hardened, the ledger is unique."""

from __future__ import annotations

import traceback

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from rapidresponse.crypto import FieldCipher
from rapidresponse.db import Database, upgrade
from rapidresponse.models import Alert, Base, Delivery, Language, Subscriber

CORE_TABLES = {
    "areas",
    "subscribers",
    "subscriptions",
    "responders",
    "responder_areas",
    "reports",
    "incidents",
    "dispatches",
    "alerts",
    "alert_areas",
    "deliveries",
    "staff_users",
    "audit_events",
    "outbox_messages",
}


def test_migrations_create_every_core_table(database: Database) -> None:
    assert set(inspect(database.engine).get_table_names()) >= CORE_TABLES


def test_migrations_match_the_models(database: Database) -> None:
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_upgrading_again_changes_nothing(database: Database) -> None:
    upgrade(database.url)
    with database.engine.connect() as connection:
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version is not None


def test_sqlite_is_hardened(database: Database) -> None:
    if database.dialect != "sqlite":
        pytest.skip("only on SQLite: its pragmas")
    with database.engine.connect() as connection:
        pragma = connection.exec_driver_sql
        assert pragma("PRAGMA journal_mode").scalar() == "wal"
        assert pragma("PRAGMA secure_delete").scalar() == 1
        assert pragma("PRAGMA foreign_keys").scalar() == 1


def subscriber(cipher: FieldCipher, index: str) -> Subscriber:
    return Subscriber(
        phone_sealed=cipher.encrypt("+15035550199", "subscriber.phone"),
        phone_index=index,
        language=Language.ES,
    )


def test_one_delivery_per_alert_and_subscriber(database: Database) -> None:
    cipher = FieldCipher([b"k" * 32])
    with database.session() as session:
        person, alert = subscriber(cipher, "a" * 64), Alert(texts={"en": "x"})
        session.add_all([person, alert])
        session.flush()
        session.add(Delivery(alert_id=alert.id, subscriber_id=person.id))
        ids = (alert.id, person.id)
    with pytest.raises(IntegrityError), database.session() as session:
        session.add(Delivery(alert_id=ids[0], subscriber_id=ids[1]))


def test_foreign_keys_are_enforced(database: Database) -> None:
    with pytest.raises(IntegrityError), database.session() as session:
        session.add(Delivery(alert_id=999_999, subscriber_id=999_999))


def test_times_come_back_in_utc(database: Database) -> None:
    with database.session() as session:
        alert = Alert(texts={"en": "x"})
        session.add(alert)
        session.flush()
        alert_id = alert.id
    with database.session() as session:
        created = session.get_one(Alert, alert_id).created_at
    assert created.utcoffset() is not None and created.utcoffset().total_seconds() == 0


def test_a_refused_row_is_never_quoted_in_the_error(database: Database) -> None:
    """Neither the statement's values (hide_parameters) nor PostgreSQL's "Key (…)=(…)" /
    "Failing row contains (…)": an error's message goes to logs and RQ's failed jobs."""
    from rapidresponse.models import StaffRole, StaffUser
    from rapidresponse.passwords import hash_password

    email = "lupe.private@example.org"
    with database.session() as session:
        session.add(
            StaffUser(email=email, role=StaffRole.DISPATCHER, password_hash=hash_password("x" * 12))
        )
    with pytest.raises(IntegrityError) as refused, database.session() as session:
        session.add(StaffUser(email=email, role=StaffRole.DISPATCHER, password_hash="also secret"))
    said = "".join(traceback.format_exception(refused.value))
    assert "staff_users" in said  # it says what was refused
    assert email not in said and "also secret" not in said and "lupe" not in said
