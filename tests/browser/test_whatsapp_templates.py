"""The WhatsApp templates page in a real browser: a coordinator on a phone, in Spanish,
enters the Content SID Meta approved for the Spanish alert; in English at desk width, a
mistyped sid is refused in words and nothing changes."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from rapidresponse import whatsapp
from rapidresponse.models import AlertKind, Language, StaffRole
from tests.browser.conftest import Live, no_sideways_scroll, sign_in
from tests.web.staff_helpers import add_account

SID = "HX" + "c0ffee00" * 4


def test_a_coordinator_enters_an_approved_template_on_a_phone_in_spanish(
    page: Page, live: Live, artifacts: Path
) -> None:
    services = live.services
    page.set_viewport_size({"width": 375, "height": 900})
    sign_in(page, services, add_account(services, StaffRole.COORDINATOR))
    page.goto("/whatsapp/templates?lang=es")
    expect(page.locator("h1")).to_have_text("Plantillas de WhatsApp")
    no_sideways_scroll(page)
    row = page.locator("#alert-es")
    expect(row.locator("pre.template-body")).to_have_text(
        whatsapp.SUGGESTED_BODIES[AlertKind.ALERT, Language.ES]
    )
    row.get_by_label("SID de contenido").fill(SID)
    row.get_by_label("Revisión de Meta").select_option(label="aprobada: usarla")
    with page.expect_navigation():
        row.get_by_role("button", name="Guardar").click()
    expect(page.locator(".flashes")).to_contain_text("Guardada")
    expect(page.locator("#alert-es")).to_have_class("approved")
    expect(page.locator("#alert-en")).to_have_class("missing")
    no_sideways_scroll(page)
    page.screenshot(path=artifacts / "whatsapp-templates-375-es.png", full_page=False)
    with services.database.session() as session:
        assert whatsapp.approved_languages(session, AlertKind.ALERT) == {Language.ES}

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto("/whatsapp/templates?lang=en")
    row = page.locator("#update-en")
    row.get_by_label("Content SID").fill("HX-not-a-sid")
    row.get_by_label("Meta's review").select_option(label="approved: use it")
    # The browser's own check (pattern) stops it first; without it, the server says why.
    page.evaluate("document.querySelectorAll('form').forEach(f => f.noValidate = true)")
    with page.expect_navigation():
        row.get_by_role("button", name="Save").click()
    expect(page.locator("p.error")).to_contain_text("That is not a Content API sid")
    with services.database.session() as session:
        assert whatsapp.approved_languages(session, AlertKind.UPDATE) == set()
