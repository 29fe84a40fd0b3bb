"""Each channel has its own consent and its own STOP, once WhatsApp carries alerts
(WHATSAPP_FROM set): joining on WhatsApp is consent to WhatsApp alone, and STOP on one
channel ends that channel only, saying how to end the other."""

from __future__ import annotations

from dataclasses import replace

import pytest
from flask import Flask
from sqlalchemy import select

from dispatch.services import Services
from rapidresponse.models import Channel, Subscriber, SubscriberStatus, Subscription
from tests.web.sms_helpers import ALICE, Phone
from tests.web.test_reports_sms import SIGHTING, reports

WHATSAPP_ALICE = f"whatsapp:{ALICE}"
WHATSAPP_SENDER = "+15035550100"


@pytest.fixture
def wa_services(twilio_services: Services) -> Services:
    twilio_services.settings = replace(
        twilio_services.settings, whatsapp_from=f"whatsapp:{WHATSAPP_SENDER}"
    )
    return twilio_services


@pytest.fixture
def by_whatsapp(wa_services: Services, sms_app: Flask) -> Phone:
    return Phone(sms_app.test_client(), WHATSAPP_ALICE)


@pytest.fixture
def by_sms(wa_services: Services, sms_app: Flask) -> Phone:
    return Phone(sms_app.test_client(), ALICE)


def person(services: Services) -> tuple[Subscriber, list[Subscription]]:
    with services.database.session() as session:
        [subscriber] = session.scalars(select(Subscriber)).all()
        session.expunge(subscriber)
        subscriptions = list(
            session.scalars(select(Subscription).where(Subscription.subscriber_id == subscriber.id))
        )
        for row in subscriptions:
            session.expunge(row)
        return subscriber, subscriptions


def test_joining_on_whatsapp_is_consent_to_whatsapp_only(
    wa_services: Services, by_whatsapp: Phone
) -> None:
    answer = by_whatsapp.text("JOIN Cully")
    assert answer is not None and "YES" in answer
    assert by_whatsapp.text("YES") is not None
    subscriber, [subscription] = person(wa_services)
    assert subscriber.whatsapp_status is SubscriberStatus.ACTIVE
    assert subscriber.status is SubscriberStatus.NO_CONSENT  # never asked for SMS
    assert subscription.channel is Channel.WHATSAPP
    assert subscription.status.value == "confirmed"


def test_a_spanish_join_on_whatsapp_is_answered_in_spanish(
    wa_services: Services, by_whatsapp: Phone
) -> None:
    answer = by_whatsapp.text("UNIRSE Cully")
    assert answer is not None and "SI" in answer
    subscriber, _ = person(wa_services)
    assert subscriber.language.value == "es"


def test_stop_on_whatsapp_ends_whatsapp_and_says_how_to_end_sms(
    wa_services: Services, by_whatsapp: Phone, by_sms: Phone
) -> None:
    by_sms.text("JOIN Cully")
    by_sms.text("YES")
    by_whatsapp.text("JOIN Cully")
    answer = by_whatsapp.text("STOP")
    assert answer is not None and answer.startswith("You will get no more alerts on WhatsApp.")
    assert "text STOP to this number by SMS" in answer
    subscriber, subscriptions = person(wa_services)
    assert subscriber.whatsapp_status is SubscriberStatus.OPTED_OUT
    assert subscriber.status is SubscriberStatus.ACTIVE  # SMS alerts go on
    assert [s.area_id for s in subscriptions]  # and so do the areas they are for
    # WhatsApp is silent after its STOP (a report is still taken); START reopens it.
    assert by_whatsapp.text(SIGHTING) is None
    assert len(reports(wa_services)) == 1
    assert by_sms.text("AREAS") is not None  # SMS is not silenced by WhatsApp's STOP
    assert by_whatsapp.text("START") is not None
    subscriber, _ = person(wa_services)
    assert subscriber.whatsapp_status is SubscriberStatus.ACTIVE


def test_stop_by_sms_leaves_whatsapp_on_and_says_so(
    wa_services: Services, by_whatsapp: Phone, by_sms: Phone
) -> None:
    by_whatsapp.text("JOIN Cully")
    by_whatsapp.text("YES")
    by_sms.text("JOIN Cully")
    answer = by_sms.text("STOP")
    assert answer is not None and "WhatsApp alerts continue" in answer
    subscriber, subscriptions = person(wa_services)
    assert subscriber.status is SubscriberStatus.OPTED_OUT
    assert subscriber.whatsapp_status is SubscriberStatus.ACTIVE
    assert len(subscriptions) == 1
    assert by_sms.text("HELP") is None  # SMS silent after its STOP
    assert by_whatsapp.text("HELP") is not None


def test_stop_on_the_only_channel_forgets_the_areas(
    wa_services: Services, by_whatsapp: Phone
) -> None:
    by_whatsapp.text("JOIN Cully")
    by_whatsapp.text("YES")
    answer = by_whatsapp.text("STOP")
    assert answer is not None and answer.startswith("You are unsubscribed")
    subscriber, subscriptions = person(wa_services)
    assert subscriber.whatsapp_status is SubscriberStatus.OPTED_OUT
    assert subscriptions == []
    assert by_whatsapp.text("STOP") is None  # one confirmation only


def test_stop_on_whatsapp_from_a_stranger_is_kept_as_a_whatsapp_stop(
    wa_services: Services, by_whatsapp: Phone
) -> None:
    assert by_whatsapp.text("STOP") is not None
    subscriber, _ = person(wa_services)
    assert subscriber.whatsapp_status is SubscriberStatus.OPTED_OUT
    assert subscriber.status is SubscriberStatus.NO_CONSENT
    assert by_whatsapp.text("HELP") is None


def test_joining_an_area_already_confirmed_from_the_other_channel_adds_that_channel(
    wa_services: Services, by_whatsapp: Phone, by_sms: Phone
) -> None:
    by_sms.text("JOIN Cully")
    by_sms.text("YES")
    answer = by_whatsapp.text("JOIN Cully")
    assert answer == (
        "Done: alerts for Cully can come here on WhatsApp now. Send STOP here to end "
        "WhatsApp alerts."
    )
    subscriber, [subscription] = person(wa_services)
    assert subscriber.whatsapp_status is SubscriberStatus.ACTIVE
    assert subscriber.status is SubscriberStatus.ACTIVE
    assert subscription.channel is Channel.SMS  # the consent it was made with, kept
    assert (by_whatsapp.text("JOIN Cully") or "").startswith("You already get alerts")


BSUID = "US.13491208655302741918"


def test_someone_hiding_their_number_behind_a_username_can_join_and_report(
    wa_services: Services, sms_app: Flask
) -> None:
    hidden = Phone(sms_app.test_client(), f"whatsapp:{BSUID}")
    assert "YES" in (hidden.text("JOIN Cully") or "")
    assert hidden.text("YES") is not None
    subscriber, [joined] = person(wa_services)
    assert joined.channel is Channel.WHATSAPP
    assert subscriber.whatsapp_status is SubscriberStatus.ACTIVE
    assert subscriber.status is SubscriberStatus.NO_CONSENT  # SMS cannot reach an id
    assert subscriber.phone_index == wa_services.index.digest(BSUID, "phone")
    assert wa_services.cipher.decrypt(subscriber.phone_sealed, "subscriber.phone") == BSUID
    assert BSUID.encode() not in subscriber.phone_sealed  # sealed like a number
    answer = hidden.text(SIGHTING)
    assert answer is not None and answer.startswith("Report ")


def test_a_username_with_its_number_shared_is_the_same_person_as_by_sms(
    wa_services: Services, sms_app: Flask, by_sms: Phone
) -> None:
    from tests.web.sms_helpers import new_sid, send

    by_sms.text("JOIN Cully")
    by_sms.text("YES")
    params = {
        "From": f"whatsapp:{BSUID}",
        "WaId": ALICE.removeprefix("+"),
        "Body": "JOIN Cully",
        "MessageSid": new_sid(),
    }
    assert send(sms_app.test_client(), params).status_code == 200
    subscriber, _ = person(wa_services)  # one person, now on both channels
    assert subscriber.whatsapp_status is SubscriberStatus.ACTIVE


@pytest.mark.parametrize("sender", ["whatsapp:not-an-id", "whatsapp:us.123", "whatsapp:"])
def test_a_whatsapp_sender_that_is_neither_a_number_nor_an_id_is_refused(
    wa_services: Services, sms_app: Flask, sender: str
) -> None:
    from tests.web.sms_helpers import new_sid, send

    answer = send(sms_app.test_client(), {"From": sender, "Body": "hi", "MessageSid": new_sid()})
    assert answer.status_code == 400  # Twilio logs it; nothing to answer, nothing stored
    assert reports(wa_services) == []


def test_joining_a_drill_on_whatsapp_is_no_consent_to_real_alerts_there(
    wa_services: Services, by_whatsapp: Phone, by_sms: Phone
) -> None:
    from tests.dispatch.test_drills import start_drill
    from tests.factories import add_on_shift_responder

    add_on_shift_responder(wa_services, "Ana", "+15035550111", "cully")
    by_sms.text("JOIN Cully")
    by_sms.text("YES")
    start_drill(wa_services, "Ana")
    assert (by_whatsapp.text("JOIN DRILL") or "").startswith("DRILL: you are in drill")
    subscriber, _ = person(wa_services)
    assert subscriber.whatsapp_status is SubscriberStatus.NO_CONSENT  # practice only
    assert subscriber.status is SubscriberStatus.ACTIVE
