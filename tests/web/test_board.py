"""The board: what dispatchers see and do. Real database, real Redis; no browser here
(tests/browser drives Chromium through the whole flow)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from dispatch.queues import QueueName, queue
from dispatch.services import Services
from rapidresponse.areas import find_area
from rapidresponse.broadcast import texts_of
from rapidresponse.models import (
    Alert,
    AlertApproval,
    AlertKind,
    AlertStatus,
    Area,
    AuditEvent,
    Delivery,
    Dispatch,
    Incident,
    IncidentState,
    Language,
    Responder,
    StaffRole,
)
from tests.factories import add_on_shift_responder
from tests.web.staff_helpers import add_account, post_form, sign_in
from tests.web.test_access import SUBSCRIBER_NUMBERS, World, forms_of


def signed_in(
    app: Flask, services: Services, role: StaffRole, email: str | None = None
) -> FlaskClient:
    client = app.test_client()
    sign_in(client, services, add_account(services, role, email))
    return client


@pytest.fixture
def dispatcher(app: Flask, services: Services, world: World) -> FlaskClient:
    return signed_in(app, services, StaffRole.DISPATCHER)


def open_incident(services: Services, area_id: int | None, code: str = "M3N4") -> int:
    with services.database.session() as session:
        incident = Incident(code=code, state=IncidentState.REPORTED, area_id=area_id)
        session.add(incident)
        session.flush()
        return incident.id


def cully_id(services: Services) -> int:
    with services.database.session() as session:
        area = find_area(session, "cully")
        assert area is not None
        return area.id


# --- reading ------------------------------------------------------------------------------


def test_the_board_lists_incidents_with_their_facts(dispatcher: FlaskClient, world: World) -> None:
    page = dispatcher.get("/board/live").get_data(as_text=True)
    assert f'data-incident-id="{world.incident_id}"' in page
    assert "K7P2" in page and "Cully" in page
    assert "1 report, 1 independent" in page
    assert "<svg" in page and "map-marker" in page  # the incident is on the map


def test_the_area_outlines_are_an_image_the_browser_keeps(
    dispatcher: FlaskClient, app: Flask, services: Services, world: World
) -> None:
    """The live fragment is re-read on every hint by every board: the outlines (most of
    the map's bytes) are not in it but in an image under the areas' revision."""
    from rapidresponse.directory import current_revision

    page = dispatcher.get("/board/live").get_data(as_text=True)
    with services.database.reading() as session:
        revision = current_revision(session)
    image = f'href="/board/map/areas.svg?rev={revision}"'
    assert image in page
    assert page.count("<path") == 1  # only Cully, where the incident is, drawn over it
    outlines = dispatcher.get(f"/board/map/areas.svg?rev={revision}")
    assert outlines.status_code == 200 and outlines.mimetype == "image/svg+xml"
    with services.database.reading() as session:
        areas = session.scalar(select(func.count()).select_from(Area))
    assert outlines.get_data(as_text=True).count("<path") == areas > 1
    assert outlines.headers["Cache-Control"] == "private, max-age=31536000, immutable"
    assert dispatcher.get("/board/live").headers["Cache-Control"] == "no-store"
    stranger = app.test_client().get(f"/board/map/areas.svg?rev={revision}")
    assert stranger.status_code in (302, 401, 403)
    # Another area: a new revision, so a new image for every board.
    with services.database.session() as session:
        session.add(Area(slug="nowhere", name="Nowhere"))
    assert image not in dispatcher.get("/board/live").get_data(as_text=True)


def test_an_incident_page_shows_its_reports_and_responders_masked(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    with services.database.session() as session:
        session.add(Dispatch(incident_id=world.incident_id, responder_id=world.responder_id))
    page = dispatcher.get(f"/board/incidents/{world.incident_id}").get_data(as_text=True)
    assert "agents at the corner store" in page  # report text, for the dispatcher's eyes
    assert "Rosa" in page and "•••-0199" in page
    assert "5035550199" not in page and "555-0199" not in page


def test_the_map_draws_no_third_party_tiles_by_default(
    dispatcher: FlaskClient, world: World
) -> None:
    page = dispatcher.get("/board").get_data(as_text=True)
    images = re.findall(r'<image[^>]* href="([^"]+)"', page)
    assert images and all(href.startswith("/board/map/areas.svg") for href in images)
    assert "http://" not in page.replace("http://www.w3.org", "")


def test_a_configured_tile_server_is_drawn_and_allowed(
    app: Flask, services: Services, world: World
) -> None:
    services.settings = replace(
        services.settings, map_tile_url="https://tiles.example.org/{z}/{x}/{y}.png"
    )
    client = signed_in(app, services, StaffRole.DISPATCHER)
    response = client.get("/board")
    assert 'href="https://tiles.example.org/' in response.get_data(as_text=True)
    assert "https://tiles.example.org" in response.headers["Content-Security-Policy"]


def test_a_missing_incident_or_alert_is_a_404(dispatcher: FlaskClient) -> None:
    assert dispatcher.get("/board/incidents/999999").status_code == 404
    assert dispatcher.get("/board/alerts/999999").status_code == 404


# --- acting ---------------------------------------------------------------------------------


def test_placing_an_unplaced_incident_pages_responders_there(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    incident_id, cully = open_incident(services, None), cully_id(services)
    page = dispatcher.get(f"/board/incidents/{incident_id}").get_data(as_text=True)
    assert 'id="place-form"' in page
    place = f"/board/incidents/{incident_id}/place"
    assert post_form(dispatcher, place, {"area_id": str(cully)}, page).status_code == 303
    with services.database.session() as session:
        assert session.get_one(Incident, incident_id).area_id == cully
        assert "incident.placed" in session.scalars(select(AuditEvent.action)).all()
    jobs = queue(QueueName.REPLIES, services.redis).jobs
    assert [job.func_name for job in jobs][-1].endswith("dispatch_incident")
    assert list(jobs[-1].args) == [incident_id]


def test_placing_twice_or_in_no_area_is_refused_politely(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    page = dispatcher.get(f"/board/incidents/{world.incident_id}").get_data(as_text=True)
    for area in (str(cully_id(services)), "999999", "", "cully"):
        response = post_form(
            dispatcher, f"/board/incidents/{world.incident_id}/place", {"area_id": area}, page
        )
        assert response.status_code == 303
    shown = dispatcher.get(f"/board/incidents/{world.incident_id}").get_data(as_text=True)
    assert "Only an open incident without a place can be placed." in shown


def test_paging_more_responders_opens_dispatches(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    incident_id = open_incident(services, cully_id(services))
    add_on_shift_responder(services, "Ana", "+15035550177", "cully")
    add_on_shift_responder(services, "Beto", "+15035550178", "cully")
    page = dispatcher.get(f"/board/incidents/{incident_id}").get_data(as_text=True)
    response = post_form(
        dispatcher, f"/board/incidents/{incident_id}/page", {"how_many": "50"}, page
    )
    assert response.status_code == 303
    with services.database.session() as session:
        paged = session.scalar(
            select(func.count()).select_from(Dispatch).where(Dispatch.incident_id == incident_id)
        )
        assert paged == 2  # everyone on shift there, however many were asked for
        assert session.get_one(Incident, incident_id).state is IncidentState.DISPATCHED
    assert "2 more responders paged." in dispatcher.get("/board").get_data(as_text=True)


def test_closing_an_incident(dispatcher: FlaskClient, services: Services, world: World) -> None:
    page = dispatcher.get(f"/board/incidents/{world.incident_id}").get_data(as_text=True)
    response = post_form(dispatcher, f"/board/incidents/{world.incident_id}/close", {}, page)
    assert response.status_code == 303
    with services.database.session() as session:
        assert session.get_one(Incident, world.incident_id).state is IncidentState.CLOSED
    again = post_form(dispatcher, f"/board/incidents/{world.incident_id}/close", {}, page)
    assert again.status_code == 303
    assert "closed already" in dispatcher.get("/board").get_data(as_text=True)


# --- alerts -----------------------------------------------------------------------------------


def draft_alert(services: Services, world: World) -> int:
    """An update to the world's alert, once that alert reached its three subscribers (a
    follow-up goes only to those the alert reached)."""
    from sqlalchemy import update

    from dispatch.alerts import draft_follow_up
    from rapidresponse.models import Delivery, DeliveryStatus

    with services.database.session() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.alert_id == world.alert_id)
            .values(status=DeliveryStatus.SENT)
        )
    return draft_follow_up(services, world.alert_id, AlertKind.UPDATE, note="Agents left")


def test_an_alert_page_previews_each_language_with_its_cost_and_audience(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    draft_id = draft_alert(services, world)
    page = dispatcher.get(f"/board/alerts/{draft_id}").get_data(as_text=True)
    assert 'lang="en"' in page and 'lang="es"' in page
    assert "GSM-7" in page and re.search(r"\b1 segment\b|\b\d+ segments\b", page)
    assert "Goes to 3 subscribers." in page
    assert "Approvals: 0 of 1" in page


@pytest.mark.parametrize(
    ("lang", "words"), [("en", ("sent:", "waiting:")), ("es", ("enviados:", "en espera:"))]
)
def test_the_progress_counts_are_numbers_the_live_page_can_update(
    dispatcher: FlaskClient, world: World, lang: str, words: tuple[str, str]
) -> None:
    page = dispatcher.get(f"/board/alerts/{world.alert_id}?lang={lang}").get_data(as_text=True)
    counts = re.search(r'<span class="counts">(.*?)</span>\s*</div>', page, re.DOTALL)
    assert counts is not None
    text = counts.group(1)
    total = len(SUBSCRIBER_NUMBERS)
    assert f'<span data-count="total">{total}</span>' in text
    assert '<span data-count="sent">0</span>' in text
    assert all(word in text for word in words)
    assert "&lt;" not in text  # the numbers' markup is not escaped into text


def test_one_approval_sends_by_default(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    draft_id = draft_alert(services, world)
    page = dispatcher.get(f"/board/alerts/{draft_id}").get_data(as_text=True)
    assert post_form(dispatcher, f"/board/alerts/{draft_id}/approve", {}, page).status_code == 303
    with services.database.session() as session:
        assert session.get_one(Alert, draft_id).status in (
            AlertStatus.APPROVED,
            AlertStatus.COMPLETE,
        )
    assert "Approved. The alert is going out." in dispatcher.get("/board").get_data(as_text=True)


def test_the_two_person_rule_needs_two_different_dispatchers(
    app: Flask, dispatcher: FlaskClient, services: Services, world: World
) -> None:
    services.settings = replace(services.settings, alert_approvers=2)
    draft_id = draft_alert(services, world)
    path = f"/board/alerts/{draft_id}"
    post_form(dispatcher, f"{path}/approve", {}, dispatcher.get(path).get_data(as_text=True))
    again = dispatcher.get(path).get_data(as_text=True)
    assert "Another dispatcher must approve too." in again
    assert 'id="approve-form"' not in again  # the same person cannot approve twice
    post_form(dispatcher, f"{path}/approve", {}, again)  # a forged second click
    with services.database.session() as session:
        assert session.get_one(Alert, draft_id).status is AlertStatus.DRAFT
        assert session.scalar(select(func.count()).select_from(AlertApproval)) == 1
    second = signed_in(app, services, StaffRole.DISPATCHER, "second@example.org")
    post_form(second, f"{path}/approve", {}, second.get(path).get_data(as_text=True))
    with services.database.session() as session:
        assert session.get_one(Alert, draft_id).status in (
            AlertStatus.APPROVED,
            AlertStatus.COMPLETE,
        )


def test_the_hourly_cap_holds_back_alerts_but_never_follow_ups(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    services.settings = replace(services.settings, alert_hourly_cap=1)  # the world sent one
    from dispatch.alerts import draft_for_incident

    other = open_incident(services, cully_id(services), "Q8R9")
    with services.database.session() as session:
        session.get_one(Incident, other).state = IncidentState.CONFIRMED
    capped = draft_for_incident(services, other)
    assert capped is not None
    path = f"/board/alerts/{capped}"
    post_form(dispatcher, f"{path}/approve", {}, dispatcher.get(path).get_data(as_text=True))
    assert "The limit of 1 alerts an hour is reached" in dispatcher.get(path).get_data(as_text=True)
    follow_up = draft_alert(services, world)
    path = f"/board/alerts/{follow_up}"
    post_form(dispatcher, f"{path}/approve", {}, dispatcher.get(path).get_data(as_text=True))
    with services.database.session() as session:
        assert session.get_one(Alert, capped).status is AlertStatus.DRAFT
        assert session.get_one(Alert, follow_up).status is not AlertStatus.DRAFT


def test_cancelling_a_draft_sends_nothing_and_tells_the_other_boards(
    dispatcher: FlaskClient, services: Services, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    draft_id = draft_alert(services, world)
    path = f"/board/alerts/{draft_id}"
    page = dispatcher.get(path).get_data(as_text=True)
    events: list[tuple[str, dict[str, int]]] = []
    monkeypatch.setattr(services.live, "emit", lambda event, data: events.append((event, data)))
    post_form(dispatcher, f"{path}/cancel", {}, page)
    with services.database.session() as session:
        assert session.get_one(Alert, draft_id).status is AlertStatus.CANCELLED
    assert events == [("alert_cancelled", {"alert_id": draft_id})]
    post_form(dispatcher, f"{path}/cancel", {}, page)  # twice: nothing more to say
    assert len(events) == 1


@pytest.mark.parametrize(
    ("kind", "note"), [("update", "Agents left the area"), ("all_clear", ""), ("correction", "x")]
)
def test_a_follow_up_is_drafted_for_the_recipients(
    dispatcher: FlaskClient, services: Services, world: World, kind: str, note: str
) -> None:
    path = f"/board/alerts/{world.alert_id}"
    page = dispatcher.get(path).get_data(as_text=True)
    assert 'id="follow-up-form"' in page
    typed = {"kind": kind, "note_en": note, "note_es": note}
    response = post_form(dispatcher, f"{path}/follow-up", typed, page)
    assert response.status_code == 303
    with services.database.session() as session:
        follow_up = session.scalars(select(Alert).where(Alert.parent_id == world.alert_id)).one()
        assert follow_up.kind.value == kind and follow_up.status is AlertStatus.DRAFT
    assert response.headers["Location"] == f"/board/alerts/{follow_up.id}"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"kind": "update", "note_en": "call 503 555 0101 now"},
            "looks like it has a phone number",
        ),
        ({"kind": "update", "note_en": "x" * 10_000}, "The note is too long"),
        ({"kind": "update", "note_en": "   ", "note_es": ""}, "An update needs a note"),
        ({"kind": "update", "note_es": "se fueron al norte"}, None),  # nobody reads English yet
    ],
)
def test_a_bad_follow_up_is_refused_in_words_and_keeps_what_was_typed(
    dispatcher: FlaskClient,
    services: Services,
    world: World,
    data: dict[str, str],
    message: str | None,
) -> None:
    path = f"/board/alerts/{world.alert_id}"
    response = post_form(
        dispatcher, f"{path}/follow-up", data, dispatcher.get(path).get_data(as_text=True)
    )
    if message is None:
        assert response.status_code == 303  # a language nobody reads takes the other's note
        return
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    error = re.search(r'<p class="error" role="alert">(.*?)</p>', page)
    assert error is not None and message in error.group(1) and "555" not in error.group(1)
    typed = data["note_en"][:200]
    if typed.strip():
        assert f'value="{typed}"' in page or typed[:200] in page  # the field keeps it
    with services.database.session() as session:
        assert session.scalars(select(Alert).where(Alert.parent_id == world.alert_id)).all() == []


def test_an_unknown_follow_up_kind_is_refused_in_words(
    dispatcher: FlaskClient, world: World
) -> None:
    path = f"/board/alerts/{world.alert_id}"
    page = dispatcher.get(path).get_data(as_text=True)
    assert post_form(dispatcher, f"{path}/follow-up", {"kind": "nonsense"}, page).status_code == 303
    assert "Choose update, all clear or correction." in dispatcher.get(path).get_data(as_text=True)


def test_an_update_needs_a_note_in_each_language_its_readers_read(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    draft_alert(services, world)  # the alert reached its three subscribers
    with services.database.session() as session:  # one of whom reads Spanish
        first = session.scalars(
            select(Delivery).where(Delivery.alert_id == world.alert_id).limit(1)
        ).one()
        first.language = Language.ES
    path = f"/board/alerts/{world.alert_id}"
    page = dispatcher.get(path).get_data(as_text=True)
    only_english = {"kind": "update", "note_en": "Agents moving north on 82nd"}
    response = post_form(dispatcher, f"{path}/follow-up", only_english, page)
    assert response.status_code == 400
    assert "Write the Spanish note too" in response.get_data(as_text=True)
    both = {**only_english, "note_es": "Los agentes van al norte por la 82"}
    response = post_form(dispatcher, f"{path}/follow-up", both, page)
    assert response.status_code == 303
    with services.database.session() as session:
        newest = session.scalars(select(Alert).order_by(Alert.id.desc()).limit(1)).one()
        texts = texts_of(services.cipher, newest)
    assert "north on 82nd" in texts["en"] and "van al norte" in texts["es"]
    assert "north" not in texts["es"]


# --- people, audit, simulator ---------------------------------------------------------------


def test_people_shows_counts_never_numbers(app: Flask, services: Services, world: World) -> None:
    coordinator = signed_in(app, services, StaffRole.COORDINATOR)
    page = coordinator.get("/people").get_data(as_text=True)
    assert "Rosa" in page and "•••-0199" in page
    assert "<td>Cully</td><td>3</td><td>0</td><td>3</td>" in page.replace("\n", "")
    for number in SUBSCRIBER_NUMBERS:
        assert not any(form in page for form in forms_of(number))


def test_a_coordinator_adds_a_responder_and_changes_shifts(
    app: Flask, services: Services, world: World
) -> None:
    coordinator = signed_in(app, services, StaffRole.COORDINATOR)
    page = coordinator.get("/people").get_data(as_text=True)
    data = {
        "name": "Dora",
        "phone": "503-555-0166",
        "area_ids": str(cully_id(services)),
        "language": "es",
    }
    assert post_form(coordinator, "/people/responders", data, page).status_code == 303
    again = post_form(coordinator, "/people/responders", data, page)
    assert again.status_code == 409 and "exists already" in again.get_data(as_text=True)
    bad = post_form(coordinator, "/people/responders", {**data, "phone": "12"}, page)
    assert bad.status_code == 400
    nowhere = {**data, "phone": "503-555-0167", "area_ids": "999999"}
    assert post_form(coordinator, "/people/responders", nowhere, page).status_code == 400
    shown = coordinator.get("/people").get_data(as_text=True)
    assert "Dora" in shown and "•••-0166" in shown and "503-555-0166" not in shown
    with services.database.session() as session:
        dora = session.scalars(select(Responder).where(Responder.name == "Dora")).one()
        assert not dora.on_shift
    post_form(coordinator, f"/people/responders/{dora.id}/shift", {"on_shift": "1"}, page)
    with services.database.session() as session:
        assert session.get_one(Responder, dora.id).on_shift


def test_a_coordinator_changes_a_responders_areas_and_deactivates_them(
    app: Flask, services: Services, world: World
) -> None:
    coordinator = signed_in(app, services, StaffRole.COORDINATOR)
    path = f"/people/responders/{world.responder_id}"
    page = coordinator.get(path).get_data(as_text=True)
    assert "•••-0199" in page and "+15035550199" not in page
    with services.database.session() as session:
        foster = find_area(session, "foster-powell")
        assert foster is not None
        session.get_one(Responder, world.responder_id).on_shift = True
    data = {"name": "Rosa M.", "area_ids": [str(foster.id)], "language": "en", "active": "1"}
    assert post_form(coordinator, path, data, page).status_code == 303
    with services.database.session() as session:
        rosa = session.get_one(Responder, world.responder_id)
        assert rosa.name == "Rosa M." and [a.slug for a in rosa.areas] == ["foster-powell"]
        assert rosa.language is Language.EN and rosa.on_shift and rosa.active

    # She leaves: inactive, off shift, never paged; her history stays.
    assert post_form(coordinator, path, {**data, "active": ""}, page).status_code == 303
    with services.database.session() as session:
        rosa = session.get_one(Responder, world.responder_id)
        assert not rosa.active and not rosa.on_shift
    people = coordinator.get("/people").get_data(as_text=True)
    assert 'data-active="false"' in people and "inactive" in people
    shift = post_form(coordinator, f"{path}/shift", {"on_shift": "1"}, people)
    assert shift.status_code == 409 and "cannot go on shift" in shift.get_data(as_text=True)
    events = coordinator.get("/audit").get_data(as_text=True)
    assert "responder.changed" in events and "5550199" not in events
    # Named, with the chain's id only on hover.
    subject = f"responder:{world.responder_id}"
    assert f'<td title="{subject}">Rosa M.</td>' in events and f">{subject}<" not in events


@pytest.mark.parametrize(
    "data",
    [
        {"name": "", "area_ids": ["1"], "language": "en"},
        {"name": "Rosa", "area_ids": [], "language": "en"},
        {"name": "Rosa", "area_ids": ["1"], "language": "fr"},
        {"name": "Rosa", "area_ids": ["99999999999999999999"], "language": "en"},
        {"name": "Rosa", "area_ids": ["999999"], "language": "en"},  # no such area
    ],
)
def test_a_bad_responder_change_is_refused_and_changes_nothing(
    app: Flask, services: Services, world: World, data: dict[str, object]
) -> None:
    coordinator = signed_in(app, services, StaffRole.COORDINATOR)
    path = f"/people/responders/{world.responder_id}"
    response = post_form(coordinator, path, data, coordinator.get(path).get_data(as_text=True))
    assert response.status_code == 400
    assert "needs a name and at least one area" in response.get_data(as_text=True)
    with services.database.session() as session:
        rosa = session.get_one(Responder, world.responder_id)
        assert rosa.name == "Rosa" and rosa.active and [a.slug for a in rosa.areas] == ["cully"]
    assert coordinator.get("/people/responders/999999").status_code == 404


def test_a_dispatcher_sees_people_but_cannot_change_them(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    page = dispatcher.get("/people").get_data(as_text=True)
    assert "Rosa" in page and 'id="add-responder-form"' not in page
    data = {"on_shift": "1"}
    assert (
        post_form(
            dispatcher, f"/people/responders/{world.responder_id}/shift", data, page
        ).status_code
        == 403
    )


def test_the_audit_page_verifies_the_chain_and_finds_tampering(
    app: Flask, services: Services, world: World
) -> None:
    coordinator = signed_in(app, services, StaffRole.COORDINATOR)
    page = coordinator.get("/audit").get_data(as_text=True)
    assert "alert.approved" in page and "staff.login" in page
    post_form(coordinator, "/audit/verify", {}, page)
    assert "The chain is intact" in coordinator.get("/audit").get_data(as_text=True)
    with services.database.session() as session:
        event = session.scalars(select(AuditEvent).order_by(AuditEvent.id).limit(1)).one()
        event.action = "something.else"
        tampered = event.id
    post_form(coordinator, "/audit/verify", {}, page)
    assert f"broken at event {tampered}" in coordinator.get("/audit").get_data(as_text=True)


def test_the_simulator_phone_texts_the_hotline_and_shows_that_numbers_inbox(
    client: FlaskClient, services: Services, world: World
) -> None:
    page = client.get("/simulator/phone").get_data(as_text=True)
    response = post_form(
        client, "/simulator/phone", {"From": "503-555-0142", "Body": "JOIN Cully"}, page
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "YES" in body  # the double opt-in question arrived in this number's inbox
    other = post_form(client, "/simulator/phone", {"From": "503-555-0143", "Body": ""}, page)
    assert "No messages yet." in other.get_data(as_text=True)
    bad = post_form(client, "/simulator/phone", {"From": "not a number", "Body": "hi"}, page)
    assert bad.status_code == 400


def test_a_responder_account_sees_its_own_dispatches(
    app: Flask, services: Services, world: World
) -> None:
    with services.database.session() as session:
        session.add(Dispatch(incident_id=world.incident_id, responder_id=world.responder_id))
    client = app.test_client()
    sign_in(
        client,
        services,
        add_account(services, StaffRole.RESPONDER, responder_id=world.responder_id),
    )
    page = client.get("/my").get_data(as_text=True)
    assert "K7P2" in page and "Cully" in page
    assert client.get("/board").status_code == 403


def test_the_board_speaks_spanish(dispatcher: FlaskClient, world: World) -> None:
    page = dispatcher.get("/board?lang=es").get_data(as_text=True)
    assert "Incidentes" in page and 'lang="es"' in page
    assert 'lang="es"' in dispatcher.get("/board").get_data(as_text=True)  # remembered


@pytest.mark.parametrize(
    ("note", "message"),
    [
        ("call 503 555 0101 now", "La nota parece tener un número de teléfono"),
        ("x" * 10_000, "como máximo 80 caracteres"),
    ],
)
def test_a_refusal_speaks_the_staff_language(
    dispatcher: FlaskClient, world: World, note: str, message: str
) -> None:
    path = f"/board/alerts/{world.alert_id}"
    page = dispatcher.get(f"{path}?lang=es").get_data(as_text=True)
    response = post_form(dispatcher, f"{path}/follow-up", {"kind": "update", "note_en": note}, page)
    error = re.search(r'<p class="error" role="alert">(.*?)</p>', response.get_data(as_text=True))
    assert error is not None
    assert message in error.group(1) and "555 0101" not in error.group(1)
    assert "The note" not in error.group(1)


def test_every_live_page_names_the_fragment_it_refreshes_from(
    dispatcher: FlaskClient, world: World
) -> None:
    incident, alert = f"/board/incidents/{world.incident_id}", f"/board/alerts/{world.alert_id}"
    for path in ("/board", incident, alert):
        page = dispatcher.get(path).get_data(as_text=True)
        assert f'data-live-url="{path}/live"' in page
        assert "/static/vendor/socket.io.min.js" in page and "/static/board.js" in page
        assert dispatcher.get(f"{path}/live").status_code == 200


def test_a_checkpoint_kept_from_the_audit_page_catches_a_rewritten_chain(
    app: Flask, services: Services, world: World
) -> None:
    from tests.rapidresponse.test_audit_checkpoint import rewrite_whole_chain

    coordinator = signed_in(app, services, StaffRole.COORDINATOR)
    page = coordinator.get("/audit").get_data(as_text=True)
    shown = re.search(r'<code class="checkpoint">(rr-audit:\d+:[0-9a-f]{64})</code>', page)
    assert shown, "the audit page shows no checkpoint to keep"
    kept = shown.group(1)
    post_form(coordinator, "/audit/verify", {"checkpoint": kept}, page)
    after = coordinator.get("/audit").get_data(as_text=True)
    assert "The chain is intact" in after and "It matches the checkpoint you kept" in after

    post_form(coordinator, "/audit/verify", {"checkpoint": "rr-audit:yesterday"}, page)
    assert "That is not a checkpoint" in coordinator.get("/audit").get_data(as_text=True)

    rewrite_whole_chain(services.database, position=1)
    post_form(coordinator, "/audit/verify", {"checkpoint": kept}, page)
    after = coordinator.get("/audit").get_data(as_text=True)
    assert "does not match the checkpoint you kept" in after
    assert "The chain is intact" not in after
