"""The announcements page: a coordinator writes one for some areas or all, and sees how
many it reached and the answers counted — in words, in English and Spanish."""

from __future__ import annotations

from dataclasses import replace

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from dispatch.queues import QueueName, queue
from dispatch.services import Services
from rapidresponse.models import Alert, AlertKind, StaffRole, Subscriber, utcnow
from tests.web.staff_helpers import add_account, post_form, sign_in
from tests.web.test_access import World


@pytest.fixture
def coordinator(app: Flask, services: Services, world: World) -> FlaskClient:
    services.settings = replace(services.settings, quiet_hours=None)
    with services.database.session() as session:  # the world's subscribers take news
        for person in session.scalars(select(Subscriber)):
            person.news_consent_at = utcnow()
    client = app.test_client()
    sign_in(client, services, add_account(services, StaffRole.COORDINATOR))
    return client


def write(client: FlaskClient, **form: object) -> str:
    page = client.get("/announcements").get_data(as_text=True)
    response = post_form(client, "/announcements", form, page)
    assert response.status_code == 303
    return client.get("/announcements").get_data(as_text=True)


def test_a_coordinator_sends_an_announcement_and_sees_its_answers(
    coordinator: FlaskClient, services: Services
) -> None:
    page = coordinator.get("/announcements").get_data(as_text=True)
    assert 'id="announcement-form"' in page and "3 people take announcements now." in page
    shown = write(
        coordinator,
        text_en="Training Saturday 10am at the library",
        text_es="Taller el sabado a las 10 en la biblioteca",
        asks_rsvp="1",
    )
    assert "It is going out to 3 people." in shown
    assert "Training Saturday 10am at the library" in shown and "all areas" in shown
    assert "0 said yes · 0 said no" in shown
    with services.database.session() as session:
        alert = session.scalars(select(Alert).where(Alert.kind == AlertKind.ANNOUNCEMENT)).one()
        assert alert.asks_rsvp and alert.recipient_count == 3
        assert (
            alert.texts["es"].startswith("Taller el sabado") and "NOTICIAS NO" in alert.texts["es"]
        )
    assert queue(QueueName.BULK, services.redis).count >= 1  # behind alerts and replies
    spanish = coordinator.get("/announcements?lang=es").get_data(as_text=True)
    assert "0 dijeron que sí · 0 dijeron que no" in spanish and "todas las zonas" in spanish


@pytest.mark.parametrize(
    ("form", "said"),
    [
        ({"text_en": "", "text_es": "Taller"}, "Write the announcement in English at least."),
        ({"text_en": "x" * 10_000}, "An announcement is at most 300 characters."),
        ({"text_en": "Meeting", "area_ids": "999999"}, "One of those areas no longer exists"),
        ({"text_en": "Meeting", "area_ids": "nonsense"}, "It is going out to 3 people."),
    ],
)
def test_what_cannot_be_sent_is_said_in_words(
    coordinator: FlaskClient, services: Services, form: dict[str, str], said: str
) -> None:
    assert said in write(coordinator, **form)
    sent = 1 if said.startswith("It is going") else 0
    with services.database.session() as session:
        assert (
            len(session.scalars(select(Alert).where(Alert.kind == AlertKind.ANNOUNCEMENT)).all())
            == sent
        )


def test_in_the_quiet_hours_the_page_says_when_it_goes(
    coordinator: FlaskClient, services: Services
) -> None:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    local = datetime.now(ZoneInfo(services.settings.timezone))
    quiet = ((local - timedelta(hours=1)).time(), (local + timedelta(hours=1)).time())
    services.settings = replace(services.settings, quiet_hours=quiet)
    shown = write(coordinator, text_en="Meeting tomorrow")
    assert "It goes to 3 people when the quiet hours end, at" in shown
    assert "waits for the end of the quiet hours" in shown
    assert queue(QueueName.BULK, services.redis).count == 0
