"""The simulator phone's WhatsApp mode: the same webhook code as Twilio's WhatsApp
messages (words, location pins, quick-reply buttons), a conversation of its own, and the
24-hour window in which the hotline may answer freely shown."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update

from dispatch.broadcast import send_batch, whatsapp_batch
from dispatch.services import Services
from dispatch.simulator import report_delivery
from rapidresponse import broadcast
from rapidresponse.areas import find_area, import_areas
from rapidresponse.models import (
    AlertKind,
    Delivery,
    DeliveryStatus,
    OutboxMessage,
    Report,
    ReportChannel,
    utcnow,
)
from rapidresponse.regions import demo_region_path, load_region_file
from tests.factories import ALICE
from tests.web.test_simulator import bubbles

SIGHTING = "ICE van and 4 agents at the corner"


@pytest.fixture(autouse=True)
def region(services: Services) -> None:
    with services.database.session() as session:
        import_areas(session, load_region_file(demo_region_path()), "Portland")


def whatsapp(client: FlaskClient, **form: str) -> str:
    page = client.get("/simulator/phone?channel=whatsapp").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    response = client.post(
        "/simulator/phone",
        data={"From": ALICE, "channel": "whatsapp", "csrf_token": token.group(1), **form},
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


def reports(services: Services) -> list[Report]:
    with services.database.session() as session:
        found = list(session.scalars(select(Report).order_by(Report.id)))
        session.expunge_all()
    return found


def test_a_whatsapp_report_is_a_sighting_in_a_conversation_of_its_own(
    client: FlaskClient, services: Services
) -> None:
    page = whatsapp(client, Body=SIGHTING)
    [report] = reports(services)
    assert report.channel is ReportChannel.WHATSAPP
    said = bubbles(page)
    assert [who for who, _text, _at in said] == ["Me", "Hotline"]
    assert said[1][1].startswith(f"Report {report.code} received")
    assert 'class="conversation whatsapp"' in page and 'id="whatsapp-window"' in page
    # The SMS conversation of the same number is another one: empty.
    sms = client.post(
        "/simulator/phone",
        data={"From": ALICE, "csrf_token": re.findall(r'value="([^"]+)"', page)[0]},
    ).get_data(as_text=True)
    assert bubbles(sms) == []


def test_a_pin_with_no_words_is_a_located_report(client: FlaskClient, services: Services) -> None:
    page = client.get("/simulator/phone?channel=whatsapp").get_data(as_text=True)
    lents = re.search(r'<option value="([-0-9.,]+)">Lents</option>', page)
    assert lents is not None
    shown = whatsapp(client, Body="", pin=lents.group(1))
    [report] = reports(services)
    with services.database.session() as session:
        placed = session.get_one(Report, report.id)
        assert placed.area is not None and placed.area.slug == "lents"
    assert bubbles(shown)[0][1].startswith("📍 ")


def test_a_quick_reply_button_sends_its_payload(client: FlaskClient, services: Services) -> None:
    whatsapp(client, Body="JOIN Cully")
    page = whatsapp(client, ButtonPayload="YES")
    said = bubbles(page)
    assert said[-2][1] == "YES"
    # The simulator has a WhatsApp sender: the button's YES confirms the WhatsApp JOIN.
    assert said[-1][1].startswith("Confirmed: you will get alerts for Cully.")
    assert reports(services) == []  # a button is never a report


def test_an_empty_message_sends_nothing_and_a_bad_channel_is_sms(client: FlaskClient) -> None:
    assert bubbles(whatsapp(client, Body="   ")) == []
    page = client.get("/simulator/phone?channel=telegram").get_data(as_text=True)
    assert 'aria-current="page" class="current" id="channel-sms"' in page


def test_an_alert_to_a_whatsapp_subscriber_lands_in_the_whatsapp_conversation(
    client: FlaskClient, services: Services
) -> None:

    whatsapp(client, Body="JOIN Cully")
    whatsapp(client, Body="YES")
    send_cully_alert(services, "ALERT Cully test.")
    page = whatsapp(client, Body="")  # looking, not writing
    assert bubbles(page)[-1][1] == "ALERT Cully test."
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    sms = client.post(
        "/simulator/phone", data={"From": ALICE, "Body": "", "csrf_token": token.group(1)}
    ).get_data(as_text=True)
    assert bubbles(sms) == []  # by WhatsApp only: nobody twice


def test_outside_the_window_the_simulator_refuses_free_text_as_whatsapp_does(
    client: FlaskClient, services: Services
) -> None:
    whatsapp(client, Body="JOIN Cully")
    whatsapp(client, Body="YES")

    def alert_and_report() -> Delivery:
        alert_id = send_cully_alert(services, "ALERT Cully.")
        with services.database.session() as session:
            delivery = session.scalars(select(Delivery).where(Delivery.alert_id == alert_id)).one()
            outbox_id = session.scalar(
                select(OutboxMessage.id).where(OutboxMessage.sid == delivery.provider_sid)
            )
        assert outbox_id is not None
        report_delivery(outbox_id, str(delivery.id), "final")
        with services.database.session() as session:
            found = session.get_one(Delivery, delivery.id)
            session.expunge(found)
            return found

    assert alert_and_report().status is DeliveryStatus.DELIVERED  # they just wrote
    with services.database.session() as session:  # a day and more later
        session.execute(update(OutboxMessage).values(created_at=utcnow() - timedelta(hours=25)))
    refused = alert_and_report()
    assert (refused.status, refused.error_code) == (DeliveryStatus.FAILED, "63016")


def send_cully_alert(services: Services, text: str) -> int:
    """Approve an alert to Cully and send it, as the batch jobs do; its id."""
    with services.database.session() as session:
        cully = find_area(session, "cully")
        assert cully is not None
        alert = broadcast.draft(
            session, kind=AlertKind.ALERT, texts={"en": text}, area_ids=[cully.id]
        )
        approval = broadcast.approve(
            session,
            alert.id,
            now=utcnow(),
            validity=timedelta(minutes=30),
            batch=100,
            whatsapp_batch=whatsapp_batch(services.settings),
        )
    for batch in approval.enqueue_now:
        send_batch(approval.alert_id, batch)
    return approval.alert_id
