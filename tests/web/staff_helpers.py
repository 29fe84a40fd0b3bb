"""Staff accounts for tests: created like `rapidresponse user add` does, signed in like a
browser does (password, then a real TOTP code from the account's secret)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from dispatch.services import Services
from rapidresponse.models import StaffRole, StaffUser
from rapidresponse.people import add_staff_user
from rapidresponse.staff import TOTP_STEP_SECONDS, begin_enrolment, totp_secret

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


@dataclass(frozen=True)
class Account:
    id: int
    email: str
    role: StaffRole
    secret: str | None  # None: not enrolled yet


def add_account(
    services: Services,
    role: StaffRole,
    email: str | None = None,
    *,
    enrolled: bool = True,
    responder_id: int | None = None,
) -> Account:
    email = email or f"{role.value}@example.org"
    with services.database.session() as session:
        user = add_staff_user(session, email=email, role=role, password=PASSWORD)
        user.responder_id = responder_id
        secret = None
        if enrolled:
            secret = begin_enrolment(user, services.cipher)
            user.totp_enrolled_at = user.created_at
        return Account(user.id, user.email, role, secret)


def secret_of(services: Services, account: Account) -> str:
    with services.database.session() as session:
        user = session.scalars(select(StaffUser).where(StaffUser.id == account.id)).one()
        found = totp_secret(user, services.cipher)
        assert found is not None
        return found


def next_code(services: Services, account: Account) -> str:
    """A code the server has not seen yet: codes are single use, so a second sign-in in
    the same 30 seconds takes the next step's code (the server allows one step of drift)."""
    with services.database.session() as session:
        last = session.scalar(select(StaffUser.totp_last_step).where(StaffUser.id == account.id))
    step = int(time.time()) // TOTP_STEP_SECONDS
    if last is not None and last >= step:
        step = last + 1
    return pyotp.TOTP(secret_of(services, account)).at(step * TOTP_STEP_SECONDS)


def csrf_from(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "no CSRF token on the page"
    return found.group(1)


def post_form(client: FlaskClient, path: str, data: Mapping[str, object], page: str | None = None):  # type: ignore[no-untyped-def]
    """POST like the browser: with the CSRF token of the page the form is on."""
    page = page if page is not None else client.get(path).get_data(as_text=True)
    return client.post(path, data={**data, "csrf_token": csrf_from(page)})


def sign_in(client: FlaskClient, services: Services, account: Account) -> None:
    response = post_form(client, "/login", {"email": account.email, "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    response = post_form(client, "/login/code", {"code": next_code(services, account)})
    assert response.status_code == 302, response.get_data(as_text=True)


def session_cookie(
    app: Flask, services: Services, role: StaffRole = StaffRole.DISPATCHER, email: str | None = None
) -> dict[str, str]:
    """The Cookie header of a browser signed in as a new ``role`` account."""
    client = app.test_client()
    sign_in(client, services, add_account(services, role, email))
    cookie = client.get_cookie("session")
    assert cookie is not None
    return {"Cookie": f"session={cookie.value}"}
