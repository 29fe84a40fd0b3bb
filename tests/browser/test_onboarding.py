"""Onboarding in a real browser: a coordinator invites a dispatcher, who signs up through
the one-time link and enrols an authenticator; a responder added on /people gets the
welcome text from a real worker. In English and Spanish, on a desktop and at phone width.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Browser, Page, expect

from rapidresponse.models import StaffRole
from tests.browser.conftest import Live, no_sideways_scroll, sign_in
from tests.web.staff_helpers import PASSWORD, add_account

NEW_DISPATCHER = "lupe@example.org"
NEW_RESPONDER = "+15035550188"
SCREENS = [
    ("en", 1280, "Make the invitation link", "Continue", "Sign in", "Add responder"),
    (
        "es",
        375,
        "Crear el enlace de invitación",
        "Continuar",
        "Iniciar sesión",
        "Agregar respondedor",
    ),
]


@pytest.mark.parametrize(("lang", "width", "make", "go_on", "enter", "add"), SCREENS)
def test_an_invited_dispatcher_signs_up_and_enrols_an_authenticator(
    page: Page,
    browser: Browser,
    live: Live,
    artifacts: Path,
    lang: str,
    width: int,
    make: str,
    go_on: str,
    enter: str,
    add: str,
) -> None:
    del add
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(page, live.services, add_account(live.services, StaffRole.COORDINATOR))
    page.goto(f"/staff?lang={lang}")
    no_sideways_scroll(page)
    page.fill("#invite-email", NEW_DISPATCHER)
    page.select_option("#invite-role", "dispatcher")
    page.get_by_role("button", name=make).click()
    link = page.locator("#invite-link").input_value()
    assert "/invite/" in link
    no_sideways_scroll(page)

    # The new dispatcher's own browser, at the same width.
    theirs = browser.new_context(viewport={"width": width, "height": 900})
    newcomer = theirs.new_page()
    try:
        newcomer.goto(f"{link}?lang={lang}")
        no_sideways_scroll(newcomer)
        newcomer.fill("#password", PASSWORD)
        newcomer.fill("#again", PASSWORD)
        newcomer.get_by_role("button", name=go_on).click()
        newcomer.wait_for_url("**/login/code**")
        expect(newcomer.locator("img.qr")).to_be_visible()
        no_sideways_scroll(newcomer)
        secret = newcomer.locator("#totp-secret").inner_text().strip()
        newcomer.fill("#code", pyotp.TOTP(secret).now())
        newcomer.get_by_role("button", name=enter).click()
        newcomer.wait_for_url(re.compile(r"/board$"))
        newcomer.screenshot(path=artifacts / f"joined-{lang}-{width}.png", full_page=True)
        # The link is spent.
        newcomer.goto(link)
        expect(newcomer.locator("h1")).to_contain_text(
            "This link does not work" if lang == "en" else "Este enlace no funciona"
        )
    finally:
        theirs.close()


@pytest.mark.sends_through_api
@pytest.mark.parametrize(("lang", "width", "make", "go_on", "enter", "add"), SCREENS)
def test_a_responder_added_on_the_people_page_gets_the_welcome_text(
    page: Page,
    live: Live,
    lang: str,
    width: int,
    make: str,
    go_on: str,
    enter: str,
    add: str,
) -> None:
    del make, go_on, enter
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(page, live.services, add_account(live.services, StaffRole.COORDINATOR))
    page.goto(f"/people?lang={lang}")
    no_sideways_scroll(page)
    page.fill("#name", "Lupe")
    page.fill("#phone", "503-555-0188")
    page.select_option("#area_ids", label="Cully")
    page.select_option("#language", lang)
    page.get_by_role("button", name=add).click()
    live.wait_for("the welcome text", lambda: bool(live.sent_to(NEW_RESPONDER)))
    [welcome] = live.sent_to(NEW_RESPONDER)
    assert welcome.startswith("Welcome" if lang == "en" else "Bienvenida/o")
    no_sideways_scroll(page)
