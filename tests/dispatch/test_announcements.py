"""Announcements: their own consent, never in the quiet hours, a weekly cap, RSVP counts.

Real database and Redis, texts through the signed SMS webhook, the bulk queue's jobs run
in-process against the local fake Twilio; time is injected where the rule is about time.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from dispatch.alerts import reap_deliveries
from dispatch.announcements import send_announcement
from dispatch.broadcast import send_batch
from dispatch.ledger import write_ledger_segment
from dispatch.queues import QueueName, queue
from dispatch.services import Services
from rapidresponse import announcements, broadcast
from rapidresponse.areas import find_area
from rapidresponse.models import (
    Alert,
    Delivery,
    Report,
    StaffRole,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from tests.factories import add_many_subscribers, add_subscriber
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import Phone
from tests.web.staff_helpers import add_account

pytestmark = pytest.mark.sends_through_api

DANA, LUIS, EVA, NEWS_ONLY = "+15035550161", "+15035550162", "+15035550163", "+15035550164"
TRAINING = {"en": "Know-your-rights training Saturday 10am, 4417 NE 42nd.", "es": ""}
ZONE = ZoneInfo("America/Los_Angeles")
NOON = datetime(2026, 12, 5, 12, 0, tzinfo=ZONE).astimezone(UTC)  # a Saturday, local noon


@pytest.fixture(autouse=True)
def no_quiet_hours(services: Services) -> None:
    """Sending happens now, whatever the hour of this run (the quiet hours have their own
    tests); what is sent must be sent before its validity, counted from the real clock."""
    services.settings = replace(services.settings, quiet_hours=None)


@pytest.fixture
def staff(services: Services) -> int:
    """The coordinator who writes the announcements."""
    return add_account(services, StaffRole.COORDINATOR).id


def run_bulk(services: Services) -> list[str]:
    """Run the jobs waiting on the bulk queue, as a worker would; their function names."""
    waiting = queue(QueueName.BULK, services.redis)
    ran = []
    for job in waiting.jobs:
        ran.append(job.func_name)
        send_batch(*job.args)
        job.delete()
    return ran


def joined(app: Flask, number: str, area: str | None, news: bool) -> Phone:
    phone = Phone(app.test_client(), number)
    if area:
        phone.text(f"JOIN {area}")
        phone.text("YES")
    if news:
        assert "NEWS STOP" in (phone.text("JOIN NEWS") or "")
    return phone


def cully_id(services: Services) -> int:
    with services.database.session() as session:
        cully = find_area(session, "cully")
        assert cully is not None
        return cully.id


def send(
    services: Services,
    staff: int,
    now: datetime | None = None,
    rsvp: bool = False,
    **kwargs: object,
) -> int:
    sent = send_announcement(
        services,
        bodies=TRAINING,
        area_ids=kwargs.get("area_ids", ()),  # type: ignore[arg-type]
        asks_rsvp=rsvp,
        staff_id=staff,
        now=now or datetime.now(UTC),
    )
    return sent.alert_id


def texts_to(fake: FakeTwilio, number: str) -> list[str]:
    return [m.body for m in fake.messages if m.to == number and "training" in m.body]


def test_only_people_who_said_yes_to_announcements_get_them(
    twilio_services: Services, sms_app: Flask, fake: FakeTwilio, staff: int
) -> None:
    joined(sms_app, DANA, "Cully", news=True)
    joined(sms_app, LUIS, "Cully", news=False)  # alerts only: never announcements
    joined(sms_app, NEWS_ONLY, None, news=True)  # announcements only, no area
    send(twilio_services, staff)
    assert queue(QueueName.ALERTS, twilio_services.redis).count == 0  # behind alerts
    assert run_bulk(twilio_services)
    [to_dana] = texts_to(fake, DANA)
    assert texts_to(fake, NEWS_ONLY) == [to_dana]
    assert texts_to(fake, LUIS) == []
    assert to_dana.startswith(TRAINING["en"]) and "NEWS STOP" in to_dana
    assert to_dana.endswith("-Rapid Response")
    # For Cully only: the news-only number (no area) is not in Cully.
    fake.reset()
    send(twilio_services, staff, area_ids=[cully_id(twilio_services)])
    run_bulk(twilio_services)
    assert texts_to(fake, DANA) and not texts_to(fake, NEWS_ONLY) and not texts_to(fake, LUIS)


def test_news_stop_ends_announcements_and_keeps_alerts(
    twilio_services: Services, sms_app: Flask, staff: int
) -> None:
    dana = joined(sms_app, DANA, "Cully", news=True)
    answer = dana.text("NOTICIAS NO")
    assert answer is not None and "avisos" in answer
    with twilio_services.database.session() as session:
        person = session.scalars(select(Subscriber)).one()
        assert person.news_consent_at is None and person.language.value == "es"
        [kept] = session.scalars(select(Subscription)).all()
        assert kept.status is SubscriptionStatus.CONFIRMED  # alerts unchanged
    assert (
        send_announcement(
            twilio_services, bodies=TRAINING, area_ids=(), asks_rsvp=False, staff_id=staff, now=NOON
        ).recipients
        == 0
    )


def test_over_whatsapp_joining_news_is_explained_not_done(
    twilio_services: Services, sms_app: Flask
) -> None:
    from tests.web.sms_helpers import send as post

    response = post(
        sms_app.test_client(),
        {"From": f"whatsapp:{DANA}", "Body": "JOIN NEWS", "MessageSid": "SM" + "a" * 32},
    )
    assert response.status_code == 200 and "SMS" in response.get_data(as_text=True)
    with twilio_services.database.session() as session:
        assert session.scalars(select(Subscriber.news_consent_at)).all() in ([], [None])


@pytest.mark.parametrize(
    ("local", "waits_until"),
    [
        (datetime(2026, 12, 5, 22, 30), datetime(2026, 12, 6, 8, 0)),
        (datetime(2026, 12, 6, 3, 0), datetime(2026, 12, 6, 8, 0)),
        (datetime(2026, 12, 6, 21, 0), datetime(2026, 12, 7, 8, 0)),
        (datetime(2026, 12, 6, 8, 0), None),
        (datetime(2026, 12, 6, 20, 59), None),
        (datetime(2026, 3, 8, 1, 30), datetime(2026, 3, 8, 8, 0)),  # the night clocks jump
    ],
)
def test_the_quiet_hours_in_local_time(local: datetime, waits_until: datetime | None) -> None:
    now = local.replace(tzinfo=ZONE).astimezone(UTC)
    expected = now if waits_until is None else waits_until.replace(tzinfo=ZONE).astimezone(UTC)
    assert announcements.next_send_time(now, ZONE, (time(21), time(8))) == expected
    assert announcements.next_send_time(now, ZONE, None) == now
    # A window within one day works too.
    lunch = (time(12), time(13))
    assert announcements.next_send_time(NOON, ZONE, lunch) == NOON + timedelta(hours=1)


def test_written_in_the_quiet_hours_it_waits_then_goes(
    twilio_services: Services, sms_app: Flask, fake: FakeTwilio, staff: int
) -> None:
    joined(sms_app, DANA, "Cully", news=True)
    # The quiet hours are now, whatever the time of this run.
    local = datetime.now(ZONE)
    quiet = ((local - timedelta(hours=1)).time(), (local + timedelta(hours=1)).time())
    twilio_services.settings = replace(twilio_services.settings, quiet_hours=quiet)
    sent = send_announcement(
        twilio_services, bodies=TRAINING, area_ids=(), asks_rsvp=False, staff_id=staff
    )
    assert sent.recipients == 1 and sent.send_after > datetime.now(UTC)
    assert queue(QueueName.BULK, twilio_services.redis).count == 0  # nothing queued overnight
    with twilio_services.database.session() as session:  # as if the reaper's period passed
        session.execute(update(Delivery).values(updated_at=datetime.now(UTC) - timedelta(hours=1)))
    reap_deliveries()
    assert run_bulk(twilio_services) == [] and texts_to(fake, DANA) == []
    # The quiet hours end: the reaper sends it, on the bulk queue.
    with twilio_services.database.session() as session:
        session.execute(update(Alert).values(send_after=datetime.now(UTC) - timedelta(seconds=1)))
    reap_deliveries()
    assert run_bulk(twilio_services)
    assert len(texts_to(fake, DANA)) == 1


def test_the_weekly_cap_holds(
    twilio_services: Services, sms_app: Flask, fake: FakeTwilio, staff: int
) -> None:
    joined(sms_app, DANA, "Cully", news=True)
    assert twilio_services.settings.announcements_per_week == 2
    counts = []
    start = datetime.now(UTC)
    for minute in range(3):
        alert_id = send(twilio_services, staff, now=start + timedelta(minutes=minute))
        run_bulk(twilio_services)
        with twilio_services.database.session() as session:
            counts.append(session.get_one(Alert, alert_id).recipient_count)
    assert counts == [1, 1, 0]
    assert len(texts_to(fake, DANA)) == 2
    # A week after the first, there is room again.
    assert (
        send_announcement(
            twilio_services,
            bodies=TRAINING,
            area_ids=(),
            asks_rsvp=False,
            staff_id=staff,
            now=start + timedelta(days=7, hours=1),
        ).recipients
        == 1
    )


def test_answers_are_counted_never_listed_and_never_a_report(
    twilio_services: Services, sms_app: Flask, fake: FakeTwilio, staff: int
) -> None:
    dana = joined(sms_app, DANA, "Cully", news=True)
    luis = joined(sms_app, LUIS, "Cully", news=True)
    eva = joined(sms_app, EVA, None, news=True)
    stranger = Phone(sms_app.test_client(), "+15035550169")
    alert_id = send(twilio_services, staff, rsvp=True)
    run_bulk(twilio_services)
    assert "Reply 1 for yes, 2 for no." in texts_to(fake, DANA)[0]
    assert "yes" in (dana.text("1") or "")
    assert "no" in (luis.text("2") or "")
    assert "yes" in (eva.text("YES") or "")  # nothing pending to confirm: it is an answer
    assert "no" in (eva.text("2") or "")  # a change of mind, counted once
    with twilio_services.database.session() as session:
        assert announcements.rsvp_counts(session, [alert_id]) == {alert_id: {"yes": 1, "no": 2}}
        assert session.scalars(select(Report)).all() == []
    # From someone nothing asked, "1" is what it always was: a report.
    stranger.text("1")
    with twilio_services.database.session() as session:
        assert len(session.scalars(select(Report)).all()) == 1


def test_an_announcement_needs_english_and_a_short_text(
    twilio_services: Services, staff: int
) -> None:
    with pytest.raises(announcements.AnnouncementRefused, match="English"):
        send_announcement(
            twilio_services, bodies={"es": "Taller"}, area_ids=(), asks_rsvp=False, staff_id=staff
        )
    with pytest.raises(announcements.AnnouncementRefused, match="at most"):
        send_announcement(
            twilio_services,
            bodies={"en": "x" * 10_000},
            area_ids=(),
            asks_rsvp=False,
            staff_id=staff,
        )
    with twilio_services.database.session() as session:
        assert session.scalars(select(Alert)).all() == []


PEOPLE = st.lists(
    st.tuples(st.booleans(), st.booleans(), st.sampled_from(list(SubscriberStatus))),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(people=PEOPLE, for_cully=st.booleans())
def test_the_audience_never_holds_anyone_without_their_yes(
    twilio_services: Services,
    people: list[tuple[bool, bool, SubscriberStatus]],
    for_cully: bool,
    staff: int,
) -> None:
    """Over random people (consent or not, in Cully or not, any status): an announcement's
    audience is exactly the active people who said yes (in its areas, if it names any)."""
    cully = cully_id(twilio_services)
    with twilio_services.database.session() as session:
        session.execute(delete(Subscription))
        session.execute(delete(Subscriber))
    expected = set()
    for n, (consent, in_cully, status) in enumerate(people):
        person = add_subscriber(twilio_services, f"+1503555{n:04d}", status=status)
        with twilio_services.database.session() as session:
            if consent:
                session.get_one(Subscriber, person).news_consent_at = NOON
            if in_cully:
                session.add(
                    Subscription(
                        subscriber_id=person,
                        area_id=cully,
                        status=SubscriptionStatus.CONFIRMED,
                    )
                )
        if consent and status is SubscriberStatus.ACTIVE and (in_cully or not for_cully):
            expected.add(person)
    with twilio_services.database.session() as session:
        alert = announcements.draft(
            session,
            bodies={"en": "Meeting"},
            area_ids=[cully] if for_cully else [],
            asks_rsvp=False,
            signatures={"en": "-RR", "es": "-RR"},
            staff_id=staff,
        )
        audience = {row[0] for row in session.execute(broadcast.audience(alert, now=NOON))}
        session.delete(alert)
    assert audience == expected


def test_on_whatsapp_news_is_its_own_yes_and_answers_count_there_too(
    twilio_services: Services, sms_app: Flask, fake: FakeTwilio, staff: int
) -> None:
    from rapidresponse import whatsapp
    from rapidresponse.models import AlertKind, Channel, Language, TemplateStatus

    twilio_services.settings = replace(
        twilio_services.settings, whatsapp_from="whatsapp:+15035550199"
    )
    with twilio_services.database.session() as session:
        whatsapp.save_template(
            session,
            kind=AlertKind.ANNOUNCEMENT,
            language=Language.EN,
            content_sid="HX" + "7" * 32,
            variables=["text"],
            status=TemplateStatus.APPROVED,
            staff_id=None,
        )
    dana = joined(sms_app, f"whatsapp:{DANA}", None, news=True)
    alert_id = send(twilio_services, staff, rsvp=True)
    run_bulk(twilio_services)
    [sent] = [r for r in fake.requests if r.method == "POST"]
    assert sent.value("To") == f"whatsapp:{DANA}" and sent.value("ContentSid")
    assert "yes" in (dana.text("1") or "")
    with twilio_services.database.session() as session:
        assert announcements.rsvp_counts(session, [alert_id]) == {alert_id: {"yes": 1, "no": 0}}
        assert session.scalars(select(Report)).all() == []
        person = session.scalars(select(Subscriber)).one()
        assert person.news_consent_at is not None
        assert person.status is SubscriberStatus.NO_CONSENT  # no SMS asked for
        [delivery] = session.scalars(select(Delivery)).all()
        assert delivery.channel is Channel.WHATSAPP


def test_a_large_announcement_is_streamed_and_counted_whole(
    twilio_services: Services, fake: FakeTwilio, staff: int
) -> None:
    """More people than the approval writes: the workers write the rest of its ledger
    (on the bulk queue too), and the coordinator is told how many it goes to in all."""
    twilio_services.settings = replace(twilio_services.settings, ledger_segment_rows=10)
    people = add_many_subscribers(twilio_services, cully_id(twilio_services), 35)
    with twilio_services.database.session() as session:
        session.execute(
            update(Subscriber).where(Subscriber.id.in_(people)).values(news_consent_at=NOON)
        )

    sent = send_announcement(
        twilio_services,
        bodies=TRAINING,
        area_ids=(),
        asks_rsvp=False,
        staff_id=staff,
        now=datetime.now(UTC),
    )

    assert sent.recipients == 35
    waiting = queue(QueueName.BULK, twilio_services.redis)
    while waiting.count:
        for job in waiting.jobs:
            if job.func_name == "dispatch.ledger.write_ledger_segment":
                write_ledger_segment(*job.args)
            else:
                send_batch(*job.args)
            job.delete()
    assert len({m.to for m in fake.messages if "training" in m.body}) == 35
    assert len(fake.messages) == 35
