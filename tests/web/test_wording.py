"""The alert wording page: a coordinator rewords a message in one language, sees what
every kind would cost with it before saving, and the next alert drafted uses it."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from dispatch.alerts import draft_for_incident
from dispatch.services import Services
from rapidresponse import broadcast
from rapidresponse.models import Alert, AuditEvent, Incident, IncidentState, StaffRole
from tests.web.staff_helpers import add_account, post_form, sign_in
from tests.web.test_access import World
from tests.web.test_board import cully_id

LONGER = (
    "ALERTA URGENTE DE LA RED: agentes migratorios confirmados por un respondedor en {areas} "
    "a las {time}, quedese adentro y avise a sus vecinos"
)


@pytest.fixture
def coordinator(app: Flask, services: Services, world: World) -> FlaskClient:
    client = app.test_client()
    sign_in(client, services, add_account(services, StaffRole.COORDINATOR))
    return client


def cost_of(page: str, language: str, kind: str) -> str:
    """The segments shown for an alert kind in ``language``."""
    return _segments(page, f'data-kind="{kind}" data-language="{language}"[^>]*>', kind)


def reply_cost_of(page: str, language: str, message_id: str) -> str:
    """The segments shown for a hotline answer (RIGHTS...) in ``language``."""
    opening = f'data-language="{language}" data-message="{re.escape(message_id)}">'
    return _segments(page, opening, message_id)


def _segments(page: str, opening: str, what: str) -> str:
    found = re.search(opening + r'.*?<span class="segments">(.*?)</span>', page, re.DOTALL)
    assert found, f"no cost for {what}"
    return found.group(1)


def test_a_check_shows_the_cost_before_saving_and_a_save_is_used_by_the_next_alert(
    coordinator: FlaskClient, services: Services, world: World
) -> None:
    page = coordinator.get("/wording?lang=es").get_data(as_text=True)
    assert cost_of(page, "es", "alert") == "1 segmento"
    path = "/wording/es/alert.alert"
    checked = post_form(coordinator, path, {"text": LONGER, "action": "check"}, page)
    assert checked.status_code == 200
    shown = checked.get_data(as_text=True)
    assert cost_of(shown, "es", "alert") == "2 segmentos"
    assert "más largo que su presupuesto" in shown
    with services.database.session() as session:
        assert (
            session.scalars(select(AuditEvent).where(AuditEvent.action == "wording.changed")).all()
            == []
        )
    cully = cully_id(services)
    saved = post_form(coordinator, path, {"text": LONGER, "action": "save"}, page)
    assert saved.status_code == 303
    with services.database.session() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "wording.changed")
        ).one()
        assert event.details == {"message": "alert.alert"} and "ALERTA" not in str(event.details)
        incident = Incident(code="W2D3", state=IncidentState.CONFIRMED, area_id=cully)
        session.add(incident)
        session.flush()
        incident_id = incident.id
    alert_id = draft_for_incident(services, incident_id)
    assert alert_id is not None
    with services.database.session() as session:
        texts = broadcast.texts_of(services.cipher, session.get_one(Alert, alert_id))
    assert texts["es"].startswith("ALERTA URGENTE DE LA RED: agentes migratorios confirmados")
    assert texts["en"].startswith("ALERT: immigration agents confirmed in Cully")
    # An empty text goes back to the default.
    post_form(coordinator, path, {"text": "", "action": "save"}, page)
    page = coordinator.get("/wording?lang=es").get_data(as_text=True)
    assert cost_of(page, "es", "alert") == "1 segmento"


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("ALERTA en {areas}", "Keep the placeholders of the default text"),
        ("ALERTA en {areas} a las {time} para {nombre}", "Keep the placeholders"),
        ("ALERTA {areas {time}", "Braces are only for the placeholders"),
        ("x" * 10_000, "A wording is 1 to 300 characters."),
    ],
)
def test_a_wording_that_would_break_the_alert_is_refused_and_kept_in_the_field(
    coordinator: FlaskClient, text: str, refusal: str
) -> None:
    page = coordinator.get("/wording").get_data(as_text=True)
    response = post_form(
        coordinator, "/wording/es/alert.alert", {"text": text, "action": "save"}, page
    )
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert refusal in body and text[:200] in body


@pytest.mark.parametrize("path", ["/wording/xx/alert.alert", "/wording/es/sms.help"])
def test_an_unknown_language_or_message_is_a_404(coordinator: FlaskClient, path: str) -> None:
    page = coordinator.get("/wording").get_data(as_text=True)
    assert post_form(coordinator, path, {"text": "x", "action": "save"}, page).status_code == 404


def test_a_coordinator_rewords_a_rights_answer_and_sees_its_cost_first(
    coordinator: FlaskClient, services: Services
) -> None:
    page = coordinator.get("/wording?lang=es").get_data(as_text=True)
    for topic in ("", "_home", "_car", "_work", "_street", "_more"):
        assert reply_cost_of(page, "es", f"sms.rights{topic}") == "1 segmento"
    path = "/wording/es/sms.rights_car"
    longer = "En el carro: " + "quien maneja muestra licencia si se la piden; " * 4
    checked = post_form(coordinator, path, {"text": longer, "action": "check"}, page)
    assert reply_cost_of(checked.get_data(as_text=True), "es", "sms.rights_car") == "2 segmentos"
    with services.database.session() as session:  # a check stores nothing
        assert (
            session.scalar(select(AuditEvent.id).where(AuditEvent.action == "wording.changed"))
            is None
        )
    # RIGHTS MORE must keep its {url}.
    refused = post_form(
        coordinator, "/wording/es/sms.rights_more", {"text": "Todo", "action": "save"}, page
    )
    assert refused.status_code == 400
    shorter = "En el carro: muestre licencia si se la piden. Puede callar. No consienta revisiones."
    saved = post_form(coordinator, path, {"text": shorter, "action": "save"}, page)
    assert saved.status_code == 303
    page = coordinator.get("/wording?lang=es").get_data(as_text=True)
    assert "La línea contesta así desde ahora." in page


@pytest.mark.parametrize(
    ("lang", "heading", "topic", "trainings"),
    [
        ("en", "Know your rights", "At home:", "Trainings: ask the people"),
        ("es", "Conozca sus derechos", "En casa:", "Talleres: pregunte"),
    ],
)
def test_the_public_rights_page_shows_every_topic_and_the_trainings(
    app: Flask, lang: str, heading: str, topic: str, trainings: str
) -> None:
    page = app.test_client().get(f"/rights?lang={lang}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert heading in html and topic in html and trainings in html
    assert "RIGHTS HOME" not in html  # the list of topics is for SMS; the page has them all
    assert not re.search(r'(src|href)="https?://', html)  # nothing from another site


def test_the_rights_page_shows_the_trainings_a_coordinator_set(
    app: Flask, coordinator: FlaskClient
) -> None:
    page = coordinator.get("/wording").get_data(as_text=True)
    dates = "Next training: Saturday 12 December, 2 PM, Cully community center."
    saved = post_form(
        coordinator, "/wording/en/rights.trainings", {"text": dates, "action": "save"}, page
    )
    assert saved.status_code == 303
    assert dates in app.test_client().get("/rights?lang=en").get_data(as_text=True)
