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
