"""Second waves: a report after an incident is decided is never absorbed in silence.

Real database and Redis, the SMS webhook through the app, jobs called in-process (as in
test_verification_rules); the browser test drives the same from the board.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from dispatch import incidents as jobs
from dispatch.alerts import approve_alert, draft_follow_up, draft_for_incident
from dispatch.board_actions import NotPossible, close_from_board, page_more
from dispatch.services import Services
from rapidresponse.board import board_incidents
from rapidresponse.models import (
    AlertKind,
    AuditEvent,
    Dispatch,
    Incident,
    IncidentState,
    Report,
    StaffRole,
    utcnow,
)
from rapidresponse.next_step import Step
from tests.dispatch.test_verification_rules import ANA, BEN, SIGHTING, dispatches, page_everyone
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import Phone
from tests.web.staff_helpers import add_account, sign_in

pytestmark = pytest.mark.sends_through_api

ALICE, CARLOS = "+15035550142", "+15035550143"
SECOND = "ICE back in Cully, two vans on 42nd"


@pytest.fixture
def responders(twilio_services: Services) -> Services:
    from tests.factories import add_on_shift_responder

    add_on_shift_responder(twilio_services, "Ana", ANA, "cully")
    add_on_shift_responder(twilio_services, "Ben", BEN, "cully")
    return twilio_services


def confirmed(services: Services, app: Flask) -> Incident:
    """A Cully incident Ana confirmed (its alert drafted, as the policy does)."""
    Phone(app.test_client(), ALICE).text(SIGHTING)
    with services.database.session() as session:
        first = session.scalars(select(Incident)).one()
    page_everyone(services, first.id)
    Phone(app.test_client(), ANA).text(f"{first.code} CONFIRM agentes en la 82 y Stark")
    with services.database.session() as session:
        incident = session.get_one(Incident, first.id)
        assert incident.state is IncidentState.CONFIRMED
        return incident


def incidents(services: Services) -> list[Incident]:
    with services.database.session() as session:
        return list(session.scalars(select(Incident).order_by(Incident.id)))


def staff_client(services: Services, app: Flask) -> FlaskClient:
    client = app.test_client()
    sign_in(client, services, add_account(services, StaffRole.DISPATCHER))
    return client


def page_text(client: FlaskClient, incident_id: int, language: str) -> str:
    """The incident page's text, tags dropped and spaces single."""
    html = client.get(f"/board/incidents/{incident_id}?lang={language}").text
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def send_all_clear(services: Services, incident_id: int) -> None:
    alert_id = draft_for_incident(services, incident_id)  # what the confirmation enqueued
    assert alert_id is not None
    approve_alert(services, alert_id)
    draft_follow_up(services, alert_id, AlertKind.ALL_CLEAR)


def test_a_report_soon_after_confirmation_corroborates_and_the_board_says_so(
    responders: Services, sms_app: Flask
) -> None:
    first = confirmed(responders, sms_app)
    Phone(sms_app.test_client(), CARLOS).text(SECOND)
    assert [i.id for i in incidents(responders)] == [first.id]
    with responders.database.session() as session:
        [summary] = board_incidents(session, responders.cipher, utcnow())
    assert summary.new_reports == 1 and summary.reports == 2
    # The board says it in words, singular then plural, in each language.
    staff = staff_client(responders, sms_app)
    assert "1 new report since it was decided." in page_text(staff, first.id, "en")
    assert "1 reporte nuevo desde que se decidió." in page_text(staff, first.id, "es")
    Phone(sms_app.test_client(), "+15035550144").text(SECOND)
    assert "2 new reports since it was decided." in page_text(staff, first.id, "en")
    assert "2 reportes nuevos desde que se decidió." in page_text(staff, first.id, "es")


def test_a_report_after_the_all_clear_opens_a_linked_incident_that_is_dispatched(
    responders: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    first = confirmed(responders, sms_app)
    send_all_clear(responders, first.id)
    answer = Phone(sms_app.test_client(), CARLOS).text(SECOND)
    assert answer is not None and answer.startswith("Report ")
    old, new = incidents(responders)
    assert (old.id, new.follows_id, new.area_id) == (first.id, first.id, first.area_id)
    assert new.state is IncidentState.REPORTED

    fake.reset()  # (``fake.messages`` is a copy: clearing it forgot nothing)
    page_everyone(responders, new.id)  # what incident_opened enqueued
    [paged] = fake.messages  # quorum 1: the first on shift, paged for the new incident
    assert paged.to == ANA and new.code in paged.body
    with responders.database.session() as session:
        summaries = {s.id: s for s in board_incidents(session, responders.cipher, utcnow())}
        second_wave = session.scalar(
            select(AuditEvent).where(AuditEvent.action == "incident.second_wave")
        )
        assert second_wave is not None and second_wave.details == {"follows": first.id}
    assert summaries[new.id].follows is not None
    assert summaries[new.id].follows.code == first.code
    assert [link.id for link in summaries[first.id].followed_by] == [new.id]
    assert summaries[new.id].next.step is Step.WAITING_GO
    staff = staff_client(responders, sms_app)
    assert f"Second wave: new reports after {first.code} (" in page_text(staff, new.id, "en")
    assert f"New reports came after this: {new.code} (" in page_text(staff, first.id, "en")
    assert f"Segunda ola: reportes nuevos después de {first.code} (" in page_text(
        staff, new.id, "es"
    )


def test_the_same_reporters_text_after_the_all_clear_is_a_new_report(
    responders: Services, sms_app: Flask
) -> None:
    first = confirmed(responders, sms_app)
    send_all_clear(responders, first.id)
    answer = Phone(sms_app.test_client(), ALICE).text(SECOND)  # Alice reported the first
    assert answer is not None and answer.startswith("Report ")  # not "added to your report"
    with responders.database.session() as session:
        assert len(session.scalars(select(Report)).all()) == 2
    assert incidents(responders)[-1].follows_id == first.id


def test_past_the_corroboration_window_a_report_opens_a_linked_incident(
    responders: Services, sms_app: Flask
) -> None:
    first = confirmed(responders, sms_app)
    with responders.database.session() as session:
        session.execute(
            update(Incident)
            .where(Incident.id == first.id)
            .values(state_changed_at=utcnow() - timedelta(minutes=31))
        )
    Phone(sms_app.test_client(), CARLOS).text(SECOND)
    assert [i.follows_id for i in incidents(responders)] == [None, first.id]


def test_the_corroboration_window_is_configurable(responders: Services, sms_app: Flask) -> None:
    responders.settings = replace(responders.settings, second_wave_minutes=0)
    first = confirmed(responders, sms_app)
    Phone(sms_app.test_client(), CARLOS).text(SECOND)
    assert [i.follows_id for i in incidents(responders)] == [None, first.id]


def test_after_a_false_alarm_the_new_incident_says_what_it_follows(
    responders: Services, sms_app: Flask
) -> None:
    Phone(sms_app.test_client(), ALICE).text(SIGHTING)
    [first] = incidents(responders)
    page_everyone(responders, first.id)
    Phone(sms_app.test_client(), ANA).text(f"{first.code} FALSE utility crew")
    Phone(sms_app.test_client(), CARLOS).text(SECOND)
    assert [i.follows_id for i in incidents(responders)] == [None, first.id]


def test_more_responders_can_be_paged_for_a_confirmed_incident(
    responders: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    first = confirmed(responders, sms_app)
    fake.reset()
    assert page_more(responders, first.id, 1, staff_id=1) == 1
    [_ana, ben] = dispatches(responders, first.id)
    assert jobs.page_responder(ben.id) == "paged"
    assert [m.to for m in fake.messages] == [BEN]  # the page, to Ben only
    # Ben's verdict is recorded and shown; the incident stays confirmed.
    Phone(sms_app.test_client(), BEN).text(f"{first.code} GO")
    Phone(sms_app.test_client(), BEN).text(f"{first.code} CONFIRM they are still there")
    with responders.database.session() as session:
        assert session.get_one(Incident, first.id).state is IncidentState.CONFIRMED
        assert session.get_one(Dispatch, ben.id).verdict is not None


def test_a_closed_incident_cannot_have_more_responders_paged(
    responders: Services, sms_app: Flask
) -> None:
    first = confirmed(responders, sms_app)
    close_from_board(responders, first.id, staff_id=1)
    with pytest.raises(NotPossible):
        page_more(responders, first.id, 1, staff_id=1)
