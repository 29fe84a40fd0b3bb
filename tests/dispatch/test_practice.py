"""PRACTICE: a responder rehearses a page on the real hotline; nothing reaches anyone else,
a real dispatch always comes first, and the times are told and kept."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from dispatch.services import Services
from rapidresponse.models import (
    Alert,
    Dispatch,
    Incident,
    Practice,
    Report,
    Verdict,
)
from rapidresponse.practice import spoken
from tests.dispatch.test_verification_rules import ANA, SIGHTING, only_incident, page_everyone
from tests.factories import add_on_shift_responder
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import Phone

pytestmark = pytest.mark.sends_through_api


@pytest.fixture
def ana(twilio_services: Services, sms_app: Flask) -> Phone:
    add_on_shift_responder(twilio_services, "Ana", ANA, "cully")
    return Phone(sms_app.test_client(), ANA)


def code_in(answer: str | None) -> str:
    assert answer is not None
    found = re.search(r"Reply (\w+) GO|Responda (\w+) VOY", answer)
    assert found, answer
    return found.group(1) or found.group(2)


def rows(services: Services, model: type) -> int:
    with services.database.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def backdate(services: Services, seconds: int) -> None:
    """As if the practice's page (and its GO) came ``seconds`` earlier."""
    with services.database.session() as session:
        for practice in session.scalars(select(Practice)):
            practice.started_at -= timedelta(seconds=seconds)
            if practice.go_at is not None:
                practice.go_at -= timedelta(seconds=seconds)


def test_a_responder_practises_a_page_and_is_told_their_times(
    ana: Phone, twilio_services: Services, fake: FakeTwilio
) -> None:
    page = ana.text("PRACTICE")
    assert page is not None and page.startswith("PRACTICE, not real:") and "Cully" in page
    code = code_in(page)
    assert ana.text(f"{code} CONFIRM two vans").startswith(f"Practice {code}: first reply")
    backdate(twilio_services, 40)
    went = ana.text("GO")
    assert went == (
        f"Practice {code}: GO after 40 s. Now reply {code} CONFIRM, FALSE or UNCLEAR "
        "as if you were there."
    )
    backdate(twilio_services, 90)
    done = ana.text(f"{code} CONFIRM two vans, agents in vests")
    assert done is not None
    assert done.startswith(f"Practice {code} done: GO after 40 s, verdict after 2 min 10 s")
    with twilio_services.database.session() as session:
        kept = session.scalars(select(Practice)).one()
        assert kept.verdict is Verdict.CONFIRM and kept.go_at and kept.verdict_at
    # Nothing real was made, and nobody else heard of it.
    for model in (Incident, Report, Dispatch, Alert):
        assert rows(twilio_services, model) == 0, model.__name__
    assert all(message["To"] == ANA for message in fake.messages)
    over = ana.text("GO")  # the practice is over: nothing is waiting
    assert over is not None and over.startswith("We found no open dispatch for you.")


def test_practicar_in_spanish(ana: Phone) -> None:
    page = ana.text("PRACTICAR")
    assert page is not None and page.startswith("PRACTICA, no es real:")
    code = code_in(page)
    went = ana.text(f"{code} VOY")
    assert went is not None and went.startswith(f"Practica {code}: VOY a los")
    done = ana.text(f"{code} FALSO")
    assert done is not None and done.startswith(f"Practica {code} terminada")


def test_a_real_dispatch_comes_before_a_practice(
    ana: Phone, twilio_services: Services, sms_app: Flask
) -> None:
    code = code_in(ana.text("PRACTICE"))
    Phone(sms_app.test_client(), "+15035550142").text(SIGHTING)
    incident = only_incident(twilio_services)
    page_everyone(twilio_services, incident.id)
    real = ana.text("GO")  # no code: the real page, not the practice
    assert real is not None and incident.code in real and "Practice" not in real
    practised = ana.text(f"{code} GO")  # the practice, when named
    assert practised is not None and practised.startswith(f"Practice {code}: GO after")


def test_practice_is_a_report_from_someone_who_is_not_a_responder(
    sms_app: Flask, twilio_services: Services
) -> None:
    answer = Phone(sms_app.test_client(), "+15035550142").text("PRACTICE")
    assert answer is not None and answer.startswith("Report ")
    assert rows(twilio_services, Practice) == 0


@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0, "0 s"), (40, "40 s"), (130, "2 min 10 s"), (3780, "1 h 3 min"), (-5, "0 s")],
)
def test_times_are_said_as_people_say_them(seconds: int, said: str) -> None:
    assert spoken(timedelta(seconds=seconds)) == said


def test_the_coordinator_sees_each_practice_on_the_responders_page(
    ana: Phone, twilio_services: Services, sms_app: Flask
) -> None:
    from rapidresponse.models import Responder, StaffRole
    from tests.web.staff_helpers import add_account, sign_in

    code = code_in(ana.text("PRACTICE"))
    backdate(twilio_services, 40)
    ana.text(f"{code} GO")
    backdate(twilio_services, 90)
    ana.text(f"{code} FALSE police, not ICE")
    ana.text("PRACTICE")  # a second one, never answered
    coordinator = sms_app.test_client()
    sign_in(coordinator, twilio_services, add_account(twilio_services, StaffRole.COORDINATOR))
    with twilio_services.database.session() as session:
        responder_id = session.scalars(select(Responder.id)).one()
    page = coordinator.get(f"/people/responders/{responder_id}").get_data(as_text=True)
    practices = page.split('id="practices"')[1]
    assert "no answer" in practices  # the newest, first
    assert "40 s" in practices and "2 min 10 s" in practices and "false alarm" in practices
    assert "police" not in page  # a practice keeps no text
    es = coordinator.get(f"/people/responders/{responder_id}?lang=es").get_data(as_text=True)
    assert "Práctica" in es and "sin respuesta" in es and "falsa alarma" in es
