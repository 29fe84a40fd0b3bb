"""The WhatsApp templates page, and what the alert page says of each channel before a
send: what a coordinator types wrong gets an answer in words (never a 500), and a kind
and language without an approved template is shown as the people it sends by SMS."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from dispatch.services import Services
from rapidresponse import broadcast, whatsapp
from rapidresponse.models import (
    AlertKind,
    AuditEvent,
    Language,
    StaffRole,
    Subscriber,
    SubscriberStatus,
    TemplateStatus,
    WhatsAppTemplate,
)
from tests.dispatch.conftest import ACCOUNT_SID
from tests.dispatch.test_broadcast_core import TEXTS, make_area, subscribe
from tests.twilio_fake import FakeTwilio, content_template
from tests.web.staff_helpers import add_account, post_form, sign_in

SID = "HX" + "ab12" * 8
PAGE = "/whatsapp/templates"


@pytest.fixture
def coordinator(app: Flask, services: Services) -> FlaskClient:
    client = app.test_client()
    sign_in(client, services, add_account(services, StaffRole.COORDINATOR))
    return client


def save(client: FlaskClient, path: str, form: dict[str, str]):  # type: ignore[no-untyped-def]
    """POST the form on the templates page (with that page's CSRF token)."""
    return post_form(client, path, form, client.get(PAGE).get_data(as_text=True))


def stored(services: Services) -> int:
    with services.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(WhatsAppTemplate)) or 0)


def test_every_kind_and_language_has_a_body_to_submit_that_meta_accepts(
    coordinator: FlaskClient,
) -> None:
    page = coordinator.get(PAGE).get_data(as_text=True)
    for kind in AlertKind:
        for language in Language:
            body = whatsapp.SUGGESTED_BODIES[kind, language]
            assert f'id="{kind.value}-{language.value}"' in page
            assert body in page
            # One variable, never at the start or the end (Meta's rule).
            assert re.findall(r"\{\{\d+\}\}", body) == ["{{1}}"]
            assert not body.startswith("{{") and not body.endswith("}}")


def test_a_coordinator_enters_an_approved_template_and_the_page_shows_it(
    coordinator: FlaskClient, services: Services
) -> None:
    saved = save(coordinator, f"{PAGE}/alert/es", {"content_sid": SID, "status": "approved"})
    assert saved.status_code == 303
    with services.database.session() as session:
        assert whatsapp.approved_languages(session, AlertKind.ALERT) == {Language.ES}
    page = coordinator.get(PAGE).get_data(as_text=True)
    row = page.split('id="alert-es"')[1].split("</tr>")[0]
    assert SID in row and 'class="approved"' in row
    assert 'value="approved" selected' in row
    # Marked rejected later, it is no longer used.
    save(coordinator, f"{PAGE}/alert/es", {"content_sid": SID, "status": "rejected"})
    with services.database.session() as session:
        assert whatsapp.approved_languages(session, AlertKind.ALERT) == set()
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.action == "whatsapp.template_saved")
        ).all()
    assert stored(services) == 1 and len(actions) == 2  # each change audited


@pytest.mark.parametrize(
    ("form", "said"),
    [
        ({"content_sid": "HX123", "status": "approved"}, "That is not a Content API sid"),
        ({"content_sid": "x" * 10_000, "status": "approved"}, "That is not a Content API sid"),
        ({"content_sid": SID, "status": "maybe"}, "Choose the template"),
        ({"content_sid": SID}, "Choose the template"),
    ],
)
def test_what_is_typed_wrong_is_refused_in_words_and_nothing_is_stored(
    coordinator: FlaskClient, services: Services, form: dict[str, str], said: str
) -> None:
    answer = save(coordinator, f"{PAGE}/update/en", form)
    assert answer.status_code == 400
    assert said in answer.get_data(as_text=True)
    assert stored(services) == 0


def test_an_unknown_kind_or_language_is_not_found(coordinator: FlaskClient) -> None:
    for path in (f"{PAGE}/panic/en", f"{PAGE}/alert/fr"):
        answer = save(coordinator, path, {"content_sid": SID, "status": "approved"})
        assert answer.status_code == 404


def test_the_alert_page_says_who_goes_by_which_channel(
    app: Flask, services: Services, coordinator: FlaskClient
) -> None:
    area = make_area(services, "cully")
    active, none = SubscriberStatus.ACTIVE, SubscriberStatus.NO_CONSENT
    for phone, sms, on_whatsapp in (
        ("+15035554101", active, none),
        ("+15035554102", none, active),
        ("+15035554103", active, active),
    ):
        subscriber_id = subscribe(services, phone, area, status=sms)
        with services.database.session() as session:
            session.get_one(Subscriber, subscriber_id).whatsapp_status = on_whatsapp
    with services.database.session() as session:
        alert_id = broadcast.draft(session, kind=AlertKind.ALERT, texts=TEXTS, area_ids=[area]).id
    page = coordinator.get(f"/board/alerts/{alert_id}").get_data(as_text=True)
    assert "By SMS: 2 people. 1 of them is on WhatsApp too" in page
    assert "By WhatsApp, with its approved template: 0 people." in page
    assert "On WhatsApp only, with no approved template in their language: 1 person." in page
    with services.database.session() as session:
        whatsapp.save_template(
            session,
            kind=AlertKind.ALERT,
            language=Language.EN,
            content_sid=SID,
            variables=["text"],
            status=TemplateStatus.APPROVED,
            staff_id=None,
        )
    page = coordinator.get(f"/board/alerts/{alert_id}").get_data(as_text=True)
    assert "By SMS: 1 person." in page
    assert "By WhatsApp, with its approved template: 2 people." in page
    assert "On WhatsApp only" not in page


@pytest.fixture
def twilio_coordinator(sms_app: Flask, twilio_services: Services) -> FlaskClient:
    client = sms_app.test_client()
    sign_in(client, twilio_services, add_account(twilio_services, StaffRole.COORDINATOR))
    return client


@pytest.mark.sends_through_api
def test_templates_and_their_reviews_are_read_from_twilio(
    twilio_coordinator: FlaskClient, twilio_services: Services, fake: FakeTwilio
) -> None:
    ours = {
        "alert-es": content_template(
            ACCOUNT_SID, "rapidresponse_alert_es", "es", "Alerta {{1}} fin"
        ),
        "update-en": content_template(
            ACCOUNT_SID, "rapidresponse_update_en", "en", "Update {{1}} end", category="MARKETING"
        ),
        "all_clear-en": content_template(
            ACCOUNT_SID, "rapidresponse_all_clear_en", "en", "Clear {{1}} end", status="pending"
        ),
    }
    fake.contents = [
        *ours.values(),
        content_template(ACCOUNT_SID, "spring_sale", "en", "x {{1}} y"),
    ]
    answer = save(twilio_coordinator, f"{PAGE}/sync", {})
    assert answer.status_code == 303
    page = twilio_coordinator.get(PAGE).get_data(as_text=True)
    assert "3 templates of ours found at Twilio." in page
    assert "1 approved template is not in the Utility category: it is not used." in page
    with twilio_services.database.session() as session:
        saved = {
            f"{t.kind.value}-{t.language.value}": (t.content_sid, t.status)
            for t in session.scalars(select(WhatsAppTemplate))
        }
    assert saved == {
        "alert-es": (ours["alert-es"]["sid"], TemplateStatus.APPROVED),
        "update-en": (ours["update-en"]["sid"], TemplateStatus.REJECTED),
        "all_clear-en": (ours["all_clear-en"]["sid"], TemplateStatus.PENDING),
    }


@pytest.mark.sends_through_api
def test_when_twilio_cannot_be_asked_nothing_changes_and_it_says_so(
    twilio_coordinator: FlaskClient, twilio_services: Services, fake: FakeTwilio
) -> None:
    fake.fail_next(status=401, code=20003)
    answer = save(twilio_coordinator, f"{PAGE}/sync", {})
    assert answer.status_code == 502
    assert "Twilio could not be asked" in answer.get_data(as_text=True)
    assert stored(twilio_services) == 0


def test_without_twilio_there_is_nothing_to_sync(coordinator: FlaskClient) -> None:
    assert "Sync from Twilio" not in coordinator.get(PAGE).get_data(as_text=True)
    answer = save(coordinator, f"{PAGE}/sync", {})
    assert answer.status_code == 400
    assert "No Twilio account is set here" in answer.get_data(as_text=True)
