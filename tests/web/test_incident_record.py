"""The incident's record on the board: what responders and dispatchers said, what the
incident waits for, and finding it by the code someone reads out on the phone."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from dispatch.services import Services
from rapidresponse.crypto import Purpose
from rapidresponse.models import (
    AuditEvent,
    Dispatch,
    DispatchState,
    Incident,
    IncidentComment,
    IncidentState,
    Verdict,
    utcnow,
)
from rapidresponse.reports import purge_report_texts
from rapidresponse.shredding import incident_key
from tests.web.staff_helpers import post_form
from tests.web.test_access import World
from tests.web.test_board import cully_id, open_incident

NOTE = "agentes en la 82 y Stark, dos camionetas"
COMMENT = "Called the school: they keep the kids inside"


@pytest.fixture
def dispatcher(app: Flask, services: Services, world: World) -> FlaskClient:
    from rapidresponse.models import StaffRole
    from tests.web.test_board import signed_in

    return signed_in(app, services, StaffRole.DISPATCHER)


def give_verdict(services: Services, world: World, note: str = NOTE) -> None:
    with services.database.session() as session:
        session.add(
            Dispatch(
                incident_id=world.incident_id,
                responder_id=world.responder_id,
                state=DispatchState.DONE,
                verdict=Verdict.CONFIRM,
                verdict_at=utcnow(),
                note_sealed=services.cipher.seal(
                    incident_key(world.incident_id), note, Purpose.DISPATCH_NOTE
                ),
            )
        )


def incident_page(client: FlaskClient, world: World, suffix: str = "") -> str:
    return client.get(f"/board/incidents/{world.incident_id}{suffix}").get_data(as_text=True)


def test_a_verdict_note_is_on_the_incident_its_live_view_and_the_alert_page(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    give_verdict(services, world)
    for page in (
        incident_page(dispatcher, world),
        incident_page(dispatcher, world, "/live"),
        dispatcher.get(f"/board/alerts/{world.alert_id}").get_data(as_text=True),
    ):
        assert "Rosa" in page and NOTE in page and "confirmed it" in page
    assert NOTE not in dispatcher.get("/board/live").get_data(as_text=True)  # not on cards


def test_a_dispatcher_comments_and_the_comment_is_sealed_and_audited_without_text(
    dispatcher: FlaskClient, services: Services, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    page = incident_page(dispatcher, world)
    assert 'id="comment-form"' in page
    response = post_form(
        dispatcher, f"/board/incidents/{world.incident_id}/comment", {"comment": COMMENT}, page
    )
    assert response.status_code == 303
    shown = incident_page(dispatcher, world)
    assert COMMENT in shown and "dispatcher@example.org" in shown
    with services.database.session() as session:
        comment = session.scalars(select(IncidentComment)).one()
        assert comment.text_sealed is not None and COMMENT.encode() not in comment.text_sealed
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "incident.commented")
        ).one()
        assert (
            COMMENT not in str(event.details) and event.subject == f"incident:{world.incident_id}"
        )
    assert COMMENT not in caplog.text


@pytest.mark.parametrize(
    ("typed", "refusal"),
    [
        ("   ", "Write the comment first."),
        ("x" * 10_000, "A comment is at most 500 characters."),
    ],
)
def test_an_empty_or_huge_comment_is_refused_in_words(
    dispatcher: FlaskClient, services: Services, world: World, typed: str, refusal: str
) -> None:
    page = incident_page(dispatcher, world)
    path = f"/board/incidents/{world.incident_id}/comment"
    assert post_form(dispatcher, path, {"comment": typed}, page).status_code == 303
    assert refusal in incident_page(dispatcher, world)
    with services.database.session() as session:
        assert session.scalars(select(IncidentComment)).all() == []


def test_a_comment_on_a_missing_incident_is_refused_not_a_500(
    dispatcher: FlaskClient, world: World
) -> None:
    page = incident_page(dispatcher, world)
    response = post_form(dispatcher, "/board/incidents/999999/comment", {"comment": "x"}, page)
    assert response.status_code in (303, 404)


def test_purging_erases_comments_and_notes_with_the_reports(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    give_verdict(services, world)
    page = incident_page(dispatcher, world)
    post_form(
        dispatcher, f"/board/incidents/{world.incident_id}/comment", {"comment": COMMENT}, page
    )
    long_ago = utcnow() - timedelta(days=40)
    with services.database.session() as session:
        session.execute(
            update(Incident)
            .where(Incident.id == world.incident_id)
            .values(state=IncidentState.CLOSED, closed_at=long_ago)
        )
    with services.database.session() as session:
        purge_report_texts(session, timedelta(days=30))
    with services.database.session() as session:
        assert session.scalars(select(IncidentComment.text_sealed)).all() == [None]
        assert session.scalars(select(Dispatch.note_sealed)).all() == [None]
    shown = incident_page(dispatcher, world)
    assert COMMENT not in shown and NOTE not in shown


@pytest.mark.parametrize("typed", ["K7P2", "k7p2", " K7 P2 ", "R7K2", "r7k2"])
def test_the_board_finds_an_incident_by_its_code_or_a_report_code(
    dispatcher: FlaskClient, world: World, typed: str
) -> None:
    response = dispatcher.get("/board/find", query_string={"code": typed})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/board/incidents/{world.incident_id}")


@pytest.mark.parametrize("typed", ["", "ZZZZ", "x" * 10_000, "' OR 1=1 --"])
def test_an_unknown_code_is_said_in_words(
    dispatcher: FlaskClient, world: World, typed: str
) -> None:
    response = dispatcher.get("/board/find", query_string={"code": typed})
    assert response.status_code == 303 and response.headers["Location"].endswith("/board")
    assert "No incident or report has that code." in dispatcher.get("/board").get_data(as_text=True)


def test_each_card_says_what_the_incident_waits_for(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    unplaced = open_incident(services, None, code="U3N4")
    paged = open_incident(services, cully_id(services), code="P3G4")
    with services.database.session() as session:
        session.add(Dispatch(incident_id=paged, responder_id=world.responder_id))
    page = dispatcher.get("/board/live").get_data(as_text=True)
    assert "No place yet: place it so that responders can be paged." in page
    assert "Waiting for Rosa to answer GO; the next responder is paged at" in page
    # The world's incident: confirmed, its alert approved and going out.
    assert "The alert is going out" in page or "Alert sent at" in page
    del unplaced
    es = dispatcher.get("/board/live?lang=es").get_data(as_text=True)
    assert "Esperando a que Rosa responda GO" in es


def test_more_responders_can_be_paged_on_a_confirmed_incident_from_the_board(
    dispatcher: FlaskClient, world: World
) -> None:
    assert 'id="page-form"' in incident_page(dispatcher, world)  # confirmed, still open


def test_corrections_from_the_board_answer_in_words(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    other = open_incident(services, cully_id(services), code="M3N4")
    page = incident_page(dispatcher, world)
    assert 'id="merge-form"' in page and "M3N4" in page
    merge = f"/board/incidents/{world.incident_id}/merge"
    for choice in ("", "abc", "999999", str(world.incident_id)):
        assert post_form(dispatcher, merge, {"other_id": choice}, page).status_code == 303
    shown = incident_page(dispatcher, world)
    assert "An incident cannot be merged into itself." in shown
    # The world's incident has an alert out: merging it away is refused, the other way not.
    away = f"/board/incidents/{other}/merge"
    post_form(dispatcher, away, {"other_id": str(world.incident_id)}, page)
    refused = dispatcher.get(f"/board/incidents/{other}").get_data(as_text=True)
    assert "Its alert went out: merge the other incident into this one instead." in refused
    post_form(dispatcher, merge, {"other_id": str(other)}, page)
    merged = dispatcher.get(f"/board/incidents/{other}").get_data(as_text=True)
    assert "Merged into" in merged and "K7P2" in merged
    assert 'id="reopen-form"' not in merged  # a merged incident is reopened through the other
    unplace = f"/board/incidents/{world.incident_id}/unplace"
    assert post_form(dispatcher, unplace, {}, page).status_code == 303
    split = f"/board/incidents/{world.incident_id}/split"
    assert post_form(dispatcher, split, {"report": "x" * 10_000}, page).status_code == 303
    assert "That report is not part of this incident." in incident_page(dispatcher, world)
