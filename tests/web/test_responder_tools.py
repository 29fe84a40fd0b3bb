"""The responder card (printable, English and Spanish) and the dispatcher's "call" link,
which shows a responder's number on a click only, audited without the number."""

from __future__ import annotations

from dataclasses import replace

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from dispatch.services import Services
from rapidresponse.models import AuditEvent, StaffRole
from tests.web.staff_helpers import add_account, post_form, sign_in
from tests.web.test_access import World, build_world

ROSA = "+15035550199"  # the world's responder


@pytest.fixture
def world(services: Services) -> World:
    return build_world(services)


def signed_in(app: Flask, services: Services, role: StaffRole) -> FlaskClient:
    client = app.test_client()
    sign_in(client, services, add_account(services, role))
    return client


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("en", ["CODE GO", "CODE CONFIRM what you saw", "Never follow, block or touch agents"]),
        ("es", ["CODIGO VOY", "CODIGO CONFIRMO lo que vio", "Nunca siga, bloquee ni toque"]),
    ],
)
def test_the_responder_card_says_the_keywords_in_each_language(
    app: Flask, services: Services, world: World, lang: str, words: list[str]
) -> None:
    services.settings = replace(services.settings, twilio_from="+15035550100")
    client = signed_in(app, services, StaffRole.RESPONDER)
    page = client.get(f"/my/card?lang={lang}").get_data(as_text=True)
    for word in words:
        assert word in page
    assert "(503) 555-0100" in page  # the hotline, as people there write it
    assert "/my/card" in client.get("/my").get_data(as_text=True)


def test_a_dispatcher_calls_a_responder_and_the_audit_says_so(
    app: Flask, services: Services, world: World
) -> None:
    client = signed_in(app, services, StaffRole.DISPATCHER)
    incident = f"/board/incidents/{world.incident_id}"
    people = client.get("/people").get_data(as_text=True)
    assert ROSA[2:] not in people and "•••-0199" in people  # masked until asked
    call = f"/people/responders/{world.responder_id}/call"
    shown = post_form(client, call, {"back": incident}, people)
    body = shown.get_data(as_text=True)
    assert shown.status_code == 200 and f'href="tel:{ROSA}"' in body
    assert "(503) 555-0199" in body and f'href="{incident}"' in body
    assert shown.headers["Cache-Control"] == "no-store"
    with services.database.session() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "responder.number_shown")
        ).one()
    assert event.subject == f"responder:{world.responder_id}" and "0199" not in str(event.details)


@pytest.mark.parametrize("back", ["https://evil.example/", "//evil.example/x", "javascript:1"])
def test_the_call_page_links_back_only_within_the_site(
    app: Flask, services: Services, world: World, back: str
) -> None:
    client = signed_in(app, services, StaffRole.DISPATCHER)
    page = client.get("/people").get_data(as_text=True)
    call = f"/people/responders/{world.responder_id}/call"
    body = post_form(client, call, {"back": back}, page).get_data(as_text=True)
    assert back not in body and 'href="/people"' in body


def test_calling_nobody_is_a_404(app: Flask, services: Services, world: World) -> None:
    client = signed_in(app, services, StaffRole.DISPATCHER)
    page = client.get("/people").get_data(as_text=True)
    assert post_form(client, "/people/responders/999999/call", {}, page).status_code == 404
