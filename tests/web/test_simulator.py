"""The simulator backend: an outbox the web UI shows, sealed like everything else."""

from __future__ import annotations

import re

import pytest
from flask.testing import FlaskClient
from sqlalchemy.engine import make_url
from werkzeug.test import TestResponse

from dispatch.senders import SimulatorSender
from dispatch.services import Services
from tests.factories import ALICE

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
