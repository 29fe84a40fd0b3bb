"""WhatsApp end to end on production settings: RR_ENV=production, Twilio at the local
fake, signed webhooks, real `rapidresponse worker --burst` processes, the real database
and Redis.

Four people join Lents: one on WhatsApp only, one by SMS only, one on both, and a
Spanish reader on WhatsApp only, for whose language no template is approved. A pin with
no words reports the sighting; a responder confirms it; a dispatcher approves the alert.
Each person gets it once, on the right channel: the WhatsApp-only and the two-channel
people by the approved template, the SMS-only one by SMS, the Spanish reader as free
text, which WhatsApp refuses outside its 24-hour window (63016): that delivery is failed
with its reason. A STOP on WhatsApp afterwards leaves the SMS alerts on.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from flask import Flask
from sqlalchemy import select

from dispatch.services import Services
from rapidresponse.models import (
    Alert,
    AlertStatus,
    Channel,
    Delivery,
    DeliveryStatus,
    Incident,
    Report,
    ReportChannel,
    StaffRole,
    Subscriber,
    SubscriberStatus,
)
from tests.dispatch.test_drills_e2e import production, staff_client, work
from tests.factories import add_on_shift_responder
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import PUBLIC_URL, Phone, new_sid, send, sign
from tests.web.staff_helpers import post_form
from tests.web.test_reports_sms import lents_point

pytestmark = [pytest.mark.slow, pytest.mark.sends_through_api]

WHATSAPP_SENDER = "+15035550199"
TEMPLATE_SID = "HX" + "5e" * 16
ANA = "+15035550111"  # the Lents responder
WA_ONLY, SMS_ONLY, BOTH, WA_SPANISH = (
    "+15035550181",
    "+15035550182",
    "+15035550183",
    "+15035550184",
)
REPORTER = "+15035550190"


@pytest.fixture
def environ(environ: dict[str, str], fake: FakeTwilio) -> dict[str, str]:
    return {**production(environ, fake), "WHATSAPP_FROM": WHATSAPP_SENDER}


def status_callback(app: Flask, delivery_id: int | str, sid: str, status: str, code: int) -> int:
    params = {"MessageSid": sid, "MessageStatus": status, "ErrorCode": str(code)}
    url = f"{PUBLIC_URL}/sms/status?delivery={delivery_id}"
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    answer = client.post(
        f"/sms/status?delivery={delivery_id}",
        data=params,
        headers={"X-Twilio-Signature": sign(params, url)},
    )
    return answer.status_code


def deliveries(services: Services) -> dict[str, Delivery]:
    """The alert's deliveries by the number they are for."""
    numbers = {services.index.digest(n, "phone"): n for n in (WA_ONLY, SMS_ONLY, BOTH, WA_SPANISH)}
    with services.database.session() as session:
        found = session.execute(
            select(Delivery, Subscriber.phone_index).join(
                Subscriber, Subscriber.id == Delivery.subscriber_id
            )
        ).all()
        for delivery, _ in found:
            session.expunge(delivery)
    return {numbers[key]: delivery for delivery, key in found}


def test_a_confirmed_alert_reaches_each_person_once_on_their_channel(
    twilio_services: Services, sms_app: Flask, fake: FakeTwilio, cli_env: dict[str, str]
) -> None:
    services = twilio_services
    assert services.settings.is_production and services.settings.whatsapp_from
    add_on_shift_responder(services, "Ana", ANA, "lents")
    client = sms_app.test_client

    def phone(number: str, on_whatsapp: bool) -> Phone:
        return Phone(client(), f"whatsapp:{number}" if on_whatsapp else number)

    for number, on_whatsapp, join, yes in (
        (WA_ONLY, True, "JOIN Lents", "YES"),
        (SMS_ONLY, False, "JOIN Lents", "YES"),
        (BOTH, False, "JOIN Lents", "YES"),
        (BOTH, True, "JOIN Lents", "YES"),
        (WA_SPANISH, True, "UNIRSE Lents", "SI"),
    ):
        assert phone(number, on_whatsapp).text(join) is not None
        assert phone(number, on_whatsapp).text(yes) is not None

    # A coordinator enters the approved English template on the templates page.
    coordinator = staff_client(sms_app, services, StaffRole.COORDINATOR)
    page = coordinator.get("/whatsapp/templates").get_data(as_text=True)
    saved = post_form(
        coordinator,
        "/whatsapp/templates/alert/en",
        {"content_sid": TEMPLATE_SID, "status": "approved"},
        page,
    )
    assert saved.status_code == 303

    # A WhatsApp pin with no words: a located report, answered on WhatsApp.
    latitude, longitude = lents_point()
    pinned = send(
        client(),
        {
            "From": f"whatsapp:{REPORTER}",
            "MessageSid": new_sid(),
            "Body": "",
            "Latitude": latitude,
            "Longitude": longitude,
        },
    )
    assert pinned.status_code == 200
    with services.database.session() as session:
        report = session.scalars(select(Report)).one()
        assert report.channel is ReportChannel.WHATSAPP
        assert report.area is not None and report.area.slug == "lents"
    work(cli_env)  # pages Ana
    with services.database.session() as session:
        incident_code = session.scalars(select(Incident)).one().code
    ana = Phone(client(), ANA)
    assert ana.text(f"{incident_code} GO") is not None
    assert ana.text(f"{incident_code} CONFIRM agents at the corner") is not None
    work(cli_env)  # drafts the alert
    fake.reset()

    # The dispatcher sees who goes by which channel, and approves.
    with services.database.session() as session:
        alert = session.scalars(select(Alert)).one()
        assert alert.status is AlertStatus.DRAFT
        alert_id = alert.id
    dispatcher = staff_client(sms_app, services, StaffRole.DISPATCHER)
    page = dispatcher.get(f"/board/alerts/{alert_id}").get_data(as_text=True)
    assert "By SMS: 1 person." in page
    assert "By WhatsApp, with its approved template: 2 people." in page
    assert "On WhatsApp only, with no approved template in their language: 1 person." in page
    approved = post_form(dispatcher, f"/board/alerts/{alert_id}/approve", {}, page)
    assert approved.status_code in (302, 303), approved.get_data(as_text=True)
    work(cli_env)

    sent = [r for r in fake.requests if r.method == "POST"]
    by_number = Counter((r.value("To") or "").removeprefix("whatsapp:") for r in sent)
    assert by_number == {WA_ONLY: 1, SMS_ONLY: 1, BOTH: 1, WA_SPANISH: 1}  # once each
    to = {r.value("To"): r for r in sent}
    assert set(to) == {
        f"whatsapp:{WA_ONLY}",
        SMS_ONLY,
        f"whatsapp:{BOTH}",
        f"whatsapp:{WA_SPANISH}",
    }
    for number in (WA_ONLY, BOTH):
        templated = to[f"whatsapp:{number}"]
        assert templated.value("From") == f"whatsapp:{WHATSAPP_SENDER}"
        assert templated.value("ContentSid") == TEMPLATE_SID and templated.value("Body") is None
        [text] = json.loads(templated.value("ContentVariables") or "").values()
        assert text.startswith("ALERT")
    assert (to[SMS_ONLY].value("Body") or "").startswith("ALERT")
    free_text = to[f"whatsapp:{WA_SPANISH}"]
    assert free_text.value("ContentSid") is None
    assert (free_text.value("Body") or "").startswith("ALERTA")

    # WhatsApp refuses the free text: outside the window, no template (63016).
    [refused] = [m for m in fake.messages if m.to == f"whatsapp:{WA_SPANISH}"]
    ledger = deliveries(services)
    assert status_callback(sms_app, ledger[WA_SPANISH].id, refused.sid, "failed", 63016) == 200
    work(cli_env)  # applies the queued callback
    ledger = deliveries(services)
    assert (ledger[WA_SPANISH].status, ledger[WA_SPANISH].error_code) == (
        DeliveryStatus.FAILED,
        "63016",
    )
    assert {n: d.channel for n, d in ledger.items()} == {
        WA_ONLY: Channel.WHATSAPP,
        SMS_ONLY: Channel.SMS,
        BOTH: Channel.WHATSAPP,
        WA_SPANISH: Channel.WHATSAPP,
    }
    assert all(d.status is DeliveryStatus.SENT for n, d in ledger.items() if n != WA_SPANISH)
    assert not [r for r in fake.requests if r.method == "POST" and r not in sent]  # no resend

    # STOP on WhatsApp leaves the SMS alerts on.
    assert phone(BOTH, on_whatsapp=True).text("STOP") is not None
    with services.database.session() as session:
        both = session.scalars(
            select(Subscriber).where(Subscriber.phone_index == services.index.digest(BOTH, "phone"))
        ).one()
        assert both.whatsapp_status is SubscriberStatus.OPTED_OUT
        assert both.status is SubscriberStatus.ACTIVE
