"""A new responder's welcome text: sent once, in their language, retried when the provider
stumbles, caught up by the sweep when Redis was down when they were added."""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select, update

from dispatch import incidents as jobs
from dispatch.queues import QueueName, queue
from dispatch.senders import SendError
from dispatch.services import Services
from dispatch.welcome import welcome_responder
from rapidresponse.areas import find_area
from rapidresponse.models import Language, Responder, StaffRole, utcnow
from rapidresponse.people import add_responder
from tests.twilio_fake import Answer, FakeTwilio
from tests.web.staff_helpers import add_account, post_form, sign_in
from tests.web.test_access import build_world

pytestmark = pytest.mark.sends_through_api

NUMBER = "+15035550177"


def new_responder(services: Services, language: Language = Language.ES) -> int:
    with services.database.session() as session:
        cully = find_area(session, "cully")
        assert cully is not None
        responder = add_responder(
            session,
            services.cipher,
            services.index,
            name="Lupe",
            phone_e164=NUMBER,
            areas=[cully],
            language=language,
        )
        return responder.id


def test_a_responder_added_on_the_people_page_is_welcomed_once_in_their_language(
    twilio_services: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    build_world(twilio_services)
    client = sms_app.test_client()
    sign_in(client, twilio_services, add_account(twilio_services, StaffRole.COORDINATOR))
    with twilio_services.database.session() as session:
        cully = find_area(session, "cully")
        assert cully is not None
    form = {"name": "Lupe", "phone": "503-555-0177", "area_ids": str(cully.id), "language": "es"}
    page = client.get("/people").get_data(as_text=True)
    assert post_form(client, "/people/responders", form, page).status_code == 303
    queued = queue(QueueName.REPLIES, twilio_services.redis).jobs
    [job] = [j for j in queued if j.func_name.endswith("welcome_responder")]
    [responder_id] = job.args
    assert welcome_responder(responder_id) == "welcomed"
    assert welcome_responder(responder_id) == "already welcomed"
    [welcome] = [m for m in fake.messages if m.to == NUMBER]
    assert welcome.body.startswith("Bienvenida/o al equipo de respuesta rapida, Lupe.")
    assert "ACTIVO" in welcome.body and "nunca siga, bloquee ni toque" in welcome.body


def test_a_welcome_the_provider_could_not_take_is_retried(
    twilio_services: Services, fake: FakeTwilio
) -> None:
    build_world(twilio_services)
    responder_id = new_responder(twilio_services, Language.EN)

    fake.policy = lambda _request: Answer.error(503)
    with pytest.raises(SendError):
        welcome_responder(responder_id)
    fake.policy = None
    assert welcome_responder(responder_id) == "welcomed"
    assert [m.body[:40] for m in fake.messages if m.to == NUMBER] == [
        "Welcome to the rapid response team, Lupe"
    ]


def test_the_sweep_welcomes_whoever_was_missed(twilio_services: Services) -> None:
    build_world(twilio_services)
    responder_id = new_responder(twilio_services)
    assert jobs.sweep_incidents()["welcomed"] == 0  # the job enqueued at adding has time
    with twilio_services.database.session() as session:
        session.execute(
            update(Responder)
            .where(Responder.id == responder_id)
            .values(created_at=utcnow() - timedelta(minutes=5))
        )
    assert jobs.sweep_incidents()["welcomed"] == 1
    with twilio_services.database.session() as session:  # the world's responder: none
        welcomed = session.scalars(select(Responder.welcomed_at).order_by(Responder.id)).all()
    assert welcomed[-1] is None  # not yet: the job is queued, not run
