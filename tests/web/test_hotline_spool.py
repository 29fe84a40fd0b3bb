"""When the database cannot take a text, the text is answered and kept, never lost.

The webhook waits for a lock at most twice LOCK_WAIT_MS (inside Twilio's 15 s), then
keeps the text in the spool (sealed, on this host's disk) and answers that it is kept.
Once the database is back, the spool is stored, oldest first, and each sender gets the
answer their text really calls for; the spooled file and its key are then destroyed.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import text

from dispatch.services import Services
from dispatch.spool import StorageBreaker
from rapidresponse.db import Database
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import ALICE, new_sid, send, twiml_message
from tests.web.test_hotline_concurrency import decrypted_reports, number
from web import sms

KEPT_EN = "Received. We cannot look at it this minute"
KEPT_ES = "Recibido. No lo podemos ver en este momento"
HOLD_SECONDS = 20.0


def text_at(app: Flask, phone: str, body: str) -> tuple[int, str | None, float]:
    started = time.monotonic()
    response = send(app.test_client(), {"From": phone, "Body": body, "MessageSid": new_sid()})
    took = time.monotonic() - started
    answer = twiml_message(response.get_data(as_text=True)) if response.status_code == 200 else None
    return response.status_code, answer, took


def hold_the_database(database: Database, seconds: float, holding: threading.Event) -> None:
    """What a stuck migration or a long VACUUM FULL does: take the lock, keep it."""
    with database.session() as session:
        if database.dialect == "postgresql":
            session.execute(text("LOCK TABLE reports, subscribers IN ACCESS EXCLUSIVE MODE"))
        else:
            session.execute(text("UPDATE areas SET name = name WHERE id = -1"))  # the write lock
        holding.set()
        time.sleep(seconds)


@pytest.mark.slow
@pytest.mark.sends_through_api
def test_texts_during_a_20_second_lock_are_answered_kept_and_stored(
    sms_app: Flask, twilio_services: Services, fake: FakeTwilio
) -> None:
    holding = threading.Event()
    holder = threading.Thread(
        target=hold_the_database, args=(twilio_services.database, HOLD_SECONDS, holding)
    )
    holder.start()
    assert holding.wait(10)
    bodies = [f"ICE agents at NE 42nd in Cully, token-{n}" for n in range(4)]
    bodies.append("migra en Lents ahora mismo, token-4")
    with ThreadPoolExecutor(len(bodies)) as pool:
        results = list(pool.map(lambda n: text_at(sms_app, number(n), bodies[n]), range(5)))
    for status, answer, took in results[:4]:
        assert status == 200 and answer is not None and answer.startswith(KEPT_EN)
        assert took < 12, "Twilio gives up after 15 s"
    assert results[4][1] is not None and results[4][1].startswith(KEPT_ES)
    assert len(twilio_services.spool.waiting()) == 5
    holder.join()

    assert sms.store_spooled(twilio_services) == 5
    stored = decrypted_reports(twilio_services)
    assert sorted(stored) == sorted(bodies)
    late = [m for m in fake.messages if m.body.startswith(("Report ", "Reporte "))]
    assert sorted(m.to for m in late) == sorted(number(n) for n in range(5))
    assert twilio_services.spool.waiting() == []
    assert not list(twilio_services.settings.shred_keys_path.glob("spool-*"))


@pytest.mark.slow
@pytest.mark.sends_through_api
def test_after_one_text_met_the_lock_the_others_are_kept_at_once_while_one_tries(
    sms_app: Flask, twilio_services: Services, fake: FakeTwilio
) -> None:
    """A web process has few threads: texts that each waited the whole budget would
    queue behind each other past Twilio's 15 s. Once one has failed, one text at a time
    tries the database and the others are kept in the spool at once."""
    holding = threading.Event()
    holder = threading.Thread(
        target=hold_the_database, args=(twilio_services.database, HOLD_SECONDS, holding)
    )
    holder.start()
    assert holding.wait(10)
    status, answer, took = text_at(sms_app, number(0), "ICE at NE 42nd in Cully, token-0")
    assert status == 200 and answer is not None and answer.startswith(KEPT_EN)
    assert took >= sms.LOCK_WAIT_MS / 1000  # this one waited for the lock

    bodies = [f"ICE agents at SE 82nd in Lents, token-{n}" for n in range(1, 21)]
    with ThreadPoolExecutor(len(bodies)) as pool:
        results = list(pool.map(lambda n: text_at(sms_app, number(n), bodies[n - 1]), range(1, 21)))
    for status, answer, _took in results:
        assert status == 200 and answer is not None and answer.startswith(KEPT_EN)
    waited = [took for _, _, took in results if took >= sms.LOCK_WAIT_MS / 1000]
    assert len(waited) <= 1, "only the probe waits for the lock"
    assert len(twilio_services.spool.waiting()) == 21
    holder.join()

    # The lock is gone: the next text tries, is stored and answered as usual, and the
    # texts after it go to the database again.
    for n in (30, 31):
        status, answer, _took = text_at(sms_app, number(n), f"ICE at Foster Rd, token-{n}")
        assert status == 200 and answer is not None and answer.startswith("Report ")
    assert not twilio_services.storage.failing
    assert len(twilio_services.spool.waiting()) == 21
    assert sms.store_spooled(twilio_services) == 21
    expected = ["ICE at NE 42nd in Cully, token-0", *bodies]
    expected += [f"ICE at Foster Rd, token-{n}" for n in (30, 31)]
    assert sorted(decrypted_reports(twilio_services)) == sorted(expected)


def test_a_text_that_fails_for_a_reason_of_its_own_does_not_hold_the_probe() -> None:
    breaker = StorageBreaker()
    breaker.tried(stored=False)  # the database could not take a text
    assert breaker.may_try()  # this text is the probe ...
    assert not breaker.may_try()  # ... and meanwhile the others are kept
    breaker.tried(stored=None)  # the probe hit a bug of its own: nothing learned
    assert breaker.failing and breaker.may_try()  # the next text probes
    breaker.tried(stored=True)
    assert not breaker.failing and breaker.may_try() and breaker.may_try()


@pytest.mark.sends_through_api
def test_a_text_while_the_database_is_down_is_kept_sealed_then_stored(
    sms_app: Flask, twilio_services: Services, fake: FakeTwilio, tmp_path: Path
) -> None:
    working = twilio_services.database
    if working.dialect == "postgresql":
        down = Database("postgresql://postgres@127.0.0.1:1/nowhere_test")  # nothing listens
    else:
        (tmp_path / "not-a-database").mkdir()
        down = Database(f"sqlite:///{tmp_path / 'not-a-database'}")
    twilio_services.database = down
    body = "agents in vests at SE 82nd and Foster, token-down"
    try:
        status, answer, _took = text_at(sms_app, ALICE, body)
        assert status == 200 and answer is not None and answer.startswith(KEPT_EN)
        [name] = twilio_services.spool.waiting()
        sealed = (twilio_services.settings.spool_path / f"{name}.msg").read_bytes()
        for secret in (ALICE, ALICE[1:], body, "token-down"):
            assert secret.encode() not in sealed
        assert sms.store_spooled(twilio_services) == 0  # still down: kept for the next round
        assert twilio_services.spool.waiting() == [name]
        health = sms_app.test_client().get("/healthz")
        assert health.status_code == 503
        assert health.get_json()["spooled_texts"] == 1
    finally:
        twilio_services.database = working
        down.dispose()

    assert sms.store_spooled(twilio_services) == 1
    assert sms_app.test_client().get("/healthz").get_json()["spooled_texts"] == 0
    assert decrypted_reports(twilio_services) == [body]
    [late] = fake.messages
    assert late.to == ALICE and late.body.startswith("Report ")
    assert list(twilio_services.settings.spool_path.iterdir()) == []
    assert not list(twilio_services.settings.shred_keys_path.glob("spool-*"))


def test_a_stop_while_the_database_is_down_is_applied_once_stored(
    sms_app: Flask, twilio_services: Services, tmp_path: Path
) -> None:
    from tests.web.sms_helpers import Phone

    alice = Phone(sms_app.test_client(), ALICE)
    alice.text("JOIN Cully")
    alice.text("YES")
    working = twilio_services.database
    (tmp_path / "gone").mkdir()
    twilio_services.database = Database(f"sqlite:///{tmp_path / 'gone'}")
    try:
        assert alice.text("STOP") is None  # the carrier's own opt-out answers a STOP
    finally:
        twilio_services.database.dispose()
        twilio_services.database = working
    assert sms.store_spooled(twilio_services) == 1
    assert alice.text("AREAS") is None  # opted out: nothing but START gets an answer


@pytest.mark.sends_through_api
def test_whatsapp_texts_kept_while_the_database_is_down_stay_whatsapp(
    sms_app: Flask, twilio_services: Services, fake: FakeTwilio, tmp_path: Path
) -> None:
    """Stored later, a WhatsApp STOP is still no SMS STOP, and a WhatsApp report is not
    answered by SMS (the answer would go to a channel the person did not use)."""
    from rapidresponse.models import ReportChannel, Subscriber, SubscriberStatus
    from tests.web.sms_helpers import Phone

    alice = Phone(sms_app.test_client(), ALICE)
    alice.text("JOIN Cully")
    alice.text("YES")
    sent_before = len(fake.messages)
    working = twilio_services.database
    (tmp_path / "gone").mkdir()
    twilio_services.database = Database(f"sqlite:///{tmp_path / 'gone'}")
    try:
        on_whatsapp = Phone(sms_app.test_client(), f"whatsapp:{ALICE}")
        assert on_whatsapp.text("STOP") is None
        assert (on_whatsapp.text("agents at SE 82nd and Foster") or "").startswith(KEPT_EN)
    finally:
        twilio_services.database.dispose()
        twilio_services.database = working
    assert sms.store_spooled(twilio_services) == 2
    with twilio_services.database.session() as session:
        [subscriber] = session.query(Subscriber).all()
        assert subscriber.status is SubscriberStatus.ACTIVE
    [report] = decrypted_reports(twilio_services)
    assert report == "agents at SE 82nd and Foster"
    from tests.web.test_reports_sms import reports

    assert [r.channel for r in reports(twilio_services)] == [ReportChannel.WHATSAPP]
    assert len(fake.messages) == sent_before  # no late SMS answer
