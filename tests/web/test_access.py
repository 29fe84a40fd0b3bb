"""Every route and every role: who may open what. Every HTML page carries the security
headers, and no response to anyone contains a subscriber's number.

The table below is written by hand on purpose: a new route that is not in it fails
``test_every_route_is_in_the_table``, so nobody adds a page without deciding who sees it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from dispatch.alerts import approve_alert, draft_for_incident
from dispatch.services import Services
from rapidresponse import drills
from rapidresponse.areas import find_area, import_areas
from rapidresponse.models import (
    Area,
    AuditEvent,
    Drill,
    DrillParticipant,
    Incident,
    IncidentState,
    Language,
    Report,
    ReportChannel,
    Responder,
    StaffRole,
    StaffSession,
    StaffUser,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from rapidresponse.people import add_responder
from rapidresponse.regions import demo_region_path, load_region_file
from rapidresponse.reports import seal_text
from tests.factories import add_subscriber
from tests.web.staff_helpers import add_account, csrf_from, sign_in
from web.webhooks import INBOUND_PATH, STATUS_PATH

ANONYMOUS = "anonymous"
ROLES = (ANONYMOUS, *(role.value for role in StaffRole))
BOARD = frozenset({"dispatcher", "coordinator"})
COORDINATOR = frozenset({"coordinator"})
EVERYONE = frozenset(ROLES)

# Subscribers' numbers, which no page may ever show, in the forms a page might print them.
# (Not the demo's fictional cast, whose constant numbers the simulator phone's buttons name:
# that page, development only, reads no number from the database but the one typed in.)
SUBSCRIBER_NUMBERS = ("+15035550131", "+15035550132", "+15035550133")


def forms_of(number: str) -> tuple[str, ...]:
    national = number[2:]
    return (number, national, f"{national[:3]}-{national[3:6]}-{national[6:]}", national[3:])


# (method, rule) -> roles allowed. Placeholders are filled from the world below.
ROUTES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/"): EVERYONE,
    ("GET", "/healthz"): EVERYONE,
    ("GET", "/report"): EVERYONE,
    ("POST", "/report"): EVERYONE,
    ("GET", "/rights"): EVERYONE,
    ("GET", "/report/thanks"): EVERYONE,
    ("GET", "/login"): EVERYONE,
    ("GET", "/invite/<token>"): EVERYONE,  # the link is the key: its own tests
    ("POST", "/invite/<token>"): EVERYONE,
    ("POST", "/login"): EVERYONE,
    ("GET", "/login/code"): EVERYONE,
    ("POST", "/login/code"): EVERYONE,
    ("POST", "/logout"): EVERYONE,
    ("POST", "/sms/inbound"): EVERYONE,  # signed by Twilio: its own tests
    ("POST", "/sms/status"): EVERYONE,
    ("GET", "/simulator/outbox"): EVERYONE,  # development only: no simulator in production
    ("POST", "/simulator/inbound"): EVERYONE,
    ("GET", "/simulator/phone"): EVERYONE,
    ("POST", "/simulator/phone"): EVERYONE,
    ("GET", "/board"): BOARD,
    ("GET", "/board/live"): BOARD,
    ("GET", "/board/find"): BOARD,
    ("GET", "/board/map/areas.svg"): BOARD,
    ("GET", "/board/incidents/<int:incident_id>"): BOARD,
    ("GET", "/board/incidents/<int:incident_id>/live"): BOARD,
    ("POST", "/board/incidents/<int:incident_id>/place"): BOARD,
    ("POST", "/board/incidents/<int:incident_id>/page"): BOARD,
    ("POST", "/board/incidents/<int:incident_id>/comment"): BOARD,
    ("POST", "/board/incidents/<int:incident_id>/merge"): BOARD,
    ("POST", "/board/incidents/<int:incident_id>/split"): BOARD,
    ("POST", "/board/incidents/<int:incident_id>/reopen"): BOARD,
    ("POST", "/board/incidents/<int:incident_id>/unplace"): BOARD,
    ("POST", "/board/incidents/<int:incident_id>/close"): BOARD,
    ("POST", "/board/incidents/<int:incident_id>/draft"): BOARD,
    ("GET", "/board/alerts/<int:alert_id>"): BOARD,
    ("GET", "/board/alerts/<int:alert_id>/live"): BOARD,
    ("POST", "/board/alerts/<int:alert_id>/approve"): BOARD,
    ("POST", "/board/alerts/<int:alert_id>/cancel"): BOARD,
    ("POST", "/board/alerts/<int:alert_id>/follow-up"): BOARD,
    ("POST", "/board/alerts/<int:alert_id>/revise"): BOARD,
    ("GET", "/people"): BOARD,
    ("POST", "/people/responders"): COORDINATOR,
    ("POST", "/people/responders/<int:responder_id>/shift"): COORDINATOR,
    ("GET", "/people/responders/<int:responder_id>"): COORDINATOR,
    ("POST", "/people/responders/<int:responder_id>"): COORDINATOR,
    ("GET", "/staff/sessions"): COORDINATOR,
    ("POST", "/staff/sessions/<int:session_id>/revoke"): COORDINATOR,
    ("GET", "/staff"): COORDINATOR,
    ("POST", "/staff/<int:user_id>/<any(disable, enable, 'reset-second-factor'):action>"): (
        COORDINATOR
    ),
    ("GET", "/areas"): BOARD,
    ("GET", "/areas/<int:area_id>"): COORDINATOR,
    ("POST", "/areas/<int:area_id>"): COORDINATOR,
    ("GET", "/audit"): COORDINATOR,
    ("POST", "/audit/verify"): COORDINATOR,
    ("GET", "/my"): frozenset({"responder", "coordinator"}),
    ("GET", "/my/card"): frozenset({"responder", "dispatcher", "coordinator"}),
    ("POST", "/staff/invites"): COORDINATOR,
    ("GET", "/wording"): COORDINATOR,
    ("POST", "/wording/<language>/<message_id>"): COORDINATOR,
    ("GET", "/whatsapp/templates"): COORDINATOR,
    ("GET", "/keys/seal"): BOARD,
    ("POST", "/keys/seal"): BOARD,
    ("POST", "/whatsapp/templates/sync"): COORDINATOR,
    ("POST", "/whatsapp/templates/<kind>/<language>"): COORDINATOR,
    ("POST", "/staff/invites/<int:invite_id>/withdraw"): COORDINATOR,
    ("POST", "/people/responders/<int:responder_id>/call"): BOARD,
    ("GET", "/announcements"): COORDINATOR,
    ("POST", "/announcements"): COORDINATOR,
    ("GET", "/drills"): COORDINATOR,
    ("POST", "/drills"): COORDINATOR,
    ("GET", "/drills/<int:drill_id>"): COORDINATOR,
    ("POST", "/drills/<int:drill_id>/reports"): COORDINATOR,
    ("POST", "/drills/<int:drill_id>/end"): COORDINATOR,
}
# Routes of libraries, not ours to guard.
NOT_OURS = ("/static/", "/socket.io")


@dataclass(frozen=True)
class World:
    incident_id: int
    alert_id: int
    responder_id: int


def build_world(services: Services) -> World:
    """A region with subscribers, a responder, a confirmed incident and its sent alert."""
    with services.database.session() as session:
        import_areas(session, load_region_file(demo_region_path()), "Portland")
        cully = find_area(session, "cully")
        assert cully is not None
        responder = add_responder(
            session,
            services.cipher,
            services.index,
            name="Rosa",
            phone_e164="+15035550199",
            areas=[cully],
            language=Language.ES,
        )
        incident = Incident(
            code="K7P2", state=IncidentState.CONFIRMED, area_id=cully.id, reporter_count=1
        )
        session.add(incident)
        session.flush()
        session.add(
            Report(
                code="R7K2",
                incident_id=incident.id,
                channel=ReportChannel.SMS,
                text_sealed=seal_text(services.cipher, incident.id, "agents at the corner store"),
                area_id=cully.id,
            )
        )
        world_ids = (incident.id, responder.id, cully.id)
    incident_id, responder_id, cully_id = world_ids
    for number in SUBSCRIBER_NUMBERS:
        subscriber_id = add_subscriber(services, number)
        with services.database.session() as session:
            session.add(
                Subscription(
                    subscriber_id=subscriber_id,
                    area_id=cully_id,
                    status=SubscriptionStatus.CONFIRMED,
                )
            )
    alert_id = draft_for_incident(services, incident_id)
    assert alert_id is not None
    approve_alert(services, alert_id)
    with services.database.session() as session:  # a drill Rosa and a subscriber are in
        drill = drills.start(
            session,
            area_id=cully_id,
            scenario="Agents at the corner store",
            responder_ids=[responder_id],
            started_by_id=None,
            now=utcnow(),
        )
        session.add(DrillParticipant(drill_id=drill.id, subscriber_id=subscriber_id))
    return World(incident_id, alert_id, responder_id)


def fill(rule: str, world: World, services: Services) -> str:
    with services.database.session() as session:
        session_id = session.scalar(select(StaffSession.id).limit(1)) or 1
        user_id = session.scalar(select(StaffUser.id).limit(1)) or 1
        area_id = session.scalar(select(Area.id).limit(1)) or 1
        drill_id = session.scalar(select(func.min(Drill.id))) or 1
    return (
        rule.replace("<int:incident_id>", str(world.incident_id))
        .replace("<int:alert_id>", str(world.alert_id))
        .replace("<int:responder_id>", str(world.responder_id))
        .replace("<int:session_id>", str(session_id))
        .replace("<int:user_id>", str(user_id))
        .replace("<int:area_id>", str(area_id))
        .replace("<int:invite_id>", "1")
        .replace("<int:drill_id>", str(drill_id))
        .replace("<token>", "no-such-invitation")
        .replace("<language>", "es")
        .replace("<kind>", "alert")
        .replace("<message_id>", "alert.keyword")
        .replace("<any(disable, enable, 'reset-second-factor'):action>", "enable")
    )


def browser_for(app: Flask, services: Services, role: str) -> FlaskClient:
    client = app.test_client()
    if role != ANONYMOUS:
        with services.database.session() as session:
            responder_id = session.scalar(select(Responder.id).limit(1))
        account = add_account(services, StaffRole(role), responder_id=responder_id)
        sign_in(client, services, account)
    return client


def request_as(client: FlaskClient, method: str, path: str) -> TestResponse:
    if method == "GET":
        return client.get(path)
    token = csrf_from(client.get("/report").get_data(as_text=True))  # a form every role sees
    return client.post(path, data={"csrf_token": token})


def test_every_route_is_in_the_table(app: Flask) -> None:
    ours = {
        (method, rule.rule)
        for rule in app.url_map.iter_rules()
        if not rule.rule.startswith(NOT_OURS)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    ours |= {("POST", STATUS_PATH), ("POST", INBOUND_PATH)}  # answered before Flask: web.webhooks
    assert sorted(ours - set(ROUTES)) == []
    assert sorted(set(ROUTES) - ours) == []


SEARCHES = {"/board/find"}
STAFF_ROUTES = sorted(key for key, allowed in ROUTES.items() if allowed != EVERYONE)


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "rule"), STAFF_ROUTES)
def test_each_role_reaches_exactly_its_routes(
    app: Flask, services: Services, role: str, method: str, rule: str
) -> None:
    world = build_world(services)
    client = browser_for(app, services, role)
    response = request_as(client, method, fill(rule, world, services))
    assert_security_headers(response)  # on a 200, a redirect, a 401 and a 403 alike
    if role in ROUTES[(method, rule)]:
        assert response.status_code not in (401, 403, 404, 500), response.status_code
        if method == "GET":  # a search answers with where it found it (or the board)
            assert response.status_code == (303 if rule in SEARCHES else 200)
    elif role == ANONYMOUS:
        expected = (302,) if method == "GET" else (401,)
        assert response.status_code in expected
        if method == "GET":
            assert response.headers["Location"].startswith("/login")
    else:
        assert response.status_code == 403


@pytest.mark.parametrize("role", ROLES)
def test_no_page_shows_a_subscriber_number_and_every_page_has_the_headers(
    app: Flask, services: Services, role: str
) -> None:
    world = build_world(services)
    client = browser_for(app, services, role)
    pages = [rule for method, rule in ROUTES if method == "GET"]
    seen = 0
    for rule in pages:
        response = client.get(fill(rule, world, services))
        body = response.get_data(as_text=True)
        for number in SUBSCRIBER_NUMBERS:
            for form in forms_of(number):
                assert form not in body, f"{rule} shows a subscriber number to {role}"
        if response.mimetype == "text/html":
            seen += 1
            assert_security_headers(response)
    assert seen >= 4


def assert_security_headers(response: TestResponse) -> None:
    policy = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "default-src 'self'" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_a_staff_page_is_never_cached(app: Flask, services: Services) -> None:
    build_world(services)
    client = browser_for(app, services, "dispatcher")
    for path in ("/board", "/board/live", "/people"):
        assert client.get(path).headers["Cache-Control"] == "no-store"


def test_a_forged_csrf_token_is_refused(app: Flask, services: Services) -> None:
    world = build_world(services)
    client = browser_for(app, services, "dispatcher")
    path = f"/board/incidents/{world.incident_id}/close"
    assert client.post(path, data={"csrf_token": "forged"}).status_code == 400
    assert client.post(path, data={}).status_code == 400
    with services.database.session() as session:
        assert session.get_one(Incident, world.incident_id).state is IncidentState.CONFIRMED


# Every field name any staff form uses, each given the same hostile value at once.
FIELDS = (
    "area_id",
    "area_ids",
    "how_many",
    "name",
    "phone",
    "language",
    "kind",
    "note",
    "on_shift",
    "active",
    "code",
    "email",
    "password",
    "From",
    "Body",
    "before",
)
HOSTILE = ("99999999999999999999", "١٢٣٤٥٦", "²", "-1", "\x00", "", "x" * 5000)


# Routes that would end the walker's own session (signing in again starts a new one),
# and the Twilio-signed webhooks, which have their own hostile-input tests.
NOT_WALKED_SIGNED_IN = ("/login", "/logout", "/revoke", "/sms/")


def walk(
    client: FlaskClient,
    services: Services,
    world: World,
    value: str,
    *,
    skip: tuple[str, ...] = ("/sms/",),
) -> None:
    token = csrf_from(client.get("/report").get_data(as_text=True))
    for method, rule in sorted(ROUTES):
        path = fill(rule, world, services)
        if method == "GET":
            response = client.get(path, query_string={"before": value, "next": value})
        elif any(part in path for part in skip):
            continue
        else:
            data = {field: value for field in FIELDS}
            response = client.post(path, data={**data, "csrf_token": token})
        assert response.status_code < 500, (method, path, response.status_code)


@pytest.mark.parametrize(
    "value", HOSTILE, ids=["huge", "arabic", "super", "neg", "nul", "empty", "long"]
)
def test_no_staff_route_answers_hostile_input_with_a_500(
    app: Flask, services: Services, value: str
) -> None:
    world = build_world(services)
    walk(app.test_client(), services, world, value)  # signed out: the sign-in forms
    coordinator = browser_for(app, services, "coordinator")
    walk(coordinator, services, world, value, skip=NOT_WALKED_SIGNED_IN)
    assert coordinator.get("/board").status_code == 200  # still signed in, nothing broke


FORMS = sorted(rule for method, rule in ROUTES if method == "POST" and not rule.startswith("/sms/"))


@pytest.mark.parametrize("rule", FORMS)
def test_every_form_refuses_a_forged_csrf_token(app: Flask, services: Services, rule: str) -> None:
    world = build_world(services)
    client = browser_for(app, services, "coordinator")
    with services.database.session() as session:
        events = session.scalar(select(func.count()).select_from(AuditEvent))
    response = client.post(fill(rule, world, services), data={"csrf_token": "forged"})
    assert response.status_code == 400
    assert_security_headers(response)
    with services.database.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == events
    assert client.get("/board").status_code == 200  # nor did it sign anyone out
