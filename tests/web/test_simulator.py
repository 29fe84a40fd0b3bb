"""The simulator backend: an outbox the web UI shows, sealed like everything else."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer
from sqlalchemy.engine import make_url
from werkzeug.test import TestResponse

from dispatch.queues import QueueName, queue
from dispatch.senders import REPORT_JOB, SimulatorSender
from dispatch.services import Services
from dispatch.simulator import report_delivery
from rapidresponse.models import Delivery, DeliveryStatus, Language
from tests.factories import ALICE, add_alert_for, add_subscriber
from tests.web.sms_helpers import BETO
from web.demo import demo_cast

WELCOME = "Bienvenida a la red: responda SI para confirmar"


def test_sent_messages_appear_in_the_outbox_masked(client: FlaskClient, services: Services) -> None:
    assert isinstance(services.sender.inner, SimulatorSender)
    sid = services.sender.send(ALICE, WELCOME)
    assert sid.startswith("SM") and len(sid) == 34
    page = client.get("/simulator/outbox").get_data(as_text=True)
    assert WELCOME in page
    assert "•••-0142" in page
    assert "5550142" not in page


def test_the_outbox_is_sealed_on_disk(services: Services) -> None:
    services.sender.send(ALICE, WELCOME)
    database_file = make_url(services.database.url).database
    if services.database.dialect != "sqlite" or not database_file:
        return  # PostgreSQL: the same columns are sealed; the file check is SQLite's
    services.database.dispose()  # flush the WAL into the main file
    with open(database_file, "rb") as handle:
        raw = handle.read()
    assert b"5550142" not in raw
    assert b"Bienvenida" not in raw


def test_the_outbox_is_absent_with_twilio(services: Services) -> None:
    from web import create_app

    twilio_settings = services.settings.__class__(
        **{
            **services.settings.__dict__,
            "sms_backend": "twilio",
            "twilio_account_sid": "AC" + "1" * 32,
            "twilio_auth_token": "t",
            "twilio_from": "+15035550100",
        }
    )
    services.settings = twilio_settings
    app = create_app(services=services, test_config={"TESTING": True})
    assert app.test_client().get("/simulator/outbox").status_code == 404


def outbox_bodies(client: FlaskClient) -> str:
    return client.get("/simulator/outbox").get_data(as_text=True)


def text_hotline(client: FlaskClient, sender: str, body: str) -> TestResponse:
    """Post the outbox page's form, with the CSRF token the page carries."""
    page = outbox_bodies(client)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    return client.post(
        "/simulator/inbound",
        data={"From": sender, "Body": body, "csrf_token": token.group(1)},
        headers={"Accept": "application/json"},
    )


def test_texting_the_simulated_hotline_uses_the_same_handler(
    client: FlaskClient, services: Services
) -> None:
    from rapidresponse.areas import import_areas
    from rapidresponse.regions import demo_region_path, load_region_file

    with services.database.session() as session:
        import_areas(session, load_region_file(demo_region_path()), "Portland")
    response = text_hotline(client, "503-555-0142", "UNIRSE Cully")
    assert response.status_code == 200 and response.json == {"answered": True}
    assert "Responda SI para recibir alertas de Cully." in outbox_bodies(client)


def test_the_simulator_honours_opt_out_like_twilio(client: FlaskClient, services: Services) -> None:
    text_hotline(client, ALICE, "STOP")
    page = outbox_bodies(client)
    assert page.count("You are unsubscribed") == 1
    response = text_hotline(client, ALICE, "HELP")
    assert response.json == {"answered": False}
    assert "Rapid Response alerts. Text JOIN" not in outbox_bodies(client)


@pytest.mark.parametrize("sender", ["", "abc", "12"])
def test_the_simulator_refuses_a_bad_number(client: FlaskClient, sender: str) -> None:
    response = text_hotline(client, sender, "HELP")
    assert response.status_code == 400


def test_the_simulator_form_needs_its_csrf_token(client: FlaskClient, services: Services) -> None:
    response = client.post("/simulator/inbound", data={"From": ALICE, "Body": "STOP"})
    assert response.status_code == 400
    assert "unsubscribed" not in outbox_bodies(client)


def test_the_form_returns_to_the_outbox(client: FlaskClient) -> None:
    page = outbox_bodies(client)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    response = client.post(
        "/simulator/inbound",
        headers={"Accept": "text/html"},
        data={"From": ALICE, "Body": "HELP", "csrf_token": token.group(1)},
    )
    assert response.status_code == 303 and response.headers["Location"] == "/simulator/outbox"
    assert "Rapid Response alerts." in outbox_bodies(client)


def test_there_is_no_simulator_in_production(services: Services) -> None:
    from dataclasses import replace

    from web import create_app

    services.settings = replace(services.settings, env="production")
    app = create_app(services=services, test_config={"TESTING": True})
    assert app.test_client().get("/simulator/outbox").status_code == 404
    assert app.test_client().post("/simulator/inbound").status_code == 404


# --- the simulator phone: a conversation, as a phone shows it ------------------------------


def phone_page(client: FlaskClient, sender: str, body: str = "") -> str:
    page = client.get("/simulator/phone").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    response = client.post(
        "/simulator/phone", data={"From": sender, "Body": body, "csrf_token": token.group(1)}
    )
    assert response.status_code == 200
    return response.get_data(as_text=True)


def bubbles(page: str) -> list[tuple[str, str, str]]:
    """(who, text, time) of each bubble, top to bottom."""
    bubble = r'<span class="who">(\w+)</span>\s*<pre class="sms">(.*?)</pre>\s*<time[^>]*>([^<]+)<'
    return re.findall(bubble, page, re.DOTALL)


def test_the_phone_shows_both_sides_oldest_first_in_local_time(
    client: FlaskClient, services: Services
) -> None:
    phone_page(client, ALICE, "HELP")
    page = phone_page(client, ALICE, "RIGHTS")
    conversation = bubbles(page)
    assert [who for who, _text, _at in conversation] == ["Me", "Hotline", "Me", "Hotline"]
    assert conversation[0][1] == "HELP" and conversation[2][1] == "RIGHTS"
    assert "Rapid Response alerts" in conversation[1][1]
    local_now = datetime.now(ZoneInfo(services.settings.timezone))
    shown = datetime.strptime(conversation[-1][2], "%H:%M:%S")
    minutes_apart = abs(shown.hour * 60 + shown.minute - (local_now.hour * 60 + local_now.minute))
    assert min(minutes_apart, 24 * 60 - minutes_apart) <= 1  # TIMEZONE's clock, not UTC's
    assert (
        "HELP" not in outbox_bodies(client).split("<tbody>")[-1]
    )  # what phones sent is not outbox


def test_the_phone_offers_a_button_for_each_demo_person(client: FlaskClient) -> None:
    page = client.get("/simulator/phone").get_data(as_text=True)
    for _role, person in demo_cast():
        assert f'data-phone="{person.phone}"' in page and person.name in page


def test_one_number_never_sees_another_numbers_conversation(client: FlaskClient) -> None:
    phone_page(client, ALICE, "HELP")
    page = phone_page(client, BETO)
    assert bubbles(page) == [] and "HELP" not in page


# --- delivery reports, as Twilio would send them ---------------------------------------------


def simulated_reports(services: Services) -> list[tuple[Any, ...]]:
    registry = ScheduledJobRegistry(queue=queue(QueueName.REPLIES, services.redis))
    jobs = [
        Job.fetch(job_id, services.redis, serializer=JSONSerializer)
        for job_id in registry.get_job_ids()
    ]
    return [tuple(job.args) for job in jobs if job.func_name == REPORT_JOB]


@pytest.mark.parametrize(
    ("number", "final", "error"),
    [
        (ALICE, DeliveryStatus.DELIVERED, None),
        ("+15035550149", DeliveryStatus.FAILED, "30003"),
    ],
)
def test_a_tracked_send_reports_sent_then_its_outcome(
    services: Services, number: str, final: DeliveryStatus, error: str | None
) -> None:
    ledger = add_alert_for(services, add_subscriber(services, number), Language.EN)
    sender = SimulatorSender(services.database, services.cipher, services.index, services.redis)
    sid = sender.send(number, "ALERT Cully", callback_id=str(ledger.delivery_id))
    reports = simulated_reports(services)
    assert sorted(stage for *_ids, stage in reports) == ["final", "sent"]
    assert all(str(ledger.delivery_id) in args and number not in args for args in reports)

    for args in sorted(reports, key=lambda a: a[-1] != "sent"):  # 'sent' first, as scheduled
        report_delivery(*args)
        with services.database.session() as session:
            delivery = session.get_one(Delivery, ledger.delivery_id)
            assert delivery.provider_sid == sid
            status, code = delivery.status, delivery.error_code
        if args[-1] == "sent":
            assert status == DeliveryStatus.SENT
    assert (status, code) == (final, error)


def test_an_untracked_reply_gets_no_delivery_reports(services: Services) -> None:
    SimulatorSender(services.database, services.cipher, services.index, services.redis).send(
        ALICE, "Reply YES"
    )
    assert simulated_reports(services) == []
