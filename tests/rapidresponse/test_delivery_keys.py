"""A delivery's integer key (migration 0029): never reused, and every way of finding a
row by something other than its alert uses an index, on the database the suite runs on.

A million-recipient alert is a million delivery rows: a query that reads them all to
find the few a callback, a crashed worker or the reaper wants costs seconds per call.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import Select, delete, select, text
from sqlalchemy.orm import Session

from dispatch.services import Services
from rapidresponse import broadcast
from rapidresponse.broadcast import CallbackStatus
from rapidresponse.db import Database
from rapidresponse.models import Alert, Delivery, DeliveryStatus, Language, utcnow
from tests.factories import ALICE, add_alert_for, add_subscriber


def test_a_deleted_deliverys_key_is_never_given_to_a_newer_one(services: Services) -> None:
    """An erased alert's message may still be called back: its key must not name the
    next alert's row, which a callback for an unsent row would mark sent."""
    subscriber = add_subscriber(services, ALICE)
    erased = add_alert_for(services, subscriber, Language.EN)
    with services.database.session() as session:
        session.execute(delete(Alert).where(Alert.id == erased.alert_id))
    newer = add_alert_for(services, subscriber, Language.EN)
    assert newer.delivery_id > erased.delivery_id
    with services.database.session() as session:
        late = broadcast.record_callback(
            session,
            broadcast.callback_key(erased.delivery_id),
            message_sid="SM" + "3" * 32,
            status=CallbackStatus.DELIVERED,
            error_code=None,
            now=utcnow(),
        )
        assert not late.changed
        assert session.get_one(Delivery, newer.delivery_id).status is DeliveryStatus.PENDING


@pytest.mark.parametrize(
    ("spelling", "found"),
    [("{}", True), ("0{}", False), ("{} ", False), ("+{}", False), ("{}.0", False)],
)
def test_a_callback_key_names_a_row_only_in_its_one_spelling(
    services: Services, spelling: str, found: bool
) -> None:
    ledger = add_alert_for(services, add_subscriber(services, ALICE), Language.EN)
    with services.database.session() as session:
        row = broadcast.delivery_for_callback(session, spelling.format(ledger.delivery_id))
        assert (row is not None and row.id == ledger.delivery_id) is found


def lookups(now: datetime) -> dict[str, Select[tuple[int]]]:
    """What the callbacks, the workers and the reaper look deliveries up by."""
    return {
        "an old 32-hex callback key": select(Delivery.id).where(Delivery.legacy_id == "a" * 32),
        "a batch's rows under its lease": select(Delivery.id).where(
            broadcast.leased_to(1, 2, "f" * 32), Delivery.status == DeliveryStatus.CLAIMED
        ),
        "rows claimed under their own lease": select(Delivery.alert_id, Delivery.batch).where(
            broadcast.claimed_under_own_lease(now)
        ),
        "an alert's unfinished rows": select(Delivery.id).where(
            Delivery.alert_id == 1, Delivery.status.in_(broadcast.UNFINISHED)
        ),
    }


@pytest.mark.parametrize("lookup", list(lookups(utcnow())))
def test_each_lookup_of_deliveries_uses_an_index(database: Database, lookup: str) -> None:
    statement = lookups(utcnow() + timedelta(minutes=5))[lookup]
    with database.session() as session:
        plan = query_plan(session, statement)
    assert "index" in plan.lower(), plan
    assert not any(scan in plan for scan in ("SCAN deliveries", "Seq Scan")), plan


def query_plan(session: Session, statement: Select[tuple[int]]) -> str:
    """The plan the database would follow. PostgreSQL is told to avoid reading the
    whole table where it can: on the suite's few rows it would rightly prefer it, and
    what is asked here is whether an index can answer at all."""
    compiled = statement.compile(
        dialect=session.get_bind().dialect, compile_kwargs={"literal_binds": True}
    )
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL enable_seqscan = off"))
        rows = session.execute(text(f"EXPLAIN {compiled}")).scalars()
    else:
        rows = (row[-1] for row in session.execute(text(f"EXPLAIN QUERY PLAN {compiled}")))
    return "\n".join(str(row) for row in rows)
