"""Coordinators name the areas as people do: aliases and ZIPs on the web, audited, used
by the hotline from the next text on; anyone on the board can try a message."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from dispatch.services import Services
from rapidresponse.areas import find_area
from rapidresponse.models import Area, AuditEvent, StaffRole
from tests.web.sms_helpers import Phone
from tests.web.staff_helpers import add_account, post_form, sign_in


def signed_in(app: Flask, services: Services, role: StaffRole) -> FlaskClient:
    client = app.test_client()
    sign_in(client, services, add_account(services, role))
    return client


def area(services: Services, slug: str) -> Area:
    with services.database.session() as session:
        found = find_area(session, slug)
        assert found is not None
        return found


def test_a_coordinator_adds_aliases_and_zips_and_the_hotline_uses_them(
    sms_app: Flask, twilio_services: Services, alice: Phone
) -> None:
    assert alice.text("JOIN centro").startswith("We could not find")  # type: ignore[union-attr]
    coordinator = signed_in(sms_app, twilio_services, StaffRole.COORDINATOR)
    chinatown = area(twilio_services, "old-town-chinatown")
    path = f"/areas/{chinatown.id}"
    page = coordinator.get(path).get_data(as_text=True)
    assert "Old Town/Chinatown" in page
    response = post_form(
        coordinator,
        path,
        {"aliases": "\n".join([*chinatown.aliases, "centro", "Downtown"]), "zips": "97209 97204"},
        page,
    )
    assert response.status_code == 303
    listing = coordinator.get("/areas").get_data(as_text=True)
    assert "centro" in listing and "97204" in listing
    assert alice.text("JOIN centro") == (
        "Reply YES to get alerts for Old Town/Chinatown. Msg&data rates may apply. "
        "Text STOP to end."
    )
    with twilio_services.database.session() as session:
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "area.names_changed")
        ).one()
        assert event.subject == f"area:{chinatown.id}" and event.actor.startswith("staff:")
        assert event.details["zips"] == ["97209", "97204"]


@pytest.mark.parametrize(
    ("zips", "aliases", "message"),
    [
        ("9720", "", "A ZIP code is five digits"),
        ("97204-1234", "", "A ZIP code is five digits"),
        ("", "x" * 81, "An alias is too long"),
        ("", "\n".join(f"name {n}" for n in range(41)), "Too many aliases"),
    ],
)
def test_bad_names_change_nothing(
    app: Flask, services: Services, zips: str, aliases: str, message: str
) -> None:
    from tests.web.test_access import build_world

    build_world(services)
    coordinator = signed_in(app, services, StaffRole.COORDINATOR)
    cully = area(services, "cully")
    response = post_form(coordinator, f"/areas/{cully.id}", {"aliases": aliases, "zips": zips})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page and "Nothing was changed" in page
    assert zips in page  # what was typed is kept in the form, to be corrected
    after = area(services, "cully")
    assert (after.aliases, after.zips) == (cully.aliases, cully.zips)


def test_a_zip_of_several_areas_joins_each(
    sms_app: Flask, twilio_services: Services, alice: Phone
) -> None:
    coordinator = signed_in(sms_app, twilio_services, StaffRole.COORDINATOR)
    for slug in ("lents", "foster-powell"):
        found = area(twilio_services, slug)
        post_form(
            coordinator,
            f"/areas/{found.id}",
            {"aliases": "\n".join(found.aliases), "zips": " ".join([*found.zips, "97266"])},
        )
    answer = alice.text("JOIN 97266")
    assert answer is not None and "Lents" in answer and "Foster-Powell" in answer


def test_try_a_message_shows_where_a_report_goes(app: Flask, services: Services) -> None:
    from tests.web.test_access import build_world

    build_world(services)
    dispatcher = signed_in(app, services, StaffRole.DISPATCHER)
    page = dispatcher.get("/areas?text=agents+in+Kenton+near+the+Paul+Bunyan").get_data(
        as_text=True
    )
    assert 'data-placed="Kenton"' in page
    page = dispatcher.get("/areas?text=vans+on+N+Lombard+St").get_data(as_text=True)
    assert 'data-placed=""' in page
    page = dispatcher.get("/areas?text=97203").get_data(as_text=True)
    assert 'data-joins="St. Johns|Portsmouth"' in page
    assert dispatcher.get(f"/areas/{area(services, 'cully').id}").status_code == 403


def test_the_areas_page_in_spanish(app: Flask, services: Services) -> None:
    from tests.web.test_access import build_world

    build_world(services)
    coordinator = signed_in(app, services, StaffRole.COORDINATOR)
    page = coordinator.get("/areas?lang=es&text=Cully").get_data(as_text=True)
    assert "Probar un mensaje" in page and "Otros nombres" in page
