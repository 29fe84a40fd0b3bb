"""A streamed ledger: approval writes the first segment, ledger jobs write the rest.

Against the real database, in-process: every recipient is written once and nobody is
skipped however the segments fall (ranks, channels, sparse audiences, a rollback), the
own area's batches all come before the adjacent areas' and those wait, and an alert is
not complete while its ledger is unwritten. The jobs and the reaper with real Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from redis import Redis
from sqlalchemy import select, update

from dispatch import alerts, ledger
from dispatch import broadcast as jobs
from dispatch.broadcast import queued_batches
from dispatch.queues import QueueName, queue
from dispatch.services import Services
from rapidresponse import broadcast
from rapidresponse.crypto import Purpose
from rapidresponse.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Delivery,
    DeliveryStatus,
    Incident,
    IncidentState,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    ledger_cursors,
    utcnow,
)
from tests.dispatch.test_broadcast_core import TEXTS, make_area, statuses, subscribe
from tests.factories import add_many_subscribers

PLAN = broadcast.LedgerPlan.of(40, None, None, 2)


def incident_alert(services: Services, home: int, *adjacent: int) -> int:
    """A draft alert about an incident in ``home`` that also names ``adjacent`` areas."""
    with services.database.session() as session:
        incident = Incident(code="S7R2", state=IncidentState.CONFIRMED, area_id=home)
        session.add(incident)
        session.flush()
        alert = broadcast.draft(
            session,
            kind=AlertKind.ALERT,
            texts=TEXTS,
            area_ids=[home, *adjacent],
            incident_id=incident.id,
            cipher=services.cipher,
        )
        return alert.id


def approve(services: Services, alert_id: int, first_rows: int) -> broadcast.Approval:
    with services.database.session() as session:
        return broadcast.approve(
            session,
            alert_id,
            now=utcnow(),
            validity=timedelta(minutes=30),
            batch=40,
            first_rows=first_rows,
        )


def segments(services: Services, alert_id: int, rows: int) -> Iterator[broadcast.Segment]:
    """Write the rest of the ledger, a segment per transaction, as ledger jobs do."""
    while True:
        with services.database.session() as session:
            segment = broadcast.write_segment(session, alert_id, PLAN, now=utcnow(), rows=rows)
        if segment is None:
            return
        yield segment


def written(services: Services, alert_id: int) -> dict[int, int]:
    """subscriber id -> batch, of every row of the ledger (each subscriber once: the
    table's unique key would refuse a second)."""
    with services.database.session() as session:
        rows = session.execute(
            select(Delivery.subscriber_id, Delivery.batch).where(Delivery.alert_id == alert_id)
        ).all()
    return {int(s): int(b) for s, b in rows}


def cursor_left(services: Services, alert_id: int) -> bool:
    with services.database.session() as session:
        return session.scalar(broadcast.ledger_unfinished(alert_id).select()) is True


def test_a_large_audience_is_written_in_segments_own_area_first(services: Services) -> None:
    cully, lents = make_area(services, "cully"), make_area(services, "lents")
    own = add_many_subscribers(services, cully, 230)
    near = add_many_subscribers(services, lents, 170, first=2_000_000)
    with services.database.session() as session:  # twenty of Lents' also live in Cully
        session.execute(
            Subscription.__table__.insert(),
            [
                {"subscriber_id": s, "area_id": cully, "status": SubscriptionStatus.CONFIRMED}
                for s in near[:20]
            ],
        )
    alert_id = incident_alert(services, cully, lents)

    approval = approve(services, alert_id, first_rows=100)

    assert (approval.recipients, approval.ledger_done) == (100, False)
    assert approval.enqueue_now == range(3)  # 40 + 40 + 20 of Cully's, sent at once
    with services.database.session() as session:
        assert not broadcast.complete_if_done(session, alert_id, utcnow())
    # A newcomer after the approval is not in this alert; a STOP before one's turn is.
    subscribe(services, "+15035559001", cully)
    with services.database.session() as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.id == own[-1])
            .values(status=SubscriberStatus.OPTED_OUT)
        )
    rest = list(segments(services, alert_id, rows=70))

    ledger_rows = written(services, alert_id)
    in_cully = set(own[:-1]) | set(near[:20])
    assert set(ledger_rows) == in_cully | set(near[20:])
    with services.database.session() as session:
        alert = session.get_one(Alert, alert_id)
        held, total = alert.held_from_batch, alert.recipient_count
    assert total == len(ledger_rows)
    assert held is not None
    assert max(ledger_rows[s] for s in in_cully) < held <= min(ledger_rows[s] for s in near[20:])
    # The segments enqueue the own area's batches and hold back the adjacent areas'.
    sent_now = set(approval.enqueue_now).union(*(s.to_send for s in rest))
    assert sent_now == set(range(held))
    assert rest[-1].done and not cursor_left(services, alert_id)


def test_the_adjacent_areas_wait_for_the_whole_ledger_and_the_own_area(
    services: Services,
) -> None:
    cully, lents = make_area(services, "cully"), make_area(services, "lents")
    add_many_subscribers(services, cully, 50)
    add_many_subscribers(services, lents, 90, first=2_000_000)
    alert_id = incident_alert(services, cully, lents)
    approval = approve(services, alert_id, first_rows=80)  # Cully whole, 30 of Lents
    for batch in approval.enqueue_now:
        jobs.send_batch(alert_id, batch)  # Cully handed over ...
    with services.database.session() as session:
        assert broadcast.release_held(session, alert_id) == range(0)  # ... Lents unwritten
        assert not broadcast.complete_if_done(session, alert_id, utcnow())

    *_, last = segments(services, alert_id, rows=40)

    with services.database.session() as session:
        held = broadcast.release_held(session, alert_id)
    assert held == range(2, last.next_batch)
    for batch in held:
        jobs.send_batch(alert_id, batch)
    assert statuses(services, alert_id) == {DeliveryStatus.SENT: 140}
    with services.database.session() as session:  # the last batch's job completed it
        assert session.get_one(Alert, alert_id).status is AlertStatus.COMPLETE


def test_a_rolled_back_segment_leaves_nothing_and_is_written_again(services: Services) -> None:
    cully = make_area(services, "cully")
    people = add_many_subscribers(services, cully, 150)
    alert_id = incident_alert(services, cully)
    approve(services, alert_id, first_rows=50)

    def dies_before_the_commit() -> None:
        with services.database.session() as session:
            broadcast.write_segment(session, alert_id, PLAN, now=utcnow(), rows=50)
            raise RuntimeError("the worker died before the commit")

    with pytest.raises(RuntimeError):
        dies_before_the_commit()

    assert len(written(services, alert_id)) == 50
    list(segments(services, alert_id, rows=50))
    assert sorted(written(services, alert_id)) == people


def test_a_sparse_audience_is_walked_in_spans(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One in ten of the network in the alert's area: segments that find nobody move
    the cursor on, and no batch is empty."""
    monkeypatch.setattr(broadcast, "SEGMENT_SPAN", 25)
    cully, elsewhere = make_area(services, "cully"), make_area(services, "elsewhere")
    wanted = []
    for n in range(30):
        wanted += add_many_subscribers(services, cully, 1, first=1_000_000 + n)
        add_many_subscribers(services, elsewhere, 9, first=2_000_000 + 9 * n)
    alert_id = incident_alert(services, cully)

    approval = approve(services, alert_id, first_rows=5)
    rest = list(segments(services, alert_id, rows=5))

    assert sorted(written(services, alert_id)) == wanted
    batches = list(approval.enqueue_now) + [b for s in rest for b in s.to_send]
    assert sorted(batches) == sorted(set(written(services, alert_id).values()))


def test_an_audience_of_nobody_is_complete_at_approval(services: Services) -> None:
    alert_id = incident_alert(services, make_area(services, "cully"))
    approval = approve(services, alert_id, first_rows=10)
    assert (approval.recipients, approval.ledger_done) == (0, True)
    with services.database.session() as session:
        assert session.get_one(Alert, alert_id).status is AlertStatus.COMPLETE


def test_the_ledger_jobs_write_and_enqueue_the_rest(
    services: Services, redis_client: Redis
) -> None:
    services.settings = replace(services.settings, ledger_segment_rows=60)
    cully = make_area(services, "cully")
    people = add_many_subscribers(services, cully, 200)
    alert_id = incident_alert(services, cully)

    approval = alerts.approve_alert(services, alert_id)

    assert (approval.recipients, approval.ledger_done) == (60, False)
    assert ledger.queued_ledgers(redis_client) == {alert_id}
    for _ in range(3):
        ledger.write_ledger_segment(alert_id)
    assert sorted(written(services, alert_id)) == people
    assert not cursor_left(services, alert_id)
    assert ledger.write_ledger_segment(alert_id) == {"rows": 0, "batches": 0}
    assert {b for a, b in queued_batches(redis_client) if a == alert_id} == set(
        written(services, alert_id).values()
    )


def test_the_reaper_restarts_a_ledger_whose_job_vanished(
    services: Services, redis_client: Redis
) -> None:
    cully = make_area(services, "cully")
    add_many_subscribers(services, cully, 30)
    alert_id = incident_alert(services, cully)
    approve(services, alert_id, first_rows=10)  # and never enqueued: Redis lost it
    assert alerts.reap_deliveries()  # too soon: the approval may still be enqueueing
    assert ledger.queued_ledgers(redis_client) == set()
    with services.database.session() as session:
        session.execute(update(ledger_cursors).values(updated_at=utcnow() - timedelta(minutes=5)))

    alerts.reap_deliveries()
    alerts.reap_deliveries()  # a second round sees the job waiting and adds none

    waiting = queue(QueueName.ALERTS, redis_client).get_job_ids()
    assert [j for j in waiting if j.startswith(ledger.JOB_ID_PREFIX)] == [
        j for j in waiting if j.startswith(f"{ledger.JOB_ID_PREFIX}{alert_id}-")
    ]
    assert len([j for j in waiting if j.startswith(ledger.JOB_ID_PREFIX)]) == 1


def test_a_ledger_job_for_an_alert_erased_meanwhile_does_nothing(services: Services) -> None:
    """An incident's record purged while its alert's ledger was being written: the
    cursor went with the alert, and the job that comes next finds nothing to do."""
    cully = make_area(services, "cully")
    add_many_subscribers(services, cully, 30)
    alert_id = incident_alert(services, cully)
    approve(services, alert_id, first_rows=10)
    with services.database.session() as session:
        session.delete(session.get_one(Alert, alert_id))

    assert ledger.write_ledger_segment(alert_id) == {"rows": 0, "batches": 0}
    assert not cursor_left(services, alert_id)


def test_a_network_whose_ids_start_high_is_written_from_its_first_subscriber(
    services: Services,
) -> None:
    """Ids need not start near 1 (early subscribers erased, a shared sequence): the walk
    starts at the lowest, so the approval still writes its first segment at once."""
    cully = make_area(services, "cully")
    with services.database.session() as session:
        for n in range(30):
            number = f"+1503777{n:04d}"
            session.add(
                Subscriber(
                    id=5_000_001 + n,
                    phone_sealed=services.cipher.encrypt(number, Purpose.SUBSCRIBER_PHONE),
                    phone_index=services.index.digest(number, "phone"),
                )
            )
        session.flush()
        session.execute(
            Subscription.__table__.insert(),
            [
                {"subscriber_id": 5_000_001 + n, "area_id": cully, "status": "confirmed"}
                for n in range(30)
            ],
        )
    alert_id = incident_alert(services, cully)

    approval = approve(services, alert_id, first_rows=100)

    assert (approval.recipients, approval.ledger_done) == (30, True)
