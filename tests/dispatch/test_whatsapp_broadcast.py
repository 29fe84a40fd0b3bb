"""Alerts by WhatsApp: the channel chosen per person when the ledger is written, the
template or free text sent, and every WhatsApp refusal handled — by the batch job
in-process, against the local fake Twilio and the real database.

One delivery row per person whatever happens: a WhatsApp refusal that SMS can overcome
changes the row's channel, never adds a row."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from dispatch import broadcast as jobs
from dispatch import status_queue
from dispatch.pacer import make_whatsapp_pacer
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
    utcnow,
)
from tests.dispatch.conftest import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
from tests.dispatch.test_broadcast_core import TEXTS, make_area, subscribe
from tests.twilio_fake import FakeTwilio

pytestmark = pytest.mark.sends_through_api

WHATSAPP_FROM = "whatsapp:+15035550199"
TEMPLATE_SID = "HX" + "1" * 32
SMS_ONLY, WA_ONLY, BOTH = "+15035554001", "+15035554002", "+15035554003"


@pytest.fixture
def wa(services: Services, fake: FakeTwilio) -> Services:
    services.settings = replace(
        services.settings,
        sms_backend="twilio",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_from=FROM_NUMBER,
        twilio_api_url=fake.url,
        whatsapp_from=WHATSAPP_FROM,
    )
    return services


def person(
    services: Services,
    phone: str,
    area_id: int,
    *,
    sms: SubscriberStatus,
    on_whatsapp: SubscriberStatus,
    language: Language = Language.EN,
) -> int:
    subscriber_id = subscribe(services, phone, area_id, language=language, status=sms)
    with services.database.session() as session:
        session.get_one(Subscriber, subscriber_id).whatsapp_status = on_whatsapp
    return subscriber_id


def three(services: Services, area_id: int, language: Language = Language.EN) -> None:
    """One SMS-only, one WhatsApp-only and one on both channels."""
    active, none = SubscriberStatus.ACTIVE, SubscriberStatus.NO_CONSENT
    person(services, SMS_ONLY, area_id, sms=active, on_whatsapp=none, language=language)
    person(services, WA_ONLY, area_id, sms=none, on_whatsapp=active, language=language)
    person(services, BOTH, area_id, sms=active, on_whatsapp=active, language=language)


def approve_template(services: Services, language: Language = Language.EN) -> None:
    with services.database.session() as session:
        whatsapp.save_template(
            session,
            kind=AlertKind.ALERT,
            language=language,
            content_sid=TEMPLATE_SID,
            variables=["text"],
            status=TemplateStatus.APPROVED,
            staff_id=None,
        )


def approve(
    services: Services, area_id: int, batch: int = 500, daily_limit: int | None = None
) -> broadcast.Approval:
    with services.database.session() as session:
        alert = broadcast.draft(session, kind=AlertKind.ALERT, texts=TEXTS, area_ids=[area_id])
        return broadcast.approve(
            session,
            alert.id,
            now=utcnow(),
            validity=timedelta(minutes=30),
            batch=batch,
            whatsapp_batch=batch,
            whatsapp_daily_limit=daily_limit,
        )


def rows(services: Services, alert_id: int) -> dict[str, Delivery]:
    """Each delivery of the alert, by the number it is for."""
    numbers = {services.index.digest(phone, "phone"): phone for phone in (SMS_ONLY, WA_ONLY, BOTH)}
    with services.database.session() as session:
        found = session.execute(
            select(Delivery, Subscriber.phone_index)
            .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(Delivery.alert_id == alert_id)
        ).all()
        for delivery, _ in found:
            session.expunge(delivery)
    return {numbers[key]: delivery for delivery, key in found}


def send_all(approval: broadcast.Approval) -> None:
    for batch in range(approval.batches):
        jobs.send_batch(approval.alert_id, batch)


def requests_to(fake: FakeTwilio, to: str) -> list[dict[str, str | None]]:
    return [
        {name: r.value(name) for name in ("To", "From", "Body", "ContentSid", "ContentVariables")}
        for r in fake.requests
        if r.value("To") == to
    ]


def test_the_ledger_picks_each_persons_channel_and_keeps_channels_in_their_own_batches(
    wa: Services,
) -> None:
    area = make_area(wa, "cully")
    three(wa, area)
    approve_template(wa)
    approval = approve(wa, area)
    found = rows(wa, approval.alert_id)
    assert {phone: d.channel for phone, d in found.items()} == {
        SMS_ONLY: Channel.SMS,
        WA_ONLY: Channel.WHATSAPP,
        BOTH: Channel.WHATSAPP,  # WhatsApp first: they chose it and a template exists
    }
    batches = {
        channel: {d.batch for d in found.values() if d.channel is channel} for channel in Channel
    }
    assert not batches[Channel.SMS] & batches[Channel.WHATSAPP]
    assert approval.batches == 2


def test_without_an_approved_template_sms_takes_those_who_consented_to_it(
    wa: Services,
) -> None:
    area = make_area(wa, "cully")
    three(wa, area, Language.ES)
    approve_template(wa, Language.EN)  # English only: the Spanish readers have none
    found = rows(wa, approve(wa, area).alert_id)
    assert found[BOTH].channel is Channel.SMS
    assert found[WA_ONLY].channel is Channel.WHATSAPP  # free text: their only channel
    assert found[SMS_ONLY].channel is Channel.SMS


def test_a_template_goes_as_content_sid_and_variables_to_the_whatsapp_address(
    wa: Services, fake: FakeTwilio
) -> None:
    area = make_area(wa, "cully")
    three(wa, area)
    approve_template(wa)
    approval = approve(wa, area)
    send_all(approval)
    [to_whatsapp_only] = requests_to(fake, f"whatsapp:{WA_ONLY}")
    assert to_whatsapp_only["From"] == WHATSAPP_FROM
    assert to_whatsapp_only["ContentSid"] == TEMPLATE_SID
    assert to_whatsapp_only["Body"] is None
    assert json.loads(to_whatsapp_only["ContentVariables"] or "") == {"1": TEXTS["en"]}
    [to_sms] = requests_to(fake, SMS_ONLY)
    assert to_sms["From"] == FROM_NUMBER and to_sms["Body"] == TEXTS["en"]
    assert to_sms["ContentSid"] is None
    # Each person once, on one channel: nobody by both.
    assert requests_to(fake, BOTH) == [] and len(requests_to(fake, f"whatsapp:{BOTH}")) == 1
    assert all(d.status is DeliveryStatus.SENT for d in rows(wa, approval.alert_id).values())


def test_outside_the_window_with_no_template_a_whatsapp_only_person_fails_with_the_reason(
    wa: Services, fake: FakeTwilio
) -> None:
    area = make_area(wa, "cully")
    three(wa, area)
    approval = approve(wa, area)  # no template at all: free text on WhatsApp
    send_all(approval)
    [free_text] = [m for m in fake.messages if m.to == f"whatsapp:{WA_ONLY}"]
    assert free_text.body == TEXTS["en"]
    delivery = rows(wa, approval.alert_id)[WA_ONLY]
    record(wa, delivery.id, free_text.sid, "failed", 63016)
    failed = rows(wa, approval.alert_id)[WA_ONLY]
    assert (failed.status, failed.error_code) == (DeliveryStatus.FAILED, "63016")
    assert failed.channel is Channel.WHATSAPP


def record(services: Services, delivery_id: int, sid: str, status: str, code: int | None) -> None:
    key = broadcast.callback_key(delivery_id)
    callback = status_queue.StatusCallback(key, sid, broadcast.CallbackStatus(status), code)
    jobs.apply_status_callbacks(services, [callback])


@pytest.mark.parametrize("code", [63016, 63024])
def test_a_whatsapp_refusal_goes_again_by_sms_for_someone_who_consented_to_both(
    wa: Services, fake: FakeTwilio, code: int
) -> None:
    area = make_area(wa, "cully")
    three(wa, area)
    approve_template(wa)
    approval = approve(wa, area)
    send_all(approval)
    [by_whatsapp] = [m for m in fake.messages if m.to == f"whatsapp:{BOTH}"]
    both = rows(wa, approval.alert_id)[BOTH]
    record(wa, both.id, by_whatsapp.sid, "undelivered", code)
    again = rows(wa, approval.alert_id)[BOTH]
    assert (again.channel, again.status) == (Channel.SMS, DeliveryStatus.PENDING)
    assert again.superseded_sids == [by_whatsapp.sid]
    send_all(approval)  # what the resend job does
    [by_sms] = [m for m in fake.messages if m.to == BOTH]
    assert by_sms.body == TEXTS["en"]
    final = rows(wa, approval.alert_id)[BOTH]
    assert (final.status, final.provider_sid) == (DeliveryStatus.SENT, by_sms.sid)
    # The WhatsApp message's late callbacks are not the SMS's.
    record(wa, both.id, by_whatsapp.sid, "failed", code)
    assert rows(wa, approval.alert_id)[BOTH].status is DeliveryStatus.SENT
    with wa.database.session() as session:
        subscriber = session.scalars(
            select(Subscriber).where(Subscriber.id == both.subscriber_id)
        ).one()
        unreachable = code in whatsapp.UNREACHABLE_CODES
        expected = SubscriberStatus.UNDELIVERABLE if unreachable else SubscriberStatus.ACTIVE
        assert subscriber.whatsapp_status is expected
        assert subscriber.status is SubscriberStatus.ACTIVE


def test_a_refusal_at_the_request_falls_back_at_once(wa: Services, fake: FakeTwilio) -> None:
    area = make_area(wa, "cully")
    person(wa, BOTH, area, sms=SubscriberStatus.ACTIVE, on_whatsapp=SubscriberStatus.ACTIVE)
    approve_template(wa)
    approval = approve(wa, area)
    fake.fail_next(status=400, code=63024)
    result = jobs.send_batch(approval.alert_id, 0)
    assert result["fell_back"] == 1
    send_all(approval)
    assert [r["To"] for r in fake_requests(fake)] == [f"whatsapp:{BOTH}", BOTH]
    assert rows(wa, approval.alert_id)[BOTH].status is DeliveryStatus.SENT


def fake_requests(fake: FakeTwilio) -> list[dict[str, str | None]]:
    return [{"To": r.value("To")} for r in fake.requests if r.method == "POST"]


def test_a_rate_limit_slows_the_whatsapp_lane_and_the_message_still_goes(
    wa: Services, fake: FakeTwilio
) -> None:
    wa.whatsapp_pacer = make_whatsapp_pacer(wa.redis, wa.settings)
    area = make_area(wa, "cully")
    person(wa, WA_ONLY, area, sms=SubscriberStatus.NO_CONSENT, on_whatsapp=SubscriberStatus.ACTIVE)
    approve_template(wa)
    approval = approve(wa, area)
    fake.fail_next(status=429, code=63018)
    result = jobs.send_batch(approval.alert_id, 0)
    assert result["sent"] == 1
    posts = [r for r in fake.requests if r.method == "POST"]
    assert len(posts) == 2
    assert posts[1].received_at - posts[0].received_at >= jobs.WHATSAPP_RATE_HOLD * 0.9


def test_a_whatsapp_stop_after_approval_moves_the_alert_to_sms(
    wa: Services, fake: FakeTwilio
) -> None:
    area = make_area(wa, "cully")
    both = person(wa, BOTH, area, sms=SubscriberStatus.ACTIVE, on_whatsapp=SubscriberStatus.ACTIVE)
    approve_template(wa)
    approval = approve(wa, area)
    with wa.database.session() as session:
        whatsapp.set_status_on(
            session.get_one(Subscriber, both),
            Channel.WHATSAPP,
            SubscriberStatus.OPTED_OUT,
            utcnow(),
        )
    send_all(approval)
    assert [r["To"] for r in fake_requests(fake)] == [BOTH]
    final = rows(wa, approval.alert_id)[BOTH]
    assert (final.channel, final.status) == (Channel.SMS, DeliveryStatus.SENT)


def test_a_whatsapp_stop_with_no_sms_consent_closes_the_delivery(
    wa: Services, fake: FakeTwilio
) -> None:
    area = make_area(wa, "cully")
    only = person(
        wa, WA_ONLY, area, sms=SubscriberStatus.NO_CONSENT, on_whatsapp=SubscriberStatus.ACTIVE
    )
    approval = approve(wa, area)
    with wa.database.session() as session:
        session.get_one(Subscriber, only).whatsapp_status = SubscriberStatus.OPTED_OUT
    send_all(approval)
    assert fake_requests(fake) == []
    assert rows(wa, approval.alert_id)[WA_ONLY].status is DeliveryStatus.OPTED_OUT


def test_past_the_daily_tier_sms_takes_those_who_consented_and_the_rest_fail_with_why(
    wa: Services,
) -> None:
    area = make_area(wa, "cully")
    three(wa, area)  # two on WhatsApp: the WhatsApp-only one, and the one on both
    approve_template(wa)
    found = rows(wa, approve(wa, area, daily_limit=1).alert_id)
    # The lower subscriber id comes first within the tier: the WhatsApp-only one.
    assert (found[WA_ONLY].channel, found[WA_ONLY].status) == (
        Channel.WHATSAPP,
        DeliveryStatus.PENDING,
    )
    assert (found[BOTH].channel, found[BOTH].status) == (Channel.SMS, DeliveryStatus.PENDING)

    # The next alert the same day: the one already messaged costs nothing more; anyone
    # new on WhatsApp only is past the tier and is failed before anything is sent.
    late = person(
        wa,
        "+15035554004",
        area,
        sms=SubscriberStatus.NO_CONSENT,
        on_whatsapp=SubscriberStatus.ACTIVE,
    )
    second = approve(wa, area, daily_limit=1).alert_id
    with wa.database.session() as session:
        rows_now = {
            d.subscriber_id: (d.channel, d.status, d.error_code)
            for d in session.scalars(select(Delivery).where(Delivery.alert_id == second))
        }
    assert rows_now[late] == (Channel.WHATSAPP, DeliveryStatus.FAILED, whatsapp.LIMIT_REASON)
    assert rows_now[found[WA_ONLY].subscriber_id] == (
        Channel.WHATSAPP,
        DeliveryStatus.PENDING,
        None,
    )


def test_someone_known_only_by_their_whatsapp_user_id_gets_it_there(
    wa: Services, fake: FakeTwilio
) -> None:
    area = make_area(wa, "cully")
    user_id = "US.13491208655302741918"
    person(wa, user_id, area, sms=SubscriberStatus.NO_CONSENT, on_whatsapp=SubscriberStatus.ACTIVE)
    approve_template(wa)
    send_all(approve(wa, area))
    [request] = [r for r in fake.requests if r.method == "POST"]
    assert request.value("To") == f"whatsapp:{user_id}"
    assert request.value("ContentSid") == TEMPLATE_SID


def test_a_refusal_after_the_alert_was_complete_reopens_it_for_the_reaper(
    wa: Services, fake: FakeTwilio
) -> None:
    area = make_area(wa, "cully")
    three(wa, area)
    approve_template(wa)
    approval = approve(wa, area)
    send_all(approval)
    with wa.database.session() as session:
        assert session.get_one(Alert, approval.alert_id).status is AlertStatus.COMPLETE
    [by_whatsapp] = [m for m in fake.messages if m.to == f"whatsapp:{BOTH}"]
    record(wa, rows(wa, approval.alert_id)[BOTH].id, by_whatsapp.sid, "failed", 63016)
    with wa.database.session() as session:
        # Approved again: if its resend is lost, the reaper sends it, or expires it.
        assert session.get_one(Alert, approval.alert_id).status is AlertStatus.APPROVED
        waiting = broadcast.waiting_batches(session, utcnow() + timedelta(seconds=1))
    assert (approval.alert_id, rows(wa, approval.alert_id)[BOTH].batch) in waiting
    send_all(approval)
    with wa.database.session() as session:
        assert session.get_one(Alert, approval.alert_id).status is AlertStatus.COMPLETE


def test_every_refused_try_is_set_aside_and_the_other_channel_is_never_taken_for_it(
    wa: Services, fake: FakeTwilio
) -> None:
    area = make_area(wa, "cully")
    person(wa, BOTH, area, sms=SubscriberStatus.ACTIVE, on_whatsapp=SubscriberStatus.ACTIVE)
    approve_template(wa)
    approval = approve(wa, area)
    send_all(approval)
    delivery_id = rows(wa, approval.alert_id)[BOTH].id
    [first] = [m.sid for m in fake.messages]
    record(wa, delivery_id, first, "failed", 63018)  # too fast: again, on WhatsApp
    send_all(approval)
    second = fake.messages[-1].sid
    assert fake.messages[-1].to == f"whatsapp:{BOTH}"
    record(wa, delivery_id, second, "undelivered", 63016)  # then by SMS
    assert rows(wa, approval.alert_id)[BOTH].superseded_sids == [first, second]
    # Late news of the first try must not pass for the SMS that has not gone yet.
    record(wa, delivery_id, first, "sent", None)
    assert rows(wa, approval.alert_id)[BOTH].status is DeliveryStatus.PENDING
    send_all(approval)
    sms = fake.messages[-1]
    assert sms.to == BOTH
    # A WhatsApp callback (by its To) is never the SMS's, even for an id we never saw.
    callback = status_queue.StatusCallback(
        broadcast.callback_key(delivery_id),
        sms.sid,
        broadcast.CallbackStatus.FAILED,
        63016,
        channel="whatsapp",
    )
    jobs.apply_status_callbacks(wa, [callback])
    final = rows(wa, approval.alert_id)[BOTH]
    assert (final.channel, final.status, final.provider_sid) == (
        Channel.SMS,
        DeliveryStatus.SENT,
        sms.sid,
    )


@pytest.mark.parametrize("code", [63027, 63049])  # a template WhatsApp will not take
def test_any_final_whatsapp_failure_goes_by_sms_for_someone_on_both(
    wa: Services, fake: FakeTwilio, code: int
) -> None:
    area = make_area(wa, "cully")
    person(wa, BOTH, area, sms=SubscriberStatus.ACTIVE, on_whatsapp=SubscriberStatus.ACTIVE)
    approve_template(wa)
    approval = approve(wa, area)
    send_all(approval)
    [sent] = fake.messages
    record(wa, rows(wa, approval.alert_id)[BOTH].id, sent.sid, "failed", code)
    send_all(approval)
    assert fake.messages[-1].to == BOTH
    again = rows(wa, approval.alert_id)[BOTH]
    assert (again.channel, again.status, again.attempts) == (Channel.SMS, DeliveryStatus.SENT, 1)


def test_a_template_refused_at_the_request_goes_by_sms_at_once(
    wa: Services, fake: FakeTwilio
) -> None:
    area = make_area(wa, "cully")
    person(wa, BOTH, area, sms=SubscriberStatus.ACTIVE, on_whatsapp=SubscriberStatus.ACTIVE)
    approve_template(wa)
    approval = approve(wa, area)
    fake.fail_next(status=400, code=21656)  # "ContentVariables invalid"
    assert jobs.send_batch(approval.alert_id, 0)["fell_back"] == 1
    send_all(approval)
    assert [r["To"] for r in fake_requests(fake)] == [f"whatsapp:{BOTH}", BOTH]
    with wa.database.session() as session:
        subscriber = session.scalars(select(Subscriber)).one()
        assert subscriber.whatsapp_status is SubscriberStatus.ACTIVE  # not their fault


def test_while_the_whatsapp_lane_waits_the_job_keeps_its_lease(
    wa: Services, fake: FakeTwilio
) -> None:
    """WhatsApp's 63018 holds the lane for longer than a short lease: the job renews it
    while it waits, so a reaper running meanwhile takes nothing back (and nothing goes
    twice)."""
    wa.settings = replace(wa.settings, delivery_lease_seconds=2)
    wa.whatsapp_pacer = make_whatsapp_pacer(wa.redis, wa.settings)
    area = make_area(wa, "cully")
    person(wa, WA_ONLY, area, sms=SubscriberStatus.NO_CONSENT, on_whatsapp=SubscriberStatus.ACTIVE)
    approve_template(wa)
    approval = approve(wa, area)
    fake.fail_next(status=429, code=63018)
    done = threading.Event()

    def reaper() -> None:
        while not done.is_set():
            with wa.database.session() as session:
                broadcast.release_expired_leases(session, utcnow())
            time.sleep(0.2)

    running = threading.Thread(target=reaper, daemon=True)
    running.start()
    try:
        assert jobs.send_batch(approval.alert_id, 0)["sent"] == 1
    finally:
        done.set()
        running.join(5)
    final = rows(wa, approval.alert_id)[WA_ONLY]
    assert (final.status, final.unknown_outcomes) == (DeliveryStatus.SENT, 0)
    assert len([r for r in fake.requests if r.method == "POST"]) == 2
