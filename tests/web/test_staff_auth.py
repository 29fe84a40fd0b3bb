"""Staff sign-in: argon2id password, a single-use TOTP code, server-side sessions."""

from __future__ import annotations

import logging
import re
import secrets
import time
from dataclasses import replace
from datetime import timedelta

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from dispatch.services import Services
from rapidresponse.models import (
    AuditEvent,
    StaffDevice,
    StaffLoginStep,
    StaffRole,
    StaffSession,
    StaffUser,
    utcnow,
)
from rapidresponse.staff import token_hash
from tests.web.staff_helpers import (
    PASSWORD,
    add_account,
    csrf_from,
    next_code,
    post_form,
    secret_of,
    sign_in,
)
from web import auth


def test_a_dispatcher_signs_in_with_password_and_code(
    client: FlaskClient, services: Services
) -> None:
    bea = add_account(services, StaffRole.DISPATCHER, "bea@example.org")
    response = post_form(client, "/login", {"email": "Bea@Example.org ", "password": PASSWORD})
    assert response.status_code == 302 and response.headers["Location"].startswith("/login/code")
    assert client.get("/board").status_code == 302  # the password alone opens nothing
    response = post_form(client, "/login/code", {"code": next_code(services, bea)})
    assert response.status_code == 302 and response.headers["Location"] == "/board"
    assert client.get("/board").status_code == 200
    with services.database.session() as session:
        assert session.scalar(select(StaffSession.user_id)) == bea.id
        assert "staff.login" in session.scalars(select(AuditEvent.action)).all()


@pytest.mark.parametrize(
    ("email", "password"),
    [("bea@example.org", "wrong password, long"), ("nobody@example.org", PASSWORD)],
)
def test_a_wrong_email_or_password_gets_the_same_answer(
    client: FlaskClient, services: Services, email: str, password: str
) -> None:
    add_account(services, StaffRole.DISPATCHER, "bea@example.org")
    response = post_form(client, "/login", {"email": email, "password": password})
    assert response.status_code == 401
    assert "That email and password do not match." in response.get_data(as_text=True)
    assert client.get("/login/code").status_code == 302


def test_a_code_works_only_once(app: Flask, services: Services) -> None:
    bea = add_account(services, StaffRole.DISPATCHER)
    code = next_code(services, bea)
    first, second = app.test_client(), app.test_client()
    for browser in (first, second):
        post_form(browser, "/login", {"email": bea.email, "password": PASSWORD})
    assert post_form(first, "/login/code", {"code": code}).status_code == 302
    refused = post_form(second, "/login/code", {"code": code})
    assert refused.status_code == 401
    assert "already used" in refused.get_data(as_text=True)
    assert second.get("/board").status_code == 302


@pytest.mark.parametrize("code", ["000000", "12345", "abcdef", "1" * 16, ""])
def test_a_wrong_code_is_refused(client: FlaskClient, services: Services, code: str) -> None:
    bea = add_account(services, StaffRole.DISPATCHER)
    post_form(client, "/login", {"email": bea.email, "password": PASSWORD})
    if code == "000000" and pyotp.TOTP(secret_of(services, bea)).verify("000000", valid_window=1):
        code = "999999"  # one time in about 300,000, 000000 is a valid code just now
    assert post_form(client, "/login/code", {"code": code}).status_code in (400, 401)
    assert client.get("/board").status_code == 302


def test_a_new_account_enrols_by_qr_code(client: FlaskClient, services: Services) -> None:
    cam = add_account(services, StaffRole.COORDINATOR, "cam@example.org", enrolled=False)
    post_form(client, "/login", {"email": cam.email, "password": PASSWORD})
    page = client.get("/login/code").get_data(as_text=True)
    assert 'src="data:image/svg+xml' in page
    secret = re.search(r'<code id="totp-secret">([A-Z2-7]+)</code>', page)
    assert secret is not None
    assert client.get("/login/code").get_data(as_text=True).count(secret.group(1)) == 1  # same key
    code = pyotp.TOTP(secret.group(1)).now()
    assert post_form(client, "/login/code", {"code": code}, page).status_code == 302
    with services.database.session() as session:
        user = session.get_one(StaffUser, cam.id)
        assert user.totp_enrolled_at is not None
        assert secret.group(1).encode() not in (user.totp_secret_sealed or b"")  # sealed
    client.post("/logout", data={"csrf_token": _token(client)})
    post_form(client, "/login", {"email": cam.email, "password": PASSWORD})
    assert "totp-secret" not in client.get("/login/code").get_data(as_text=True)  # no QR again


def _token(client: FlaskClient) -> str:
    from tests.web.staff_helpers import csrf_from

    return csrf_from(client.get("/board").get_data(as_text=True))


def test_the_password_step_expires(client: FlaskClient, services: Services) -> None:
    bea = add_account(services, StaffRole.DISPATCHER)
    post_form(client, "/login", {"email": bea.email, "password": PASSWORD})
    assert client.get("/login/code").status_code == 200
    with services.database.session() as session:
        session.execute(update(StaffLoginStep).values(created_at=utcnow() - timedelta(seconds=301)))
    assert client.get("/login/code").status_code == 302
    login_page = client.get("/login").get_data(as_text=True)  # the code page is gone
    code = post_form(client, "/login/code", {"code": next_code(services, bea)}, page=login_page)
    assert code.status_code == 302 and code.headers["Location"] == "/login"
    assert client.get("/board").status_code == 302


def test_logins_are_rate_limited_per_account(app: Flask, services: Services) -> None:
    services.settings = replace(services.settings, login_limit="3 per 15 minutes")
    bea = add_account(services, StaffRole.DISPATCHER)
    client = app.test_client()
    for _ in range(3):
        assert (
            post_form(
                client, "/login", {"email": bea.email, "password": "wrong-password-x"}
            ).status_code
            == 401
        )
    limited = post_form(client, "/login", {"email": bea.email, "password": PASSWORD})
    assert limited.status_code == 429  # even the right password waits now
    assert "Too many attempts" in limited.get_data(as_text=True)


def test_one_address_guessing_across_accounts_is_slowed_too(app: Flask, services: Services) -> None:
    services.settings = replace(services.settings, login_limit="3 per 15 minutes")
    here, elsewhere = ({"REMOTE_ADDR": a} for a in ("198.51.100.7", "203.0.113.9"))
    guesser = app.test_client()
    budget = 3 * auth.ADDRESS_WIDE
    for n in range(budget):  # one guess per account: every account is within its budget
        email = add_account(services, StaffRole.DISPATCHER, f"d{n}@example.org").email
        page = guesser.get("/login", environ_base=here).get_data(as_text=True)
        wrong = {"email": email, "password": "wrong-password-x", "csrf_token": csrf_from(page)}
        assert guesser.post("/login", data=wrong, environ_base=here).status_code == 401
    victim = add_account(services, StaffRole.DISPATCHER, "v@example.org")
    page = guesser.get("/login", environ_base=here).get_data(as_text=True)
    right = {"email": victim.email, "password": PASSWORD, "csrf_token": csrf_from(page)}
    assert guesser.post("/login", data=right, environ_base=here).status_code == 429
    colleague = app.test_client()  # another address is not held back by this one
    page = colleague.get("/login", environ_base=elsewhere).get_data(as_text=True)
    right["csrf_token"] = csrf_from(page)
    assert colleague.post("/login", data=right, environ_base=elsewhere).status_code == 302


def test_codes_are_rate_limited_too(client: FlaskClient, services: Services) -> None:
    services.settings = replace(services.settings, login_limit="3 per 15 minutes")
    bea = add_account(services, StaffRole.DISPATCHER)
    assert (
        post_form(client, "/login", {"email": bea.email, "password": PASSWORD}).status_code == 302
    )
    for _ in range(3):
        assert post_form(client, "/login/code", {"code": "000000"}).status_code == 401
    limited = post_form(client, "/login/code", {"code": next_code(services, bea)})
    assert limited.status_code == 429  # even the right code waits now
    assert client.get("/board").status_code == 302  # and nobody is signed in


def test_a_session_ends_after_the_idle_timeout(client: FlaskClient, services: Services) -> None:
    sign_in(client, services, add_account(services, StaffRole.DISPATCHER))
    assert client.get("/board").status_code == 200
    idle = timedelta(minutes=services.settings.staff_idle_minutes, seconds=1)
    with services.database.session() as session:
        session.execute(update(StaffSession).values(last_seen_at=utcnow() - idle))
    assert client.get("/board").status_code == 302


def test_a_session_ends_after_the_absolute_timeout_however_busy(
    client: FlaskClient, services: Services
) -> None:
    sign_in(client, services, add_account(services, StaffRole.DISPATCHER))
    with services.database.session() as session:
        session.execute(update(StaffSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get("/board").status_code == 302


def test_activity_keeps_a_session_alive(client: FlaskClient, services: Services) -> None:
    sign_in(client, services, add_account(services, StaffRole.DISPATCHER))
    almost = timedelta(minutes=services.settings.staff_idle_minutes - 1)
    with services.database.session() as session:
        session.execute(update(StaffSession).values(last_seen_at=utcnow() - almost))
    assert client.get("/board").status_code == 200
    with services.database.session() as session:
        seen = session.scalar(select(StaffSession.last_seen_at))
        assert seen is not None and utcnow() - seen < timedelta(seconds=10)


def test_a_board_re_reading_itself_does_not_keep_a_session_alive(
    client: FlaskClient, services: Services
) -> None:
    sign_in(client, services, add_account(services, StaffRole.DISPATCHER))
    almost = timedelta(minutes=services.settings.staff_idle_minutes - 1)
    with services.database.session() as session:
        session.execute(update(StaffSession).values(last_seen_at=utcnow() - almost))
    background = {"X-Board-Refresh": "background"}
    assert client.get("/board/live", headers=background).status_code == 200  # still live...
    with services.database.session() as session:
        seen = session.scalar(select(StaffSession.last_seen_at))
        assert seen is not None and utcnow() - seen >= almost  # ...but not younger
    with services.database.session() as session:
        idle = timedelta(minutes=services.settings.staff_idle_minutes, seconds=1)
        session.execute(update(StaffSession).values(last_seen_at=utcnow() - idle))
    assert client.get("/board/live", headers=background).status_code == 302


def test_signing_out_ends_the_session_on_the_server(
    client: FlaskClient, services: Services
) -> None:
    sign_in(client, services, add_account(services, StaffRole.DISPATCHER))
    with client.session_transaction() as cookie:
        token = cookie["staff_token"]
    assert client.post("/logout", data={"csrf_token": _token(client)}).status_code == 302
    with client.session_transaction() as cookie:
        cookie["staff_token"] = token  # an old copy of the cookie
    assert client.get("/board").status_code == 302


def test_a_coordinator_revokes_another_session(app: Flask, services: Services) -> None:
    coordinator, dispatcher = app.test_client(), app.test_client()
    sign_in(coordinator, services, add_account(services, StaffRole.COORDINATOR))
    sign_in(dispatcher, services, add_account(services, StaffRole.DISPATCHER))
    assert dispatcher.get("/board").status_code == 200
    page = coordinator.get("/staff/sessions").get_data(as_text=True)
    with services.database.session() as session:
        victim = session.scalar(
            select(StaffSession.id)
            .join(StaffUser, StaffUser.id == StaffSession.user_id)
            .where(StaffUser.role == StaffRole.DISPATCHER)
        )
    assert f'data-session-id="{victim}"' in page
    response = post_form(coordinator, f"/staff/sessions/{victim}/revoke", {}, page)
    assert response.status_code == 303
    assert dispatcher.get("/board").status_code == 302
    assert coordinator.get("/board").status_code == 200


def test_the_database_holds_only_a_hash_of_the_session_token(
    client: FlaskClient, services: Services
) -> None:
    sign_in(client, services, add_account(services, StaffRole.DISPATCHER))
    with client.session_transaction() as cookie:
        token = cookie["staff_token"]
    with services.database.session() as session:
        stored = session.scalar(select(StaffSession.token_hash))
    assert stored and token not in stored and len(stored) == 64


@pytest.mark.parametrize(
    ("target", "landing"),
    [
        ("https://evil.example", "/board"),
        ("//evil.example", "/board"),
        ("/\\evil.example", "/board"),
        ("/%09/evil.example", "/board"),  # a tab: browsers drop it, leaving //evil.example
        ("/%0a/evil.example", "/board"),
        ("/%0d/evil.example", "/board"),
        ("/people", "/people"),
    ],
)
def test_the_next_parameter_cannot_send_people_elsewhere(
    client: FlaskClient, services: Services, target: str, landing: str
) -> None:
    bea = add_account(services, StaffRole.DISPATCHER)
    response = post_form(
        client, f"/login?next={target}", {"email": bea.email, "password": PASSWORD}
    )
    code_page = response.headers["Location"]
    response = post_form(client, code_page, {"code": next_code(services, bea)})
    assert response.headers["Location"] == landing


def test_nothing_about_a_failed_login_is_logged(
    client: FlaskClient, services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    add_account(services, StaffRole.DISPATCHER, "bea@example.org")
    post_form(client, "/login", {"email": "bea@example.org", "password": "hunter2-hunter2"})
    assert "bea@example.org" not in caplog.text and "hunter2" not in caplog.text


@pytest.mark.parametrize(
    "code",
    [
        "١٢٣٤٥٦",
        "\uff11\uff12\uff13\uff14\uff15\uff16",
        "12345\uff16",
        "12 34 5",
        "\x00" * 6,
        "9" * 16,
    ],
)
def test_a_code_that_is_not_six_ascii_digits_is_just_wrong(
    client: FlaskClient, services: Services, code: str
) -> None:
    bea = add_account(services, StaffRole.DISPATCHER)
    post_form(client, "/login", {"email": bea.email, "password": PASSWORD})
    response = post_form(client, "/login/code", {"code": code})
    assert response.status_code in (400, 401)
    assert post_form(client, "/login/code", {"code": next_code(services, bea)}).status_code == 302


# --- what a copy of the disk cannot do, and what strangers cannot do to an account ----------


def test_a_cookie_minted_with_the_secret_key_skips_no_password(
    app: Flask, client: FlaskClient, services: Services
) -> None:
    """The review's script: with SECRET_KEY and DATA_KEYS from a copy of the disk, mint the
    session cookie of someone past the password step and type the account's real code."""
    coordinator = add_account(services, StaffRole.COORDINATOR)
    serializer = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    assert serializer is not None
    now = int(time.time())
    with services.database.session() as session:  # every hash the database holds
        stored = list(session.scalars(select(StaffLoginStep.token_hash)))
    forgeries = [
        {"pending_user": coordinator.id, "pending_at": now},  # the old design's cookie
        {"login_step": secrets.token_urlsafe(32)},
        *({"login_step": known} for known in stored),  # a hash is not its token
    ]
    for forged in forgeries:
        client.set_cookie(app.config["SESSION_COOKIE_NAME"], serializer.dumps(forged))
        assert client.get("/login/code").status_code == 302
        login_page = client.get("/login").get_data(as_text=True)
        code = {"code": next_code(services, coordinator)}
        response = post_form(client, "/login/code", code, page=login_page)
        assert response.status_code == 302 and response.headers["Location"] == "/login"
        assert client.get("/board").status_code == 302
    with services.database.session() as session:
        assert session.scalar(select(func.count()).select_from(StaffSession)) == 0


def test_the_code_step_is_a_hashed_row_used_once(client: FlaskClient, services: Services) -> None:
    bea = add_account(services, StaffRole.DISPATCHER)
    post_form(client, "/login", {"email": bea.email, "password": PASSWORD})
    with client.session_transaction() as cookie:
        token = cookie["login_step"]
    with services.database.session() as session:
        assert session.scalars(select(StaffLoginStep.token_hash)).all() == [token_hash(token)]
    assert post_form(client, "/login/code", {"code": next_code(services, bea)}).status_code == 302
    with services.database.session() as session:
        assert session.scalar(select(func.count()).select_from(StaffLoginStep)) == 0


def _hammer(app: Flask, email: str, addresses: int, each: int) -> None:
    for n in range(addresses):
        where = {"REMOTE_ADDR": f"198.51.{n // 250}.{n % 250 + 1}"}
        stranger = app.test_client()
        page = stranger.get("/login", environ_base=where).get_data(as_text=True)
        wrong = {"email": email, "password": "guess-guess-guess", "csrf_token": csrf_from(page)}
        for _ in range(each):
            stranger.post("/login", data=wrong, environ_base=where)


def test_strangers_hammering_an_account_do_not_lock_its_owner_out(
    app: Flask, services: Services
) -> None:
    services.settings = replace(services.settings, login_limit="3 per 15 minutes")
    bea = add_account(services, StaffRole.DISPATCHER)
    own = app.test_client()
    sign_in(own, services, bea)  # her phone has signed in before
    assert own.get_cookie("rr_device", path="/login") is not None
    post_form(own, "/logout", {}, page=own.get("/board").get_data(as_text=True))

    # Many addresses, each within its own budget, spend the account's shared one.
    _hammer(app, bea.email, addresses=12, each=3)
    stranger = app.test_client()
    right = {"email": bea.email, "password": PASSWORD}
    assert post_form(stranger, "/login", right).status_code == 429  # a new browser waits

    response = post_form(own, "/login", right)  # her own phone does not
    assert response.status_code == 302 and response.headers["Location"].startswith("/login/code")
    assert post_form(own, "/login/code", {"code": next_code(services, bea)}).status_code == 302
    assert own.get("/board").status_code == 200


def test_behind_one_proxy_one_account_hammered_leaves_the_others_in(
    app: Flask, services: Services
) -> None:
    """TRUSTED_PROXIES=0 behind a proxy: every browser has the proxy's address."""
    services.settings = replace(services.settings, login_limit="3 per 15 minutes")
    bea, cai = (add_account(services, StaffRole.DISPATCHER, f"{n}@example.org") for n in "bc")
    _hammer(app, bea.email, addresses=1, each=6)  # one address, the proxy's
    colleague = app.test_client()
    page = colleague.get("/login", environ_base={"REMOTE_ADDR": "198.51.0.1"}).get_data(
        as_text=True
    )
    right = {"email": cai.email, "password": PASSWORD, "csrf_token": csrf_from(page)}
    response = colleague.post("/login", data=right, environ_base={"REMOTE_ADDR": "198.51.0.1"})
    assert response.status_code == 302


def test_a_device_cookie_proves_nothing_by_itself(app: Flask, services: Services) -> None:
    bea = add_account(services, StaffRole.DISPATCHER)
    own = app.test_client()
    sign_in(own, services, bea)
    device = own.get_cookie("rr_device", path="/login")
    assert device is not None and device.http_only and device.path == "/login"
    with services.database.session() as session:
        stored = session.scalars(select(StaffDevice.token_hash)).all()
    assert stored == [token_hash(device.value)]  # the database holds only its hash
    thief = app.test_client()
    thief.set_cookie("rr_device", device.value, path="/login")
    wrong = post_form(thief, "/login", {"email": bea.email, "password": "not-her-password"})
    assert wrong.status_code == 401 and thief.get("/board").status_code == 302
