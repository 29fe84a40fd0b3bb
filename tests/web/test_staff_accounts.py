"""Staff accounts: a coordinator disables or re-enables an account, or forgets its
authenticator (a lost phone); each ends the account's sessions at once. The CLI does the
same when no coordinator can sign in. Nobody acts on their own account, and the last
active coordinator cannot be disabled."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from dispatch.services import Services
from rapidresponse.models import AuditEvent, StaffRole, StaffSession, StaffUser
from tests.web.staff_helpers import PASSWORD, Account, add_account, post_form, sign_in
from web.cli import cli


@pytest.fixture
def coordinator(app: Flask, services: Services) -> FlaskClient:
    client = app.test_client()
    sign_in(client, services, add_account(services, StaffRole.COORDINATOR, "cam@example.org"))
    return client


def signed_in_as(app: Flask, services: Services, account: Account) -> FlaskClient:
    client = app.test_client()
    sign_in(client, services, account)
    assert client.get("/board").status_code == 200
    return client


def act(coordinator: FlaskClient, account: Account, action: str) -> str:
    page = coordinator.get("/staff").get_data(as_text=True)
    response = post_form(coordinator, f"/staff/{account.id}/{action}", {}, page)
    assert response.status_code == 303 and response.headers["Location"] == "/staff"
    return coordinator.get("/staff").get_data(as_text=True)


def live_sessions_of(services: Services, account: Account) -> int:
    with services.database.session() as session:
        return len(
            session.scalars(
                select(StaffSession.id).where(
                    StaffSession.user_id == account.id, StaffSession.revoked_at.is_(None)
                )
            ).all()
        )


def password_step(client: FlaskClient, account: Account) -> int:
    response = post_form(client, "/login", {"email": account.email, "password": PASSWORD})
    return response.status_code


def test_disabling_an_account_ends_its_sessions_and_its_sign_in(
    app: Flask, services: Services, coordinator: FlaskClient
) -> None:
    dora = add_account(services, StaffRole.DISPATCHER, "dora@example.org")
    browser = signed_in_as(app, services, dora)
    page = act(coordinator, dora, "disable")
    assert "Account disabled." in page and 'data-active="false"' in page
    assert live_sessions_of(services, dora) == 0
    response = browser.get("/board")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")
    assert password_step(app.test_client(), dora) == 401

    page = act(coordinator, dora, "enable")
    assert "Account enabled." in page
    signed_in_as(app, services, dora)
    with services.database.session() as session:
        actions = session.scalars(
            select(AuditEvent.action)
            .where(AuditEvent.subject == f"staff:{dora.id}")
            .order_by(AuditEvent.id)
        ).all()
    assert [a for a in actions if a != "staff.login"] == ["staff.disabled", "staff.enabled"]


def test_forgetting_an_authenticator_makes_the_next_sign_in_enrol_again(
    app: Flask, services: Services, coordinator: FlaskClient
) -> None:
    dora = add_account(services, StaffRole.DISPATCHER, "dora@example.org")
    browser = signed_in_as(app, services, dora)
    page = act(coordinator, dora, "reset-second-factor")
    assert "the next sign-in enrols a new one" in page
    assert browser.get("/board").status_code == 302
    with services.database.session() as session:
        user = session.get_one(StaffUser, dora.id)
        assert user.totp_secret_sealed is None and user.totp_enrolled_at is None
    fresh = app.test_client()
    assert password_step(fresh, dora) == 302
    assert 'id="totp-secret"' in fresh.get("/login/code").get_data(as_text=True)  # a new QR


def test_nobody_acts_on_their_own_account(
    app: Flask, services: Services, coordinator: FlaskClient
) -> None:
    with services.database.session() as session:
        me = session.scalars(select(StaffUser).where(StaffUser.email == "cam@example.org")).one()
        my_id = me.id
    page = coordinator.get("/staff").get_data(as_text=True)
    assert f'action="/staff/{my_id}/disable"' not in page  # no button...
    response = post_form(coordinator, f"/staff/{my_id}/disable", {}, page)  # ...nor a forgery
    assert response.status_code == 303
    assert "Not on your own account" in coordinator.get("/staff").get_data(as_text=True)
    assert coordinator.get("/board").status_code == 200
    post_form(coordinator, f"/staff/{my_id}/reset-second-factor", {}, page)
    with services.database.session() as session:
        assert session.get_one(StaffUser, my_id).totp_enrolled_at is not None


@pytest.mark.parametrize("path", ["/staff/999999/disable", "/staff/1/delete", "/staff/x/enable"])
def test_an_unknown_account_or_action_is_a_404(coordinator: FlaskClient, path: str) -> None:
    page = coordinator.get("/staff").get_data(as_text=True)
    assert post_form(coordinator, path, {}, page).status_code in (404, 405)


def test_the_cli_disables_and_resets_but_keeps_one_coordinator(
    app: Flask, services: Services, environ: dict[str, str]
) -> None:
    runner = app.test_cli_runner()
    cam = add_account(services, StaffRole.COORDINATOR, "cam@example.org")
    dora = add_account(services, StaffRole.DISPATCHER, "dora@example.org")
    browser = signed_in_as(app, services, dora)

    done = runner.invoke(cli, ["user", "disable", "--email", "Dora@Example.org"])
    assert done.exit_code == 0, done.output
    assert browser.get("/board").status_code == 302
    refused = runner.invoke(cli, ["user", "disable", "--email", cam.email])
    assert refused.exit_code == 1 and "last active coordinator" in refused.output
    done = runner.invoke(cli, ["user", "reset-2fa", "--email", cam.email])
    assert done.exit_code == 0, done.output
    unknown = runner.invoke(cli, ["user", "enable", "--email", "nobody@example.org"])
    assert unknown.exit_code == 2 and "no staff account" in unknown.output

    listed = runner.invoke(cli, ["user", "list"], env=environ).output
    assert "dora@example.org dispatcher disabled enrolled" in listed
    assert "cam@example.org coordinator active not-enrolled" in listed
    with services.database.session() as session:
        actors = set(session.scalars(select(AuditEvent.actor).where(AuditEvent.actor == "cli")))
    assert actors == {"cli"}


def test_only_a_coordinator_manages_accounts(app: Flask, services: Services) -> None:
    dispatcher = signed_in_as(
        app, services, add_account(services, StaffRole.DISPATCHER, "dora@example.org")
    )
    assert dispatcher.get("/staff").status_code == 403
    assert '/staff"' not in dispatcher.get("/board").get_data(as_text=True)
