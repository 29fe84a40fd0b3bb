"""A real job in a real Redis, run by a real RQ worker process, sent to a local Twilio.

These run ``rapidresponse worker --burst`` as a subprocess against the same database and
Redis the test uses (SQLite and the embedded Redis by default; PostgreSQL and the CI
machine's Redis in CI).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from redis import Redis
from rq.registry import FailedJobRegistry

from dispatch import status_queue
from dispatch.broadcast import BatchLease, claim_batch, enqueue_batches
from dispatch.queues import QueueName, enqueue, queue
from dispatch.services import Services
from dispatch.worker import SealableWorker
from rapidresponse.models import Delivery, DeliveryStatus, Language, Subscriber, SubscriberStatus
from tests.dispatch.conftest import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
from tests.factories import ALERT_TEXTS, ALICE, BETO, add_alert_for, add_subscriber
from tests.twilio_fake import FakeTwilio

pytestmark = pytest.mark.slow


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as running:
        yield running


@pytest.fixture
def twilio_env(cli_env: dict[str, str], fake: FakeTwilio) -> dict[str, str]:
    return {
        **cli_env,
        "SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM": FROM_NUMBER,
        "TWILIO_API_URL": fake.url,
    }


def run_worker(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "web.cli", "worker", "--burst", "--no-scheduler"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def delivery(services: Services, delivery_id: int) -> Delivery:
    with services.database.session() as session:
        return session.get_one(Delivery, delivery_id)


def everything_in_redis(client: Redis) -> bytes:
    """Every key and every value in our Redis database, as one blob to search."""
    blob = bytearray()
    for key in client.scan_iter(count=1000):
        blob += key
        kind = client.type(key)
        if kind == b"string":
            blob += client.get(key) or b""
        elif kind == b"hash":
            for field, value in client.hgetall(key).items():
                blob += field + value
        elif kind == b"list":
            blob += b"".join(client.lrange(key, 0, -1))
        elif kind == b"zset":
            blob += b"".join(member for member, _ in client.zrange(key, 0, -1, withscores=True))
        elif kind == b"set":
            blob += b"".join(client.smembers(key))
    return bytes(blob)


def test_a_worker_sends_a_delivery_through_twilio(
    services: Services, redis_client: Redis, fake: FakeTwilio, twilio_env: dict[str, str]
) -> None:
    subscriber_id = add_subscriber(services, BETO, Language.ES)
    ledger = add_alert_for(services, subscriber_id, Language.ES)
    enqueue_batches(redis_client, ledger.alert_id, [0], timeout=300)
    alerts = queue(QueueName.ALERTS, redis_client)
    [job_id] = alerts.get_job_ids()
    assert job_id.startswith(f"send-{ledger.alert_id}-0-")

    run_worker(twilio_env)

    [message] = fake.messages
    assert (message.to, message.body, message.from_) == (BETO, ALERT_TEXTS["es"], FROM_NUMBER)
    assert message.status_callback == (
        f"https://rr.example.org/sms/status?delivery={ledger.delivery_id}"
    )
    assert 1790 <= int(message.validity_period or 0) <= 1800  # what is left of 30 minutes
    assert fake.requests[0].account_sid == ACCOUNT_SID
    sent = delivery(services, ledger.delivery_id)
    assert sent.status == DeliveryStatus.SENT and sent.provider_sid == message.sid
    # The worker took it from the alerts queue and it did not fail. (Not read from the
    # finished-job registry: results live 60 s, less than a loaded machine may take.)
    assert alerts.get_job_ids() == []
    assert FailedJobRegistry(queue=alerts).get_job_ids() == []


def test_nothing_personal_reaches_redis_or_the_worker_log(
    services: Services, redis_client: Redis, fake: FakeTwilio, twilio_env: dict[str, str]
) -> None:
    ledger = add_alert_for(services, add_subscriber(services, ALICE), Language.EN)
    enqueue_batches(redis_client, ledger.alert_id, [0], timeout=300)

    done = run_worker(twilio_env)

    assert len(fake.messages) == 1
    digits = ALICE.lstrip("+").encode()
    stored = everything_in_redis(redis_client)
    output = (done.stdout + done.stderr).encode()
    for secret in (digits, digits[-10:], b"Killingsworth"):
        assert secret not in stored
        assert secret not in output


def test_an_opted_out_subscriber_is_never_texted(
    services: Services, redis_client: Redis, fake: FakeTwilio, twilio_env: dict[str, str]
) -> None:
    subscriber_id = add_subscriber(services, ALICE, status=SubscriberStatus.OPTED_OUT)
    ledger = add_alert_for(services, subscriber_id, Language.EN)
    enqueue_batches(redis_client, ledger.alert_id, [0], timeout=300)

    run_worker(twilio_env)

    assert fake.requests == []
    assert delivery(services, ledger.delivery_id).status == DeliveryStatus.OPTED_OUT


def test_21610_marks_the_subscriber_opted_out(
    services: Services, redis_client: Redis, fake: FakeTwilio, twilio_env: dict[str, str]
) -> None:
    subscriber_id = add_subscriber(services, ALICE)
    ledger = add_alert_for(services, subscriber_id, Language.EN)
    enqueue_batches(redis_client, ledger.alert_id, [0], timeout=300)
    fake.fail_next(status=400, code=21610)

    run_worker(twilio_env)

    done = delivery(services, ledger.delivery_id)
    assert (done.status, done.error_code) == (DeliveryStatus.OPTED_OUT, "21610")
    with services.database.session() as session:
        assert session.get_one(Subscriber, subscriber_id).status == SubscriberStatus.OPTED_OUT


def test_a_transient_failure_is_not_swallowed(
    services: Services, redis_client: Redis, fake: FakeTwilio, twilio_env: dict[str, str]
) -> None:
    ledger = add_alert_for(services, add_subscriber(services, ALICE), Language.EN)
    enqueue_batches(redis_client, ledger.alert_id, [0], timeout=300)
    fake.fail_next(status=500, times=4)  # more than one job's tries

    run_worker(twilio_env)

    # The job shows in RQ's failed registry, and the row is free for a retry or the reaper.
    assert len(FailedJobRegistry(queue=queue(QueueName.ALERTS, redis_client))) == 1
    assert delivery(services, ledger.delivery_id).status == DeliveryStatus.PENDING
    assert fake.messages == []


def test_a_batch_is_claimed_once(services: Services) -> None:
    ledger = add_alert_for(services, add_subscriber(services, ALICE), Language.EN)
    assert claim_batch(services, BatchLease(ledger.alert_id, 0, "a" * 32)) == 1
    assert claim_batch(services, BatchLease(ledger.alert_id, 0, "b" * 32)) == 0


@pytest.mark.slow
@pytest.mark.parametrize("level", ["warning", "info"])
def test_a_workers_routine_lines_show_only_when_asked(
    services: Services, cli_env: dict[str, str], level: str
) -> None:
    # The demo runs its worker at LOG_LEVEL=warning, so that the banner (the one-time
    # password) does not scroll away under a line per job; LOG_LEVEL=info shows them.
    enqueue(services.redis, QueueName.ALERTS, status_queue.drain_job)
    done = subprocess.run(
        [sys.executable, "-m", "web.cli", "worker", "--burst", "--no-scheduler"],
        env={**cli_env, "LOG_LEVEL": level},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    routine = [line for line in (done.stdout + done.stderr).splitlines() if "Job OK" in line]
    assert len(routine) == (1 if level == "info" else 0), done.stderr[-2000:]


def test_a_worker_stops_listening_at_once(redis_client: Redis) -> None:
    """RQ stops a worker's command listener at every exit. With redis-py 8 the listener
    could wait out a minute-long sleep first, about one exit in two: a worker then
    outlived compose's 10 s grace and was killed. Ten stops in a row, each well under
    that minute."""
    worker = SealableWorker([queue(QueueName.ALERTS, redis_client)], connection=redis_client)
    started = time.monotonic()
    for _ in range(10):
        worker.subscribe()
        worker.unsubscribe()
        assert worker.pubsub_thread is not None and not worker.pubsub_thread.is_alive()
    assert time.monotonic() - started < 30
