"""Broadcasts that survive what goes wrong in production, with real worker processes.

§5's invariant, checked at the provider: every recipient ends with exactly one
accepted send, except sends whose outcome was unknowable (a worker killed with
requests in flight), which are counted in ``unknown_outcomes`` and bounded by the
in-flight window.

The audience is mixed: a third on WhatsApp only, a third on WhatsApp and SMS, a third on
SMS only, with approved WhatsApp templates. "Once" holds across channels: a person
whose WhatsApp refuses the alert and gets it by SMS has still one accepted send.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select, update

from dispatch import alerts
from dispatch.processes import children_of
from dispatch.redis_conn import EmbeddedRedis
from dispatch.services import Services
from rapidresponse import broadcast, whatsapp
from rapidresponse.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Channel,
    Delivery,
    DeliveryStatus,
    Language,
    Subscriber,
    SubscriberStatus,
    TemplateStatus,
)
from tests.dispatch.conftest import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
from tests.dispatch.test_alerts import confirmed_incident
from tests.dispatch.test_broadcast_core import make_area
from tests.factories import add_many_subscribers
from tests.twilio_fake import Answer, FakeMessage, FakeTwilio, RecordedRequest

pytestmark = pytest.mark.slow

WINDOW = 20  # SEND_CONCURRENCY in these tests
# What a kill can leave unknowable: the sends in flight plus the next chunk already marked.
IN_FLIGHT_BOUND = 2 * WINDOW


class Workers:
    """``rapidresponse worker`` processes, as a supervisor would run (and restart) them."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.running: list[subprocess.Popen[bytes]] = []
        self.started = 0

    def start(self, count: int = 1) -> None:
        for _ in range(count):
            self.started += 1
            with (self.log_dir / f"worker-{self.started}.log").open("wb") as log:
                self.running.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "web.cli", "worker", "--no-scheduler"],
                        env=self.env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )

    def kill_one(self) -> None:
        """``kill -9`` a worker and its work horse, wherever they are."""
        victim = self.running.pop(random.randrange(len(self.running)))
        for pid in [*children_of(victim.pid), victim.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        victim.wait(timeout=10)

    def stop(self) -> None:
        for process in self.running:
            process.terminate()
        for process in self.running:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.running.clear()

    def restart_dead(self) -> None:
        """What a supervisor (compose's ``restart: unless-stopped``) does."""
        dead = [process for process in self.running if process.poll() is not None]
        for process in dead:
            self.running.remove(process)
        self.start(len(dead))

    def output(self) -> bytes:
        return b"".join(path.read_bytes() for path in sorted(self.log_dir.glob("worker-*.log")))


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as running:
        yield running


def worker_env(cli_env: dict[str, str], fake: FakeTwilio, **extra: str) -> dict[str, str]:
    return {
        **cli_env,
        "SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM": FROM_NUMBER,
        "TWILIO_API_URL": fake.url,
        "WHATSAPP_FROM": WHATSAPP_FROM,
        "WHATSAPP_SEND_RATE": "1000",
        "WHATSAPP_DAILY_LIMIT": "unlimited",
        "SEND_CONCURRENCY": str(WINDOW),
        "DELIVERY_LEASE_SECONDS": "5",
        "REAPER_SECONDS": "2",
        "LOG_LEVEL": "warning",
        **extra,
    }


def start_broadcast(services: Services, recipients: int) -> int:
    area = make_area(services, "cully")
    mix_channels(services, add_many_subscribers(services, area, recipients))
    services.settings = replace(services.settings, whatsapp_daily_limit=None)
    alert_id = alerts.alert_for_incident(confirmed_incident(services, area))
    assert alert_id is not None
    if not alerts.approve_alert(services, alert_id).ledger_done:
        return alert_id  # the rest of the ledger is the workers' to write
    with services.database.session() as session:
        on_whatsapp = session.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(Delivery.alert_id == alert_id, Delivery.channel == Channel.WHATSAPP)
        )
    assert on_whatsapp == len(range(0, recipients, 3)) + len(range(1, recipients, 3))
    return alert_id


WHATSAPP_FROM = "+15035550199"


def mix_channels(services: Services, subscriber_ids: list[int]) -> None:
    """A third on WhatsApp only, a third on both channels, a third SMS only; templates
    approved for alerts in both languages."""
    with services.database.session() as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.id.in_(subscriber_ids[0::3]))
            .values(whatsapp_status=SubscriberStatus.ACTIVE, status=SubscriberStatus.NO_CONSENT)
        )
        session.execute(
            update(Subscriber)
            .where(Subscriber.id.in_(subscriber_ids[1::3]))
            .values(whatsapp_status=SubscriberStatus.ACTIVE)
        )
        for n, language in enumerate(Language):
            whatsapp.save_template(
                session,
                kind=AlertKind.ALERT,
                language=language,
                content_sid=f"HX{n:032d}",
                variables=["text"],
                status=TemplateStatus.APPROVED,
                staff_id=None,
            )


def wait_until_complete(
    services: Services, alert_id: int, timeout: float, workers: Workers | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if workers is not None:
            workers.restart_dead()
        with services.database.session() as session:
            if session.get_one(Alert, alert_id).status == AlertStatus.COMPLETE:
                return
        time.sleep(0.25)
    with services.database.session() as session:
        left = session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.alert_id == alert_id)
            .group_by(Delivery.status)
        ).all()
    pytest.fail(f"alert not complete after {timeout}s: {left}")


def wait_for_sends(fake: FakeTwilio, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(fake.messages) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"only {len(fake.messages)} sends after {timeout}s")
        time.sleep(0.05)


def accepted_per_delivery(fake: FakeTwilio) -> Counter[int]:
    """How many sends the provider accepted for each Delivery (from its StatusCallback)."""
    return Counter(callback_delivery(message) for message in fake.messages)


def callback_delivery(message: FakeMessage) -> int:
    """The Delivery a message's StatusCallback URL names."""
    assert message.status_callback is not None
    return int(parse_qs(urlsplit(message.status_callback).query)["delivery"][0])


def assert_each_went_by_its_channel(services: Services, fake: FakeTwilio, alert_id: int) -> None:
    """The last accepted send of each delivery went by the channel its row says."""
    with services.database.session() as session:
        channels = dict(
            session.execute(
                select(Delivery.id, Delivery.channel).where(Delivery.alert_id == alert_id)
            ).all()
        )
    last = {callback_delivery(message): message.to for message in fake.messages}
    for delivery_id, to in last.items():
        assert to.startswith("whatsapp:") == (channels[delivery_id] is Channel.WHATSAPP)
    assert {c for c in channels.values()} == {Channel.SMS, Channel.WHATSAPP}


def ledger(services: Services, alert_id: int) -> tuple[dict[int, DeliveryStatus], int]:
    with services.database.session() as session:
        rows = session.execute(
            select(Delivery.id, Delivery.status).where(Delivery.alert_id == alert_id)
        ).all()
        unknown = session.scalar(
            select(func.sum(Delivery.unknown_outcomes)).where(Delivery.alert_id == alert_id)
        )
    return {row.id: row.status for row in rows}, int(unknown or 0)


def assert_each_recipient_once(
    services: Services, fake: FakeTwilio, alert_id: int, recipients: int
) -> tuple[int, int]:
    """The invariant. Returns (duplicates, unknown outcomes counted)."""
    statuses, unknown = ledger(services, alert_id)
    accepted = accepted_per_delivery(fake)
    assert len(statuses) == recipients
    assert set(statuses.values()) == {DeliveryStatus.SENT}
    assert set(accepted) == set(statuses), "a recipient got nothing"
    duplicates = sum(count - 1 for count in accepted.values())
    assert duplicates <= unknown, "a duplicate that was not counted as unknowable"
    return duplicates, unknown


def test_429s_and_500s_delay_but_never_lose_or_double_a_send(
    services: Services, cli_env: dict[str, str], fake: FakeTwilio, tmp_path: Path
) -> None:
    chance = random.Random(5)

    def flaky(request: RecordedRequest) -> Answer | None:
        roll = chance.random()
        if roll < 1 / 3:
            return Answer.error(429, retry_after=0.2)
        if roll < 1 / 3 + 1 / 10:
            return Answer.error(500)
        on_whatsapp = (request.value("To") or "").startswith("whatsapp:")
        if on_whatsapp and roll < 1 / 3 + 1 / 10 + 1 / 200:
            return Answer.error(429, 63018)  # WhatsApp's own rate limit: the lane waits
        return None

    fake.policy = flaky
    alert_id = start_broadcast(services, 400)
    workers = Workers(worker_env(cli_env, fake), tmp_path)
    workers.start(2)
    try:
        wait_until_complete(services, alert_id, timeout=120)
    finally:
        workers.stop()

    duplicates, unknown = assert_each_recipient_once(services, fake, alert_id, 400)
    assert (duplicates, unknown) == (0, 0)  # every refusal was a clear answer
    assert_each_went_by_its_channel(services, fake, alert_id)
    refused = [r for r in fake.requests if r.path.endswith("Messages.json")]
    assert len(refused) > 500  # the provider really did refuse a good share


def test_workers_killed_mid_broadcast_lose_nobody(
    services: Services, cli_env: dict[str, str], fake: FakeTwilio, tmp_path: Path
) -> None:
    recipients = 5000
    # Slow enough that the kills land mid-broadcast: 500 messages/s in all.
    alert_id = start_broadcast(services, recipients)
    workers = Workers(worker_env(cli_env, fake, SEND_RATE="500"), tmp_path)
    workers.start(2)
    kills = 0
    try:
        chance = random.Random(9)
        wait_for_sends(fake, 200, timeout=60)
        for _ in range(5):
            time.sleep(chance.uniform(0.5, 1.5))
            workers.kill_one()
            kills += 1
            workers.start(1)
        assert len(fake.messages) < recipients, "the kills came after the broadcast"
        wait_until_complete(services, alert_id, timeout=180, workers=workers)
    finally:
        workers.stop()

    duplicates, unknown = assert_each_recipient_once(services, fake, alert_id, recipients)
    assert unknown <= kills * IN_FLIGHT_BOUND
    assert_each_went_by_its_channel(services, fake, alert_id)
    print(f"{kills} kills: {duplicates} duplicates, {unknown} unknowable outcomes counted")


def ledger_unwritten(services: Services, alert_id: int) -> bool:
    with services.database.session() as session:
        return session.scalar(broadcast.ledger_unfinished(alert_id).select()) is True


def test_workers_killed_while_the_ledger_is_streamed_lose_nobody(
    services: Services, cli_env: dict[str, str], fake: FakeTwilio, tmp_path: Path
) -> None:
    """kill -9 during the ledger phase: approval wrote the first segment, ledger jobs
    write the rest (small segments here, so the kills land among them) while batch jobs
    send. Every recipient still gets exactly one accepted send."""
    recipients, segment_rows = 6000, 150
    services.settings = replace(services.settings, ledger_segment_rows=segment_rows)
    alert_id = start_broadcast(services, recipients)
    assert ledger_unwritten(services, alert_id)
    env = worker_env(cli_env, fake, SEND_RATE="500", LEDGER_SEGMENT_ROWS=str(segment_rows))
    workers = Workers(env, tmp_path)
    workers.start(2)
    kills_while_streaming = 0
    try:
        chance = random.Random(11)
        wait_for_sends(fake, 100, timeout=60)
        for _ in range(5):
            time.sleep(chance.uniform(0.3, 1.0))
            kills_while_streaming += ledger_unwritten(services, alert_id)
            workers.kill_one()
            workers.start(1)
        assert kills_while_streaming >= 3, "the kills came after the ledger was written"
        wait_until_complete(services, alert_id, timeout=180, workers=workers)
    finally:
        workers.stop()

    duplicates, unknown = assert_each_recipient_once(services, fake, alert_id, recipients)
    assert unknown <= 5 * IN_FLIGHT_BOUND
    assert not ledger_unwritten(services, alert_id)
    print(f"{kills_while_streaming} kills while streaming: {duplicates} duplicates")


def test_redis_restarted_empty_mid_broadcast_is_completed_by_the_reaper(
    services: Services, cli_env: dict[str, str], fake: FakeTwilio, tmp_path: Path
) -> None:
    folder = tmp_path / "redis"
    redis = EmbeddedRedis(folder)
    url = redis.start()
    own = Services.build(replace(services.settings, redis_url=url))
    try:
        recipients = 1500
        alert_id = start_broadcast(own, recipients)
        workers = Workers(worker_env(cli_env, fake, SEND_RATE="300", REDIS_URL=url), tmp_path)
        workers.start(2)
        try:
            wait_for_sends(fake, 100, timeout=60)
            redis.stop()  # everything queued is gone ...
            for leftover in folder.iterdir():
                if leftover.name != "redis.log":
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            time.sleep(1.0)
            redis.start()  # ... and Redis comes back empty
            assert len(fake.messages) < recipients, "Redis went away too late"
            # A supervisor restarts any worker that gave up while Redis was away.
            wait_until_complete(own, alert_id, timeout=120, workers=workers)
        finally:
            workers.stop()
        assert_each_recipient_once(own, fake, alert_id, recipients)
    finally:
        own.close()
        redis.stop()
