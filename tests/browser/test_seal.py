"""The panic seal in a real browser: a coordinator at a desk, in English, seals from the
board's menu; a dispatcher's board on a phone, in Spanish, goes dark ("Sellado") by
itself; the server then answers every page with the sealed page.

The server here is the test's own (no worker: nothing is sent), wrapped like a sealed
deployment's web process: a key holder for this process swaps in the sealed app when
the seal reaches it, as ``web.sealed.SealableApp`` does (which then also restarts the
process; its socket process ends, which the test does by closing the board's socket).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect
from werkzeug.serving import BaseWSGIServer

from dispatch import key_custody
from dispatch.services import Services
from rapidresponse.keyring import Keyring
from rapidresponse.models import StaffRole
from tests.browser.conftest import TIMEOUT_MS, no_sideways_scroll, sign_in, wait_until_connected
from tests.web.staff_helpers import add_account
from web.sealed import create_sealed_app

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass
class Sealable:
    url: str
    services: Services
    sealed: threading.Event


@pytest.fixture
def sealable(server: BaseWSGIServer, twilio_services: Services) -> Iterator[Sealable]:
    from web import create_app

    keyring = Keyring.generate()
    services = twilio_services
    services.settings = replace(
        services.settings, custody="sealed", intake_public=keyring.intake_public()
    )
    apps: dict[str, WsgiApp] = {"now": create_app(services=services, test_config={"TESTING": True})}
    sealed_app = create_sealed_app(services.settings, services.redis)
    sealed = threading.Event()

    def seal_here() -> None:
        apps["now"] = sealed_app
        sealed.set()

    server.app = lambda environ, start: apps["now"](environ, start)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    key_custody.mark_unsealed(services.redis, keyring)
    holder = key_custody.KeyHolder(services.redis, keyring, on_seal=seal_here).start()
    try:
        yield Sealable(services.settings.public_url, services, sealed)
    finally:
        holder.stop()
        server.shutdown()
        serving.join(5)


def opened(browser: Browser, url: str, width: int) -> Page:
    context = browser.new_context(base_url=url, viewport={"width": width, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    return context.new_page()


def test_a_coordinator_seals_and_a_board_on_a_phone_goes_dark(
    browser: Browser, sealable: Sealable, artifacts: Path
) -> None:
    services = sealable.services
    phone = opened(browser, sealable.url, 375)
    desk = opened(browser, sealable.url, 1280)
    try:
        sign_in(phone, services, add_account(services, StaffRole.DISPATCHER))
        phone.goto("/board?lang=es")
        wait_until_connected(phone)
        expect(phone.locator("a.seal-link")).to_have_text("Sellar")
        phone.evaluate("window.__marker = 1")  # gone once the page reloads

        sign_in(desk, services, add_account(services, StaffRole.COORDINATOR))
        desk.goto("/board?lang=en")
        desk.click("a.seal-link")
        expect(desk.locator("h1")).to_have_text("Seal the keys")
        expect(desk.locator("main")).to_contain_text("This page cannot unseal.")
        desk.screenshot(path=artifacts / "seal-desk-en.png")
        with desk.expect_navigation():
            desk.get_by_role("button", name="Seal now").click()
        assert sealable.sealed.wait(5), "the seal did not reach this process"

        # The sockets process ends with the seal: the board notices and asks the page.
        phone.evaluate("window.rrBoard.socket.io.engine.close()")
        expect(phone.locator("h1[lang=es]")).to_have_text("Sellado", timeout=10_000)
        assert phone.evaluate("window.__marker") is None  # reloaded into the sealed page
        expect(phone.locator("body")).to_contain_text("coordinadoras lo abran")
        no_sideways_scroll(phone)
        phone.screenshot(path=artifacts / "sealed-board-375-es.png", full_page=True)

        answer = desk.goto("/board")
        assert answer is not None and answer.status == 503
        expect(desk.locator("h1").first).to_have_text("Sealed")
    finally:
        phone.context.close()
        desk.context.close()
