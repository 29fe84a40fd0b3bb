"""Keeping the list alive: "still want alerts?" once, a pause for silence, YES resumes.

Real database and Redis, answers through the signed SMS webhook, the question sent to
the local fake Twilio by the hourly job run in-process with an injected time.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import select, update

from dispatch.reconfirm import reconfirm_job
from dispatch.services import Services
from rapidresponse import broadcast, reconfirm
from rapidresponse.models import (
    Alert,
    AlertKind,
    Delivery,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    Subscription,
)
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import Phone

pytestmark = pytest.mark.sends_through_api

DANA, LUIS = "+15035550171", "+15035550172"
PORTLAND = ZoneInfo("America/Los_Angeles")
# Tomorrow's local noon: after every answer texted during the test (stamped with the real
# clock), and in daytime.
NOON = (
    (datetime.now(PORTLAND) + timedelta(days=1))
    .replace(hour=12, minute=0, second=0, microsecond=0)
    .astimezone(UTC)
)


@pytest.fixture
def yearly(twilio_services: Services) -> Services:
    twilio_services.settings = replace(
        twilio_services.settings, reconfirm_after_days=180, reconfirm_wait_days=14
    )
    return twilio_services


def joined(app: Flask, services: Services, number: str, days_ago: int) -> Phone:
    phone = Phone(app.test_client(), number)
    phone.text("JOIN Cully")
    phone.text("YES")
    with services.database.session() as session:
        session.execute(
            update(Subscriber)
            .where(Subscriber.phone_index == services.index.digest(number, "phone"))
            .values(created_at=NOON - timedelta(days=days_ago))
        )
    return phone


def asked(fake: FakeTwilio, number: str) -> list[str]:
    return [m.body for m in fake.messages if m.to == number and "still want" in m.body.lower()]


def person(services: Services, number: str) -> Subscriber:
    with services.database.session() as session:
        return session.scalars(
            select(Subscriber).where(
                Subscriber.phone_index == services.index.digest(number, "phone")
            )
        ).one()


def test_off_by_default(twilio_services: Services, sms_app: Flask, fake: FakeTwilio) -> None:
    joined(sms_app, twilio_services, DANA, days_ago=400)
    assert twilio_services.settings.reconfirm_after_days == 0
    assert reconfirm_job(NOON) == {"paused": 0, "asked": 0}
    assert asked(fake, DANA) == []


def test_silent_for_long_is_asked_once_then_paused_and_yes_resumes(
    yearly: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    dana = joined(sms_app, yearly, DANA, days_ago=200)
    joined(sms_app, yearly, LUIS, days_ago=30)  # joined lately: not asked
    assert reconfirm_job(NOON) == {"paused": 0, "asked": 1}
    [question] = asked(fake, DANA)
    assert "Cully" in question and "14 days" in question and "YES" in question
    assert asked(fake, LUIS) == []
    assert reconfirm_job(NOON + timedelta(hours=1))["asked"] == 0  # once
    # No answer in 14 days: paused, kept with their area, sent nothing.
    assert reconfirm_job(NOON + timedelta(days=15))["paused"] == 1
    paused = person(yearly, DANA)
    assert paused.status is SubscriberStatus.PAUSED
    with yearly.database.session() as session:
        cully = session.scalars(
            select(Subscription.area_id).where(Subscription.subscriber_id == paused.id)
        ).one()
        alert = broadcast.draft(session, kind=AlertKind.ALERT, texts={"en": "x"}, area_ids=[cully])
        audience = {row[0] for row in session.execute(broadcast.audience(alert))}
        assert paused.id not in audience
        session.delete(alert)
    health = _health(yearly)
    assert (health.asked, health.paused) == (0, 1)
    # YES: kept, active again, and not asked again for another 180 days.
    answer = dana.text("YES")
    assert answer is not None and "keep getting alerts for Cully" in answer
    again = person(yearly, DANA)
    assert again.status is SubscriberStatus.ACTIVE and again.reconfirm_asked_at is None
    assert reconfirm_job(NOON + timedelta(days=16))["asked"] == 0


def test_an_answer_before_the_pause_keeps_them(
    yearly: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    dana = joined(sms_app, yearly, DANA, days_ago=200)
    reconfirm_job(NOON)
    assert _health(yearly).asked == 1
    answer = dana.text("SI")
    assert answer is not None and "sigue recibiendo alertas de Cully" in answer
    assert reconfirm_job(NOON + timedelta(days=30))["paused"] == 0
    assert person(yearly, DANA).status is SubscriberStatus.ACTIVE


def test_someone_an_alert_reached_lately_is_not_asked(
    yearly: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    joined(sms_app, yearly, DANA, days_ago=400)
    dana_id = person(yearly, DANA).id
    with yearly.database.session() as session:
        alert = Alert(kind=AlertKind.ALERT, texts={"en": "x"})
        session.add(alert)
        session.flush()
        session.add(
            Delivery(
                alert_id=alert.id,
                subscriber_id=dana_id,
                status=DeliveryStatus.DELIVERED,
                sent_at=NOON - timedelta(days=20),
            )
        )
    assert reconfirm_job(NOON)["asked"] == 0


def test_nobody_is_asked_in_the_quiet_hours(
    yearly: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    joined(sms_app, yearly, DANA, days_ago=200)
    yearly.settings = replace(yearly.settings, quiet_hours=(time(21), time(8)))
    night = NOON + timedelta(hours=11, minutes=30)  # 23:30 in Portland
    assert reconfirm_job(night)["asked"] == 0
    assert reconfirm_job(NOON)["asked"] == 1


def test_a_question_the_provider_could_not_take_is_asked_again(
    yearly: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    joined(sms_app, yearly, DANA, days_ago=200)
    fake.fail_next(503, times=10)  # down for longer than the sender's own retries
    assert reconfirm_job(NOON)["asked"] == 0
    assert person(yearly, DANA).reconfirm_asked_at is None
    fake.reset()
    assert reconfirm_job(NOON + timedelta(hours=1))["asked"] == 1


def _health(services: Services) -> reconfirm.ListHealth:
    with services.database.session() as session:
        return reconfirm.list_health(session)


def test_the_people_page_counts_who_was_asked_and_who_is_paused(
    yearly: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    from rapidresponse.models import StaffRole
    from tests.web.staff_helpers import add_account, sign_in

    joined(sms_app, yearly, DANA, days_ago=200)
    joined(sms_app, yearly, LUIS, days_ago=200)
    reconfirm_job(NOON)
    with yearly.database.session() as session:  # Luis was asked long ago
        session.execute(
            update(Subscriber)
            .where(Subscriber.phone_index == yearly.index.digest(LUIS, "phone"))
            .values(reconfirm_asked_at=NOON - timedelta(days=20))
        )
    reconfirm_job(NOON + timedelta(minutes=5))
    staff = sms_app.test_client()
    sign_in(staff, yearly, add_account(yearly, StaffRole.DISPATCHER))
    page = " ".join(staff.get("/people").get_data(as_text=True).split())
    assert "people nothing reached for 180 days are asked" in page
    assert "1 person asked and not answered yet · 1 person paused" in page
    spanish = " ".join(staff.get("/people?lang=es").get_data(as_text=True).split())
    assert "1 persona preguntada sin responder todavía · 1 persona en pausa" in spanish
