"""The drills pages: what a coordinator gets wrong gets an answer in words (never a 500),
what is typed in goes through the real intake, and the marks show where people look."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from dispatch.services import Services
from rapidresponse.models import (
    AuditEvent,
    Dispatch,
    Drill,
    Incident,
    Report,
    Responder,
    StaffRole,
)
from tests.web.staff_helpers import add_account, post_form, sign_in
from tests.web.test_access import World


@pytest.fixture
def coordinator(app: Flask, services: Services, world: World) -> FlaskClient:
    client = app.test_client()
    sign_in(client, services, add_account(services, StaffRole.COORDINATOR))
    return client


def the_drill(services: Services) -> int:
    """The drill the world started (Rosa takes part in it)."""
    with services.database.session() as session:
        found = session.scalar(select(func.min(Drill.id)))
        assert found is not None
        return found


def start(client: FlaskClient, **form: object) -> str:
    response = post_form(client, "/drills", form)
    assert response.status_code == 303
    return client.get(response.headers["Location"]).get_data(as_text=True)


def test_a_start_without_what_it_needs_is_refused_in_words(
    coordinator: FlaskClient, services: Services, world: World
) -> None:
    with services.database.session() as session:
        before = session.scalar(select(func.count()).select_from(Drill))
        area_id = session.scalar(select(Incident.area_id).where(Incident.id == world.incident_id))
    asks = {
        "Write the scenario the participants will act out.": {
            "area_id": area_id,
            "scenario": "  \u200b ",
            "responder_ids": world.responder_id,
        },
        "The scenario is too long: at most 500 characters.": {
            "area_id": area_id,
            "scenario": "x" * 10_000,
            "responder_ids": world.responder_id,
        },
        "Choose the area the drill takes place in.": {
            "area_id": "99999999",
            "scenario": "Agents at the school",
            "responder_ids": world.responder_id,
        },
        "Choose at least one active responder to take part.": {
            "area_id": area_id,
            "scenario": "Agents at the school",
            "responder_ids": ["abc", "99999999"],
        },
    }
    for said, form in asks.items():
        assert said in start(coordinator, **form)
    with services.database.session() as session:
        assert session.scalar(select(func.count()).select_from(Drill)) == before
    spanish = post_form(coordinator, "/drills?lang=es", {"area_id": area_id, "scenario": ""})
    assert "Escriba el escenario" in coordinator.get(spanish.headers["Location"]).get_data(
        as_text=True
    )


def test_a_typed_in_report_goes_through_the_intake_and_pages_the_drills_responder(
    coordinator: FlaskClient, services: Services, world: World
) -> None:
    drill_id = the_drill(services)
    path = f"/drills/{drill_id}"
    page = coordinator.get(path).get_data(as_text=True)
    assert 'id="drill-report-form"' in page and "Agents at the corner store" in page
    assert post_form(coordinator, f"{path}/reports", {"text": "   "}, page).status_code == 303
    assert "Write what the participant reports." in coordinator.get(path).get_data(as_text=True)
    long_text = "agents at the gate " * 600  # 11,400 characters: kept, cut to the limit
    response = post_form(coordinator, f"{path}/reports", {"text": long_text}, page)
    assert response.status_code == 303
    shown = coordinator.get(path).get_data(as_text=True)
    assert "responders in the drill are being paged" in shown
    with services.database.session() as session:
        incident = session.scalars(select(Incident).where(Incident.drill_id == drill_id)).one()
        assert incident.area_id is not None
        assert (
            session.scalar(
                select(func.count()).select_from(Report).where(Report.incident_id == incident.id)
            )
            == 1
        )
        incident_id = incident.id
    board = coordinator.get("/board").get_data(as_text=True)
    assert 'id="running-drill"' in board and f'href="/drills/{drill_id}"' in board
    assert 'class="incident-card state-reported drill"' in board
    assert 'class="map-marker state-reported drill"' in board  # on the map too
    incident_page = coordinator.get(f"/board/incidents/{incident_id}").get_data(as_text=True)
    assert "drill-mark" in incident_page and "every text says DRILL" in incident_page


def test_an_ended_drill_takes_no_reports_and_cannot_end_twice(
    coordinator: FlaskClient, services: Services
) -> None:
    drill_id = the_drill(services)
    path = f"/drills/{drill_id}"
    page = coordinator.get(path).get_data(as_text=True)
    assert post_form(coordinator, f"{path}/end", {}, page).status_code == 303
    ended = coordinator.get(path).get_data(as_text=True)
    assert "The drill has ended" in ended and 'id="drill-end-form"' not in ended
    assert post_form(coordinator, f"{path}/end", {}, page).status_code == 303
    assert "This drill has already ended." in coordinator.get(path).get_data(as_text=True)
    post_form(coordinator, f"{path}/reports", {"text": "agents at the gate"}, page)
    assert "it takes no more reports" in coordinator.get(path).get_data(as_text=True)
    with services.database.session() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 1  # the world's
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.subject == f"drill:{drill_id}")
        ).all()
    assert sorted(actions) == ["drill.ended", "drill.started"]
    assert 'id="running-drill"' not in coordinator.get("/board").get_data(as_text=True)


def test_an_unknown_drill_is_a_404_in_words(coordinator: FlaskClient) -> None:
    for response in (
        coordinator.get("/drills/99999999"),
        post_form(
            coordinator,
            "/drills/99999999/end",
            {},
            coordinator.get("/drills").get_data(as_text=True),
        ),
    ):
        assert response.status_code == 404


def test_a_responders_own_page_marks_a_drill_dispatch(
    app: Flask, services: Services, world: World
) -> None:
    with services.database.session() as session:
        incident = Incident(code="S9P9", area_id=None, drill_id=the_drill(services))
        session.add(incident)
        session.flush()
        session.add(Dispatch(incident_id=incident.id, responder_id=world.responder_id))
        rosa = session.get_one(Responder, world.responder_id)
        assert rosa.name == "Rosa"
    client = app.test_client()
    sign_in(
        client,
        services,
        add_account(services, StaffRole.RESPONDER, responder_id=world.responder_id),
    )
    mine = client.get("/my?lang=es").get_data(as_text=True)
    assert '<tr class="drill"><td><strong class="drill-mark">SIMULACRO</strong> S9P9' in mine
