"""Staff onboarding on the web: a coordinator's one-time link, a password, an authenticator.

The link is attacked as its users would meet it: used twice, used late, withdrawn, given a
short password, guessed; and as whoever holds the disk would: only its hash is stored.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from dispatch.services import Services
from rapidresponse.models import AuditEvent, StaffInvite, StaffRole, StaffUser, utcnow
from rapidresponse.staff import totp_secret
from tests.web.staff_helpers import PASSWORD, add_account, csrf_from, post_form, sign_in

NEW = "lupe@example.org"
LINK = re.compile(r'value="(http[^"]+/invite/([A-Za-z0-9_-]+))"')


@pytest.fixture
def coordinator(app: Flask, services: Services) -> FlaskClient:
    client = app.test_client()
    sign_in(client, services, add_account(services, StaffRole.COORDINATOR))
    return client


def invite(client: FlaskClient, email: str = NEW, role: str = "dispatcher") -> str:
    page = client.get("/staff").get_data(as_text=True)
    response = post_form(client, "/staff/invites", {"email": email, "role": role}, page)
    assert response.status_code == 200
    found = LINK.search(response.get_data(as_text=True))
    assert found, "no link on the page"
    return found.group(2)


def join(app: Flask, token: str, password: str = PASSWORD, again: str | None = None):  # type: ignore[no-untyped-def]
    browser = app.test_client()
    page = browser.get(f"/invite/{token}")
    if page.status_code != 200:
        return browser, page
    form = {
        "password": password,
        "again": password if again is None else again,
        "csrf_token": csrf_from(page.get_data(as_text=True)),
    }
    return browser, browser.post(f"/invite/{token}", data=form)


def test_an_invited_dispatcher_sets_a_password_and_enrols_an_authenticator(
    app: Flask, services: Services, coordinator: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = invite(coordinator)
    browser, joined = join(app, token)
    assert joined.status_code == 302 and joined.headers["Location"].startswith("/login/code")
    code_page = browser.get("/login/code").get_data(as_text=True)
    assert "data:image/svg+xml" in code_page  # the QR code to scan: enrolment
    with services.database.session() as session:
        user = session.scalars(select(StaffUser).where(StaffUser.email == NEW)).one()
        assert user.role is StaffRole.DISPATCHER and user.totp_enrolled_at is None
        user_id = user.id
        secret = totp_secret(user, services.cipher)  # what the phone scanned
    assert secret is not None and secret in code_page  # also shown, to type in
    signed = browser.post(
        "/login/code", data={"code": pyotp.TOTP(secret).now(), "csrf_token": csrf_from(code_page)}
    )
    assert signed.status_code == 302 and signed.headers["Location"] == "/board"
    assert browser.get("/board").status_code == 200
    with services.database.session() as session:
        actions = session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)).all()
        stored = session.scalars(select(StaffInvite.token_hash)).one()
    assert actions[-3:] == [  # after the coordinator's own sign-in
        "staff.invited",
        "staff.joined",
        "staff.enrolled",
    ]
    assert token not in stored and token not in caplog.text
    # The audit page names people, not ids.
    audit_page = coordinator.get("/audit").get_data(as_text=True)
    assert NEW in audit_page and f">staff:{user_id}<" not in audit_page


def test_a_link_works_once(app: Flask, coordinator: FlaskClient) -> None:
    token = invite(coordinator)
    assert join(app, token)[1].status_code == 302
    _browser, again = join(app, token)
    assert again.status_code == 404
    assert "This link does not work" in again.get_data(as_text=True)


def test_a_short_password_is_refused_and_the_link_still_works(
    app: Flask, services: Services, coordinator: FlaskClient
) -> None:
    token = invite(coordinator)
    _browser, short = join(app, token, "too short")
    assert short.status_code == 400
    assert "A password needs at least 12 characters." in short.get_data(as_text=True)
    _browser, different = join(app, token, PASSWORD, "something else entirely")
    assert "The two passwords are not the same." in different.get_data(as_text=True)
    with services.database.session() as session:
        assert session.scalars(select(StaffUser).where(StaffUser.email == NEW)).all() == []
    assert join(app, token)[1].status_code == 302


def test_an_expired_or_withdrawn_or_guessed_link_does_not_work(
    app: Flask, services: Services, coordinator: FlaskClient
) -> None:
    expired = invite(coordinator, "late@example.org")
    with services.database.session() as session:
        session.execute(
            update(StaffInvite)
            .where(StaffInvite.email == "late@example.org")
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    assert join(app, expired)[1].status_code == 404
    withdrawn = invite(coordinator, "gone@example.org")
    with services.database.session() as session:
        invite_id = session.scalar(
            select(StaffInvite.id).where(StaffInvite.email == "gone@example.org")
        )
    staff = coordinator.get("/staff").get_data(as_text=True)
    assert "gone@example.org" in staff
    post_form(coordinator, f"/staff/invites/{invite_id}/withdraw", {}, staff)
    assert join(app, withdrawn)[1].status_code == 404
    for guess in ("x", "A" * 43, "x" * 10_000, "..%2F..%2Fetc"):
        assert join(app, guess)[1].status_code == 404


def test_a_new_link_replaces_the_earlier_one(app: Flask, coordinator: FlaskClient) -> None:
    first = invite(coordinator)
    second = invite(coordinator)
    assert join(app, first)[1].status_code == 404
    assert join(app, second)[1].status_code == 302


@pytest.mark.parametrize(
    ("email", "role", "refusal"),
    [
        ("not an address", "dispatcher", "That is not an e-mail address."),
        ("coordinator@example.org", "dispatcher", "An account with that e-mail address exists"),
        (NEW, "responder", "Only dispatchers and coordinators are invited this way."),
        (NEW, "admin", "Only dispatchers and coordinators are invited this way."),
        ("x" * 10_000 + "@example.org", "dispatcher", "That is not an e-mail address."),
    ],
)
def test_a_bad_invitation_is_refused_in_words(
    coordinator: FlaskClient, email: str, role: str, refusal: str
) -> None:
    page = coordinator.get("/staff").get_data(as_text=True)
    response = post_form(coordinator, "/staff/invites", {"email": email, "role": role}, page)
    assert response.status_code == 303
    assert refusal in coordinator.get("/staff").get_data(as_text=True)


def test_a_dispatcher_cannot_invite(app: Flask, services: Services) -> None:
    client = app.test_client()
    sign_in(client, services, add_account(services, StaffRole.DISPATCHER))
    page = client.get("/board").get_data(as_text=True)
    asked = {"email": NEW, "role": "coordinator"}
    assert post_form(client, "/staff/invites", asked, page).status_code == 403


def test_a_link_lives_24_hours_from_when_it_was_made(
    app: Flask, services: Services, coordinator: FlaskClient
) -> None:
    before = utcnow()
    page = post_form(
        coordinator,
        "/staff/invites",
        {"email": "day@example.org", "role": "dispatcher"},
        coordinator.get("/staff").get_data(as_text=True),
    ).get_data(as_text=True)
    after = utcnow()
    with services.database.session() as session:
        expires_at = session.scalars(
            select(StaffInvite.expires_at).where(StaffInvite.email == "day@example.org")
        ).one()
    assert before + timedelta(hours=24) <= expires_at <= after + timedelta(hours=24)
    # The coordinator is told until when, in local time (UTC on hover).
    assert f'title="{expires_at.strftime("%Y-%m-%d %H:%M UTC")}"' in page
    token = LINK.search(page)
    assert token is not None
    with services.database.session() as session:  # a minute before its end, it still works
        session.execute(
            update(StaffInvite)
            .where(StaffInvite.email == "day@example.org")
            .values(expires_at=utcnow() + timedelta(minutes=1))
        )
    assert join(app, token.group(2))[1].status_code == 302
