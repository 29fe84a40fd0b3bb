"""The broadcast ledger and the batch job, run in-process against the real database."""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta

import pytest
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer
from sqlalchemy import func, select, text

from dispatch import broadcast as jobs
from dispatch.pacer import Pacer
from dispatch.queues import QueueName, queue
from dispatch.services import Services
from rapidresponse import broadcast
from rapidresponse.db import Database
from rapidresponse.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Area,
    Delivery,
    DeliveryStatus,
    Language,
    OutboxMessage,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from tests.factories import add_subscriber

TEXTS = {"en": "ALERT test. Reply RIGHTS.", "es": "ALERTA prueba. Responda DERECHOS."}


def make_area(services: Services, slug: str) -> int:
    with services.database.session() as session:
        area = Area(slug=slug, name=slug.title())
        session.add(area)
        session.flush()
        return area.id


def subscribe(
    services: Services,
    phone: str,
    *area_ids: int,
    language: Language = Language.EN,
    confirmed: bool = True,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
) -> int:
    subscriber_id = add_subscriber(services, phone, language, status)
    with services.database.session() as session:
        for area_id in area_ids:
            session.add(
                Subscription(
                    subscriber_id=subscriber_id,
                    area_id=area_id,
                    status=SubscriptionStatus.CONFIRMED
                    if confirmed
                    else SubscriptionStatus.PENDING,
                )
            )
    return subscriber_id


def approve(services: Services, *area_ids: int, batch: int = 500) -> broadcast.Approval:
    with services.database.session() as session:
        alert = broadcast.draft(session, kind=AlertKind.ALERT, texts=TEXTS, area_ids=area_ids)
        return broadcast.approve(
            session, alert.id, now=utcnow(), validity=timedelta(minutes=30), batch=batch
        )


def statuses(services: Services, alert_id: int) -> dict[DeliveryStatus, int]:
    with services.database.session() as session:
        rows = session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.alert_id == alert_id)
            .group_by(Delivery.status)
        ).all()
    return {status: count for status, count in rows}


def test_the_audience_is_each_active_confirmed_subscriber_once(services: Services) -> None:
    cully, foster = make_area(services, "cully"), make_area(services, "foster")
    both = subscribe(services, "+15035550101", cully, foster)
    subscribe(services, "+15035550102", cully, language=Language.ES)
    subscribe(services, "+15035550103", cully, confirmed=False)
    subscribe(services, "+15035550104", cully, status=SubscriberStatus.OPTED_OUT)
    subscribe(services, "+15035550105", make_area(services, "elsewhere"))

    approval = approve(services, cully, foster)

    assert approval.recipients == 2 and approval.batches == 1
    with services.database.session() as session:
        rows = session.execute(
            select(
                Delivery.subscriber_id,
                Delivery.language,
                Delivery.status,
                Delivery.id,
                Delivery.legacy_id,
            ).where(Delivery.alert_id == approval.alert_id)
        ).all()
    assert sorted(r.language for r in rows) == [Language.EN, Language.ES]
    assert both in {r.subscriber_id for r in rows}
    assert all(r.status == DeliveryStatus.PENDING and r.legacy_id is None for r in rows)
    assert len({r.id for r in rows}) == len(rows)


def test_approving_twice_is_refused(services: Services) -> None:
    approval = approve(services, make_area(services, "cully"))
    with services.database.session() as session, pytest.raises(broadcast.AlertNotApprovable):
        broadcast.approve(
            session, approval.alert_id, now=utcnow(), validity=timedelta(minutes=1), batch=10
        )


def test_rows_are_numbered_into_batches(services: Services) -> None:
    cully = make_area(services, "cully")
    for n in range(25):
        subscribe(services, f"+1503555{1000 + n}", cully)
    approval = approve(services, cully, batch=10)
    assert (approval.recipients, approval.batches) == (25, 3)
    with services.database.session() as session:
        sizes = session.execute(
            select(Delivery.batch, func.count())
            .where(Delivery.alert_id == approval.alert_id)
            .group_by(Delivery.batch)
            .order_by(Delivery.batch)
        ).all()
    assert [tuple(row) for row in sizes] == [(0, 10), (1, 10), (2, 5)]


def test_a_batch_job_sends_every_row_once(services: Services) -> None:
    cully = make_area(services, "cully")
    for n in range(12):
        subscribe(services, f"+1503555{2000 + n}", cully, language=Language(("en", "es")[n % 2]))
    approval = approve(services, cully, batch=5)

    results = [jobs.send_batch(approval.alert_id, batch) for batch in range(approval.batches)]

    assert sum(r["sent"] for r in results) == 12
    assert statuses(services, approval.alert_id) == {DeliveryStatus.SENT: 12}
    assert jobs.send_batch(approval.alert_id, 0)["sent"] == 0  # never twice
    with services.database.session() as session:
        assert session.scalar(select(func.count()).select_from(OutboxMessage)) == 12
        assert broadcast.progress(session, approval.alert_id).sent == 12


@contextmanager
def row_writes(database: Database) -> Iterator[Counter[str]]:
    """How many times each delivery row is updated meanwhile, by any connection (a
    trigger of the test's own, dropped after)."""
    counted: Counter[str] = Counter()
    postgres = database.dialect == "postgresql"
    with database.session() as session:
        session.execute(text("CREATE TABLE delivery_writes (id VARCHAR(32))"))
        if postgres:
            session.execute(
                text(
                    "CREATE FUNCTION count_delivery_write() RETURNS trigger LANGUAGE plpgsql "
                    "AS $$ BEGIN INSERT INTO delivery_writes VALUES (NEW.id); RETURN NULL; END $$"
                )
            )
            session.execute(
                text(
                    "CREATE TRIGGER count_delivery_writes AFTER UPDATE ON deliveries "
                    "FOR EACH ROW EXECUTE FUNCTION count_delivery_write()"
                )
            )
        else:
            session.execute(
                text(
                    "CREATE TRIGGER count_delivery_writes AFTER UPDATE ON deliveries "
                    "BEGIN INSERT INTO delivery_writes VALUES (NEW.id); END"
                )
            )
    try:
        yield counted
        with database.session() as session:
            counted.update(session.scalars(text("SELECT id FROM delivery_writes")))
    finally:
        with database.session() as session:
            on = " ON deliveries" if postgres else ""
            session.execute(text(f"DROP TRIGGER count_delivery_writes{on}"))
            if postgres:
                session.execute(text("DROP FUNCTION count_delivery_write()"))
            session.execute(text("DROP TABLE delivery_writes"))


def test_a_delivery_is_written_twice_after_the_ledger(services: Services) -> None:
    """Claimed with its chunk as it leaves, then its outcome: the batch's lease is one row
    of its own, so neither the claim nor a renewal rewrites the batch's deliveries
    (issue 19: three row versions in a delivery's life, its insert included)."""
    services.settings = replace(services.settings, send_concurrency=4)  # several chunks
    cully = make_area(services, "cully")
    for n in range(20):
        subscribe(services, f"+1503555{4000 + n}", cully)
    approval = approve(services, cully, batch=20)

    with row_writes(services.database) as writes:
        assert jobs.send_batch(approval.alert_id, 0)["sent"] == 20

    assert statuses(services, approval.alert_id) == {DeliveryStatus.SENT: 20}
    assert len(writes) == 20 and set(writes.values()) == {2}


def test_a_subscriber_who_stops_after_approval_is_not_texted(services: Services) -> None:
    cully = make_area(services, "cully")
    leaving = subscribe(services, "+15035553001", cully)
    subscribe(services, "+15035553002", cully)
    approval = approve(services, cully)
    with services.database.session() as session:
        session.get_one(Subscriber, leaving).status = SubscriberStatus.OPTED_OUT

    jobs.send_batch(approval.alert_id, 0)

    assert statuses(services, approval.alert_id) == {
        DeliveryStatus.SENT: 1,
        DeliveryStatus.OPTED_OUT: 1,
    }


def test_an_expired_alert_is_dropped_not_sent_late(services: Services) -> None:
    cully = make_area(services, "cully")
    subscribe(services, "+15035554001", cully)
    with services.database.session() as session:
        alert = broadcast.draft(session, kind=AlertKind.ALERT, texts=TEXTS, area_ids=[cully])
        approval = broadcast.approve(
            session,
            alert.id,
            now=utcnow() - timedelta(hours=1),
            validity=timedelta(minutes=30),
            batch=10,
        )
    jobs.send_batch(approval.alert_id, 0)
    assert statuses(services, approval.alert_id) == {DeliveryStatus.EXPIRED: 1}


def test_an_alert_with_nobody_to_tell_is_complete_at_once(services: Services) -> None:
    approval = approve(services, make_area(services, "empty"))
    with services.database.session() as session:
        assert approval.recipients == 0
        assert session.get_one(Alert, approval.alert_id).status == AlertStatus.COMPLETE


def scheduled(services: Services) -> list[tuple[str, list[object]]]:
    registry = ScheduledJobRegistry(queue=queue(QueueName.REPLIES, services.redis))
    found = []
    for job_id in registry.get_job_ids():
        job = Job.fetch(job_id, services.redis, serializer=JSONSerializer)
        found.append((job.func_name, list(job.args)))
    return found


def test_a_hint_inside_the_window_books_one_trailing_publication(services: Services) -> None:
    """The last callbacks of an alert must reach the board even when they come together."""
    alert_id = 7
    jobs.progress_hint(services, alert_id)  # published at once
    assert scheduled(services) == []
    for _ in range(5):  # within the same second: throttled, but not forgotten
        jobs.progress_hint(services, alert_id)
    assert scheduled(services) == [("dispatch.broadcast.publish_progress_job", [alert_id])]


def test_a_paced_send_shows_progress_as_results_come_in(services: Services) -> None:
    """At a slow rate a window of 50 takes minutes: progress must not wait for it."""
    cully = make_area(services, "cully")
    for n in range(16):
        subscribe(services, f"+1503555{5000 + n}", cully)
    approval = approve(services, cully)
    services.settings = replace(services.settings, send_rate=4.0)
    services.pacer = Pacer(services.redis, rate=4.0, sender_id=secrets.token_hex(6))
    seen: list[int] = []

    sending = threading.Thread(target=jobs.send_batch, args=(approval.alert_id, 0))
    sending.start()
    while sending.is_alive():
        with services.database.session() as session:
            seen.append(broadcast.progress(session, approval.alert_id).sent)
        time.sleep(0.1)
    sending.join()

    assert statuses(services, approval.alert_id) == {DeliveryStatus.SENT: 16}
    # About 4 s of sending, written every second: the count moves at least twice between.
    between = sorted({n for n in seen if 0 < n < 16})
    assert len(between) >= 2, f"progress jumped: {sorted(set(seen))}"
