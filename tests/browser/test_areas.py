"""A coordinator names an area as people do, in a real browser, at phone width, in
English and in Spanish; the hotline places the next text with the new name."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from rapidresponse.models import StaffRole
from tests.browser.conftest import Live, no_sideways_scroll, sign_in
from tests.web.staff_helpers import add_account

PHONE = {"width": 390, "height": 844}


@pytest.mark.parametrize("language", ["en", "es"])
def test_a_coordinator_adds_an_alias_and_tries_it(
    page: Page, live: Live, artifacts: Path, language: str
) -> None:
    page.set_viewport_size(PHONE)
    coordinator = add_account(live.services, StaffRole.COORDINATOR)
    sign_in(page, live.services, coordinator)
    page.goto(f"/areas?lang={language}")
    words = {
        "en": ("Areas", "Try a message", "Try", "Save", "Saved."),
        "es": ("Zonas", "Probar un mensaje", "Probar", "Guardar", "Guardado."),
    }[language]
    expect(page.locator("h1")).to_have_text(words[0])

    # Before: "centro" is nobody's name.
    page.get_by_label(words[1]).fill("ICE en el centro ahora")
    page.get_by_role("button", name=words[2], exact=True).click()
    expect(page.locator("#trial [data-placed]")).to_have_attribute("data-placed", "")

    page.get_by_role("link", name="Old Town/Chinatown").click()
    aliases = page.locator("#aliases")
    expect(aliases).to_be_visible()
    aliases.fill(aliases.input_value() + "\ncentro")
    page.fill("#zips", "97209 97204")
    page.get_by_role("button", name=words[3]).click()
    expect(page.locator(".flashes")).to_contain_text(words[4])
    row = page.locator("tr", has=page.get_by_role("link", name="Old Town/Chinatown"))
    expect(row.locator(".aliases")).to_contain_text("centro")
    expect(row.locator(".zips")).to_have_text("97209 97204")

    # After: the same words place the report, on the page and at the hotline.
    page.get_by_label(words[1]).fill("ICE en el centro ahora")
    page.get_by_role("button", name=words[2], exact=True).click()
    expect(page.locator("#trial [data-placed]")).to_have_attribute(
        "data-placed", "Old Town/Chinatown"
    )
    no_sideways_scroll(page)
    page.screenshot(path=artifacts / f"areas-{language}-phone.png", full_page=True)
    reply = live.text("+15035550142", "JOIN centro")
    assert reply is not None and "Old Town/Chinatown" in reply
