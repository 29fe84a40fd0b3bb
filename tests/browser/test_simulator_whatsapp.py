"""The demo's simulator phone in WhatsApp mode, clicked at phone width in Spanish and
English: a report in words, a location pin with none, a quick-reply button; WhatsApp's
own conversation and its 24-hour window on screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import TIMEOUT_MS, no_sideways_scroll
from tests.demo_process import running_demo

pytestmark = pytest.mark.slow
PHONE_WIDTH = {"width": 375, "height": 800}


@pytest.fixture
def demo_url(tmp_path: Path) -> Iterator[str]:
    with running_demo(tmp_path) as running:
        yield running.url


def send(page: Page, **fields: str) -> str:
    """Send from the phone form (words and/or a pin); the newest answer bubble's text."""
    before = page.locator(".bubble-received").count()
    page.fill("#Body", fields.get("body", ""))
    if "pin" in fields:
        page.select_option("#pin", label=fields["pin"])
    page.click("#phone-form button[type=submit]")
    expect(page.locator(".bubble-received")).to_have_count(before + 1)
    return page.locator(".bubble-received .sms").last.inner_text()


def test_whatsapp_on_the_simulator_phone(browser: Browser, demo_url: str, artifacts: Path) -> None:
    context = browser.new_context(base_url=demo_url, viewport=PHONE_WIDTH)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto("/simulator/phone?lang=es")
        page.click("#channel-whatsapp")
        expect(page.locator("#channel-whatsapp")).to_have_attribute("aria-current", "page")
        page.locator("button.quick").first.click()
        expect(page.locator("h2", has_text="Conversación de WhatsApp")).to_be_visible()

        answer = send(page, body="Migra en la esquina de la escuela, dos camionetas")
        assert "recibido" in answer or "Reporte" in answer, answer
        expect(page.locator("#whatsapp-window")).to_contain_text("24 horas")
        expect(page.locator("ol.conversation.whatsapp")).to_be_visible()

        answer = send(page, pin="Lents")
        expect(page.locator(".bubble-sent .sms").last).to_contain_text("📍")
        no_sideways_scroll(page)
        page.screenshot(path=artifacts / "simulator-whatsapp-es-375.png", full_page=True)

        before = page.locator(".bubble-received").count()
        page.locator("#quick-replies button", has_text="SI").click()
        expect(page.locator(".bubble-received")).to_have_count(before + 1)
        expect(page.locator(".bubble-sent .sms").last).to_have_text("SI")

        page.goto("/simulator/phone?channel=whatsapp&lang=en")
        expect(page.locator("#pin option", has_text="Lents")).to_have_count(1)
        expect(page.locator("p.hint").first).to_contain_text("alerts still come by SMS")
        no_sideways_scroll(page)
    finally:
        context.close()
