"""WhatsApp through the same webhook ("From: whatsapp:+1503..."): reports and pins are
sightings like any text, answered on WhatsApp. Here no WHATSAPP_FROM is set, so WhatsApp
carries no alerts: what only SMS can then change (JOIN, STOP...) is answered with how to
do it by SMS, and a WhatsApp STOP never silences SMS alerts. With a WhatsApp sender, see
test_whatsapp_consent."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from dispatch.services import Services
from rapidresponse.models import Base, Report, ReportChannel, Subscriber, SubscriberStatus
from tests.dispatch.test_verification_e2e import everything_in
from tests.web.sms_helpers import ALICE, Phone, new_sid, send, twiml_message
from tests.web.test_reports_sms import SIGHTING, lents_point, reports, text_of

WHATSAPP_ALICE = f"whatsapp:{ALICE}"


def subscribers(services: Services) -> list[Subscriber]:
    with services.database.session() as session:
        return list(session.scalars(select(Subscriber)))


def test_a_whatsapp_report_is_a_sighting_answered_on_whatsapp(
    sms_app: Flask, twilio_services: Services
) -> None:
    answer = Phone(sms_app.test_client(), WHATSAPP_ALICE).text(SIGHTING)
    [report] = reports(twilio_services)
    assert answer is not None and answer.startswith(f"Report {report.code} received.")
    assert report.channel is ReportChannel.WHATSAPP
    assert text_of(twilio_services, report) == SIGHTING
    assert subscribers(twilio_services) == []  # reporting makes nobody a subscriber


def test_a_whatsapp_pin_with_no_words_is_a_located_report(
    sms_app: Flask, twilio_services: Services
) -> None:
    latitude, longitude = lents_point()
    params = {
        "From": WHATSAPP_ALICE,
        "MessageSid": new_sid(),
        "Latitude": latitude,
        "Longitude": longitude,
        "Body": "",
        "ProfileName": "Alicia Example",  # never stored
        "WaId": ALICE.removeprefix("+"),
    }
    response = send(sms_app.test_client(), params)
    assert response.status_code == 200
    [report] = reports(twilio_services)
    assert report.channel is ReportChannel.WHATSAPP
    with twilio_services.database.session() as session:
        placed = session.get_one(Report, report.id)
        assert placed.area is not None and placed.area.slug == "lents"
    answer = twiml_message(response.get_data(as_text=True))
    assert answer is not None and answer.startswith(f"Report {report.code} received.")
    # The name WhatsApp shows and the WhatsApp id are stored nowhere readable: not in any
    # row of any table, nor anywhere in either Redis.
    stored = everything_in_the_database(twilio_services) + b"".join(
        everything_in(client) for client in (twilio_services.redis, twilio_services.volatile)
    )
    assert report.code.encode() in stored  # the scan reads what is there
    for secret in ("Alicia Example", "Alicia", ALICE.removeprefix("+"), ALICE[-7:]):
        assert secret.encode() not in stored, secret


def everything_in_the_database(services: Services) -> bytes:
    """Every value of every row of every table, as a copy of the database shows it."""
    blob = bytearray()
    with services.database.session() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)):
                for value in row:
                    blob += value if isinstance(value, bytes) else str(value).encode()
                    blob += b"\n"
    return bytes(blob)


@pytest.mark.parametrize(
    ("body", "start"),
    [
        ("JOIN Cully", "Alerts come by SMS for now."),
        ("UNIRSE Cully", "Por ahora las alertas llegan por SMS."),
        ("START", "Alerts come by SMS for now."),
        ("MY AREAS", "Alerts come by SMS for now."),
    ],
)
def test_joining_over_whatsapp_says_how_to_by_sms_and_subscribes_nobody(
    sms_app: Flask, twilio_services: Services, body: str, start: str
) -> None:
    answer = Phone(sms_app.test_client(), WHATSAPP_ALICE).text(body)
    assert answer is not None and answer.startswith(start)
    assert subscribers(twilio_services) == []
    assert reports(twilio_services) == []


def test_stop_over_whatsapp_leaves_the_sms_alerts_on(
    sms_app: Flask, twilio_services: Services
) -> None:
    by_sms = Phone(sms_app.test_client(), ALICE)
    by_sms.text("JOIN Cully")
    by_sms.text("YES")
    [subscriber] = subscribers(twilio_services)
    assert subscriber.status is SubscriberStatus.ACTIVE
    answer = Phone(sms_app.test_client(), WHATSAPP_ALICE).text("STOP")
    assert answer is not None and answer.startswith("You get no alerts on WhatsApp.")
    [subscriber] = subscribers(twilio_services)
    assert subscriber.status is SubscriberStatus.ACTIVE  # still gets SMS alerts
    # And an SMS opt-out does not silence the WhatsApp answers.
    by_sms.text("STOP")
    assert Phone(sms_app.test_client(), WHATSAPP_ALICE).text("HELP") is not None


@pytest.mark.parametrize(
    ("body", "start"), [("HELP", "Rapid Response alerts."), ("DERECHOS CASA", "En casa:")]
)
def test_help_and_rights_work_over_whatsapp(sms_app: Flask, body: str, start: str) -> None:
    answer = Phone(sms_app.test_client(), WHATSAPP_ALICE).text(body)
    assert answer is not None and answer.startswith(start)


def test_a_quick_reply_button_says_its_payload_whatever_its_label(
    sms_app: Flask, twilio_services: Services
) -> None:
    """A responder taps a button labelled "Voy" whose payload is "CODE GO"."""
    from tests.dispatch.test_practice import code_in
    from tests.factories import add_on_shift_responder

    responder = "+15035550111"
    add_on_shift_responder(twilio_services, "Ana", responder, "cully")
    on_whatsapp = Phone(sms_app.test_client(), f"whatsapp:{responder}")
    code = code_in(on_whatsapp.text("PRACTICE"))
    params = {
        "From": f"whatsapp:{responder}",
        "MessageSid": new_sid(),
        "Body": "Voy",
        "ButtonText": "Voy",
        "ButtonPayload": f"{code} GO",
    }
    response = send(sms_app.test_client(), params)
    answer = twiml_message(response.get_data(as_text=True))
    assert answer is not None and answer.startswith(f"Practice {code}: GO after")
    assert reports(twilio_services) == []  # "Voy" was not taken for a sighting


def test_a_pin_after_a_spanish_report_is_answered_in_spanish(
    sms_app: Flask, twilio_services: Services
) -> None:
    """The pin has no words to guess a language from: the report's language holds."""
    client = sms_app.test_client()
    first = Phone(client, WHATSAPP_ALICE).text("Migra en la esquina, dos camionetas")
    assert first is not None and "recibido" in first
    latitude, longitude = lents_point()
    params = {"From": WHATSAPP_ALICE, "MessageSid": new_sid(), "Body": ""}
    response = send(client, {**params, "Latitude": latitude, "Longitude": longitude})
    answer = twiml_message(response.get_data(as_text=True))
    [report] = reports(twilio_services)
    assert answer is not None and report.code in answer
    assert answer.startswith("Gracias"), answer
