"""Status callbacks: the web only queues them (fast), a worker applies them in batches.

Applied in the web process, each callback cost ~7 ms of its CPU and a broadcast above
70-90 messages/s saturated it on callbacks alone, delaying texts to the hotline.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
from flask import Flask
from redis import Redis
from rq import Queue
from sqlalchemy import update

from dispatch import broadcast as dispatch_broadcast
from dispatch import status_queue
from dispatch.queues import QueueName, queue
from dispatch.redis_conn import connect
from dispatch.services import Services
from dispatch.status_queue import StatusCallback
from rapidresponse.broadcast import CallbackStatus
from rapidresponse.models import Delivery, DeliveryStatus, Language
from tests.factories import ALICE, Ledger, add_alert_for, add_subscriber
from tests.web.sms_helpers import PUBLIC_URL, new_sid, sign


@pytest.fixture
def ledger(twilio_services: Services) -> Ledger:
    return add_alert_for(twilio_services, add_subscriber(twilio_services, ALICE), Language.EN)


@pytest.fixture
def sent(twilio_services: Services, ledger: Ledger) -> str:
    """The delivery's message sid: it was sent and waits for Twilio's word."""
    sid = new_sid()
    with twilio_services.database.session() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == ledger.delivery_id)
            .values(status=DeliveryStatus.SENT, provider_sid=sid)
        )
    return sid


def post(
    app: Flask,
    delivery_id: int | str,
    sid: str,
    status: str,
    error: str | None = None,
    **more: str,
) -> int:
    params = {"MessageSid": sid, "MessageStatus": status, **more}
    if error is not None:
        params["ErrorCode"] = error
    url = f"{PUBLIC_URL}/sms/status?delivery={delivery_id}"
    response = app.test_client().post(
        f"/sms/status?delivery={delivery_id}",
        data=params,
        headers={"X-Twilio-Signature": sign(params, url)},
    )
    return response.status_code


def status_of(services: Services, delivery_id: int) -> DeliveryStatus:
    with services.database.session() as session:
        return session.get_one(Delivery, delivery_id).status


def alerts_queue(redis: Redis) -> Queue:
    return queue(QueueName.ALERTS, redis)


def test_the_web_queues_a_callback_and_a_worker_applies_it(
    sms_app: Flask, twilio_services: Services, ledger: Ledger, sent: str
) -> None:
    redis = twilio_services.redis
    assert post(sms_app, ledger.delivery_id, sent, "delivered") == 200
    assert status_of(twilio_services, ledger.delivery_id) is DeliveryStatus.SENT  # not yet
    assert redis.llen(status_queue.QUEUE_KEY) == 1
    assert post(sms_app, ledger.delivery_id, sent, "delivered") == 200  # Twilio's retry
    assert alerts_queue(redis).count == 1  # one drain woken, not one per callback
    assert status_queue.drain(twilio_services) == 2
    assert status_of(twilio_services, ledger.delivery_id) is DeliveryStatus.DELIVERED
    assert redis.llen(status_queue.QUEUE_KEY) == 0


@pytest.mark.slow
def test_a_real_worker_drains_what_the_web_queued(
    sms_app: Flask,
    twilio_services: Services,
    ledger: Ledger,
    sent: str,
    cli_env: dict[str, str],
) -> None:
    assert post(sms_app, ledger.delivery_id, sent, "undelivered", error="30003") == 200
    subprocess.run(
        [sys.executable, "-m", "web.cli", "worker", "--burst", "--no-scheduler"],
        env={**cli_env, "REDIS_URL": twilio_services.redis_url},
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert status_of(twilio_services, ledger.delivery_id) is DeliveryStatus.FAILED
    assert twilio_services.redis.llen(status_queue.QUEUE_KEY) == 0


def test_with_redis_away_the_web_applies_the_callback_itself(
    sms_app: Flask, twilio_services: Services, ledger: Ledger, sent: str
) -> None:
    working = twilio_services.redis
    twilio_services.redis = connect("redis://127.0.0.1:1/0")  # nothing listens on port 1
    try:
        assert post(sms_app, ledger.delivery_id, sent, "delivered") == 200
    finally:
        twilio_services.redis = working
    assert status_of(twilio_services, ledger.delivery_id) is DeliveryStatus.DELIVERED


def test_a_batch_applied_twice_changes_nothing_the_second_time(
    twilio_services: Services, ledger: Ledger, sent: str
) -> None:
    """A worker killed after its commit and before trimming the list: the next drain
    applies the same callbacks again, which changes nothing."""
    callback = StatusCallback(str(ledger.delivery_id), sent, CallbackStatus.DELIVERED, None)
    dispatch_broadcast.apply_status_callbacks(twilio_services, [callback])
    with twilio_services.database.session() as session:
        first = session.get_one(Delivery, ledger.delivery_id).updated_at
    status_queue.record(twilio_services.redis, callback)
    status_queue.drain(twilio_services)
    with twilio_services.database.session() as session:
        again = session.get_one(Delivery, ledger.delivery_id)
    assert (again.status, again.updated_at) == (DeliveryStatus.DELIVERED, first)


def test_a_backlog_is_applied_in_batches_and_junk_is_dropped(
    twilio_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    real = dispatch_broadcast.apply_status_callbacks

    def counted(services: Services, callbacks: list[StatusCallback]) -> None:
        sizes.append(len(callbacks))
        real(services, callbacks)

    monkeypatch.setattr(dispatch_broadcast, "apply_status_callbacks", counted)
    redis = twilio_services.redis
    redis.rpush(status_queue.QUEUE_KEY, b"not json", b'["x"]')
    for _ in range(1_200):  # deliveries we never made: ignored, as before
        callback = StatusCallback(uuid.uuid4().hex, new_sid(), CallbackStatus.SENT, None)
        status_queue.record(redis, callback)
    assert status_queue.drain(twilio_services) == 1_200
    assert sizes == [498, 500, 202]  # 500 entries a transaction, the two junk ones dropped
    assert redis.llen(status_queue.QUEUE_KEY) == 0


def test_the_queue_holds_ids_and_a_status_only(
    sms_app: Flask, twilio_services: Services, ledger: Ledger, sent: str
) -> None:
    assert post(sms_app, ledger.delivery_id, sent, "failed", error="21610", To=ALICE) == 200
    assert post(sms_app, ledger.delivery_id, sent, "sent", To=f"whatsapp:{ALICE}") == 200
    assert post(sms_app, ledger.delivery_id, sent, "sent") == 200
    raws = [raw.decode() for raw in twilio_services.redis.lrange(status_queue.QUEUE_KEY, 0, -1)]
    assert raws == [
        f'["{ledger.delivery_id}", "{sent}", "failed", 21610, "sms"]',
        f'["{ledger.delivery_id}", "{sent}", "sent", null, "whatsapp"]',  # the channel only
        f'["{ledger.delivery_id}", "{sent}", "sent", null, null]',
    ]
    assert not any(ALICE[-7:] in raw for raw in raws)


def test_with_the_database_away_the_callbacks_wait_for_the_next_drain(
    twilio_services: Services, ledger: Ledger, sent: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rapidresponse.db import Database

    callback = StatusCallback(str(ledger.delivery_id), sent, CallbackStatus.DELIVERED, None)
    status_queue.record(twilio_services.redis, callback)
    working = twilio_services.database
    twilio_services.database = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setattr("dispatch.services.current", lambda: twilio_services)
    try:
        assert status_queue.drain_job() == 0  # said, not raised: no failed job piling up
    finally:
        twilio_services.database.dispose()
        twilio_services.database = working
    assert twilio_services.redis.llen(status_queue.QUEUE_KEY) == 1  # kept
    assert status_queue.drain_job() == 1
    assert status_of(twilio_services, ledger.delivery_id) is DeliveryStatus.DELIVERED
