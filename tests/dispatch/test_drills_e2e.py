"""A drill end to end on production settings: RR_ENV=production, Twilio at the local
fake, signed webhooks, real `rapidresponse worker --burst` processes, the real database
and Redis.

Two participants and fifty public subscribers share the drill's area, as do a responder
in the drill and one who is not: the drill alert reaches the two, every text anyone gets
says DRILL (SIMULACRO), the fake Twilio sees nothing for the fifty or for the other
responder, and the report card's timings are those of the recorded events.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from dispatch.services import Services
from rapidresponse.areas import find_area
from rapidresponse.models import (
    Alert,
    AlertStatus,
    Delivery,
    Dispatch,
    Drill,
    Incident,
    IncidentState,
    Report,
    Responder,
    StaffRole,
)
from tests.dispatch.conftest import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
from tests.factories import add_many_subscribers, add_on_shift_responder
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import Phone
from tests.web.staff_helpers import add_account, post_form, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.sends_through_api]

ANA, CARL = "+15035550111", "+15035550133"  # Cully responders: Ana takes part, Carl not
PAT, QUINN = "+15035550171", "+15035550172"  # participants: English, Spanish
SIGHTING = "ICE van and 4 agents at the school gate, NE 42nd and Killingsworth"


@pytest.fixture
def environ(environ: dict[str, str], fake: FakeTwilio) -> dict[str, str]:
    return production(environ, fake)


def production(environ: dict[str, str], fake: FakeTwilio) -> dict[str, str]:
    """Production, as a collective runs it, with Twilio's API at the local fake."""
    return {
        **environ,
        "RR_ENV": "production",
        "SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM": FROM_NUMBER,
        "TWILIO_API_URL": fake.url,
    }


def work(cli_env: dict[str, str]) -> None:
    """One real `rapidresponse worker --burst` run (with its scheduler)."""
    subprocess.run(
        [sys.executable, "-m", "web.cli", "worker", "--burst"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def seconds(start: datetime, moment: datetime | None) -> int | None:
    return None if moment is None else round((moment - start).total_seconds())


def staff_client(app: Flask, services: Services, role: StaffRole) -> FlaskClient:
    # https: production session cookies are Secure.
    client = app.test_client()
    client.environ_base["wsgi.url_scheme"] = "https"
    sign_in(client, services, add_account(services, role))
    return client


def test_a_drill_on_production_reaches_its_two_participants_and_none_of_the_fifty(
    twilio_services: Services, sms_app: Flask, fake: FakeTwilio, cli_env: dict[str, str]
) -> None:
    services = twilio_services
    assert services.settings.is_production and cli_env["RR_ENV"] == "production"
    add_on_shift_responder(services, "Ana", ANA, "cully")
    add_on_shift_responder(services, "Carl", CARL, "cully")
    with services.database.session() as session:
        cully = find_area(session, "cully")
        assert cully is not None
        cully_id = cully.id
        ana_id = session.scalar(select(Responder.id).where(Responder.name == "Ana"))
    public = add_many_subscribers(services, cully_id, 50)
    pat, quinn = Phone(sms_app.test_client(), PAT), Phone(sms_app.test_client(), QUINN)
    for phone, join, yes in ((pat, "JOIN Cully", "YES"), (quinn, "UNIRSE Cully", "SI")):
        phone.text(join)
        phone.text(yes)

    # A coordinator starts the drill on the web; the two join it by text.
    coordinator = staff_client(sms_app, services, StaffRole.COORDINATOR)
    started = post_form(
        coordinator,
        "/drills",
        {"area_id": cully_id, "scenario": "Agents at the school gate", "responder_ids": ana_id},
    )
    assert started.status_code == 303, started.get_data(as_text=True)
    with services.database.session() as session:
        drill = session.scalars(select(Drill)).one()
        drill_id, code = drill.id, drill.code
    assert (pat.text("JOIN DRILL") or "").startswith(f"DRILL: you are in drill {code}")
    assert (quinn.text("UNIRSE SIMULACRO") or "").startswith("SIMULACRO: ")

    # Quinn reports; the worker pages Ana alone.
    assert (quinn.text(f"SIMULACRO {SIGHTING}") or "").startswith("SIMULACRO: reporte")
    work(cli_env)
    with services.database.session() as session:
        incident = session.scalars(select(Incident)).one()
        assert incident.drill_id == drill_id
        incident_code = incident.code
    assert {m.to for m in fake.messages} == {ANA}
    ana = Phone(sms_app.test_client(), ANA)
    assert (ana.text(f"{incident_code} GO") or "").startswith("DRILL: ")
    assert (ana.text(f"{incident_code} CONFIRM agents at the gate") or "").startswith("DRILL: ")
    work(cli_env)  # drafts the alert

    # A dispatcher approves it on the board, as any alert; the worker sends it.
    with services.database.session() as session:
        alert = session.scalars(select(Alert)).one()
        assert alert.drill_id == drill_id and alert.status is AlertStatus.DRAFT
        alert_id = alert.id
    dispatcher = staff_client(sms_app, services, StaffRole.DISPATCHER)
    page = dispatcher.get(f"/board/alerts/{alert_id}").get_data(as_text=True)
    assert "drill-mark" in page and "Goes to 2 subscribers." in page
    approved = post_form(dispatcher, f"/board/alerts/{alert_id}/approve", {}, page)
    assert approved.status_code in (302, 303), approved.get_data(as_text=True)
    work(cli_env)

    sent = fake.messages
    to = {m.to for m in sent}
    assert to == {ANA, PAT, QUINN}  # never Carl, never one of the fifty
    public_numbers = {f"+1503{1_000_000 + n:07d}" for n in range(len(public))}
    assert not to & public_numbers and CARL not in to
    for message in sent:
        assert message.body.startswith(("DRILL: ", "SIMULACRO: ")), message.body
    [to_quinn] = [m.body for m in sent if m.to == QUINN]
    assert to_quinn.startswith("SIMULACRO: ")
    with services.database.session() as session:
        assert session.scalar(select(func.count()).select_from(Delivery)) == 2
        assert session.get_one(Incident, incident.id).state is IncidentState.CONFIRMED

    # The coordinator ends it: the card's timings are the recorded events'.
    page = coordinator.get(f"/drills/{drill_id}").get_data(as_text=True)
    assert "(so far)" in page  # the card while it runs
    ended = post_form(coordinator, f"/drills/{drill_id}/end", {}, page)
    assert ended.status_code == 303
    with services.database.session() as session:
        card = session.get_one(Drill, drill_id).card
        first = session.scalar(select(func.min(Report.received_at)))
        [dispatch] = session.scalars(select(Dispatch)).all()
        approved_at = session.get_one(Alert, alert_id).approved_at
        last_sent = session.scalar(select(func.max(Delivery.sent_at)))
    assert card is not None and first is not None
    assert card["steps"] == {
        "dispatch": seconds(first, dispatch.paged_at),
        "go": seconds(first, dispatch.acknowledged_at),
        "verdict": seconds(first, dispatch.verdict_at),
        "approval": seconds(first, approved_at),
        "last_delivery": seconds(first, last_sent),
    }
    assert all(value is not None for value in card["steps"].values())
    assert card["responders"] == [
        {
            "name": "Ana",
            "paged": True,
            "go_after": seconds(first, dispatch.acknowledged_at),
            "verdict": "confirm",
            "verdict_after": seconds(first, dispatch.verdict_at),
        }
    ]
    assert sorted(row["mask"] for row in card["subscribers"]) == ["•••-0171", "•••-0172"]
    assert all(row["delivered_after"] is not None for row in card["subscribers"])
    shown = coordinator.get(f"/drills/{drill_id}").get_data(as_text=True)
    assert "Report card" in shown and "•••-0171" in shown and PAT not in shown
    assert SIGHTING not in str(card) and "school gate" not in str(card)
