"""README's "first hour", walked in a real browser against the real demo.

`rapidresponse demo` runs as a newcomer runs it (embedded Redis, SQLite, the simulator);
the test reads its banner for the login, the authenticator key and the responders, then
clicks through the simulator phone and the board exactly as the README says: subscribe,
report, GO, CONFIRM, approve, watch 'delivered' rise, all-clear, STOP. The phone is used
at phone width; the board at desktop width.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import Browser, Page, Response, expect

from tests.browser.conftest import TIMEOUT_MS
from tests.demo_process import running_demo

pytestmark = pytest.mark.slow

PHONE_WIDTH = {"width": 390, "height": 844}
SENDING_MS = 30_000
SIGHTING = "ICE van and 4 agents in vests at NE 42nd and Killingsworth, Cully"


@dataclass(frozen=True)
class Demo:
    url: str
    banner: str

    def value(self, label: str) -> str:
        match = re.search(rf"^\s*{label}:\s+(\S+)", self.banner, re.MULTILINE)
        assert match, f"the banner names no {label}"
        return match.group(1)

    def person(self, name: str) -> tuple[str, str]:
        """A demo person's number and the rest of their banner line (areas, language)."""
        line = next(line for line in self.banner.splitlines() if name in line)
        phone = re.search(r"\+1\d{10}", line)
        assert phone, line
        return phone.group(0), line

    def totp(self) -> pyotp.TOTP:
        uri = re.search(r"otpauth://totp/\S+", self.banner)
        assert uri, "the banner shows no authenticator key"
        query = urllib.parse.parse_qs(urllib.parse.urlparse(uri.group(0)).query)
        return pyotp.TOTP(query["secret"][0])


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    with running_demo(tmp_path) as running:
        yield Demo(running.url, running.output())


class SimulatorPhone:
    """The simulator phone page, used as a person uses a phone."""

    def __init__(self, page: Page) -> None:
        self.page = page

    def be(self, name: str) -> None:
        self.page.locator("button.quick", has_text=name).click()
        expect(self.page.locator("#conversation")).to_be_visible()

    def send(self, text: str) -> str:
        """Send ``text``; returns the hotline's answer (the newest bubble it received)."""
        before = self.page.locator(".bubble-received").count()
        self.page.fill("#Body", text)
        self.page.click("#phone-form button[type=submit]")
        expect(self.page.locator(".bubble-sent").last).to_contain_text(text)
        expect(self.page.locator(".bubble-received")).to_have_count(before + 1)
        return self.last_received()

    def last_received(self) -> str:
        return self.page.locator(".bubble-received .sms").last.inner_text()

    def wait_for_message(self, pattern: str, timeout: float = 30) -> str:
        """Check for new messages (an empty send) until one matches ``pattern``."""
        deadline = time.monotonic() + timeout
        while True:
            for text in self.page.locator(".bubble-received .sms").all_inner_texts():
                if re.search(pattern, text):
                    return text
            assert time.monotonic() < deadline, f"no message like {pattern!r} arrived"
            time.sleep(0.5)
            self.page.fill("#Body", "")
            self.page.click("#phone-form button[type=submit]")


def approve_and_watch_delivery(board: Page, recipients: int) -> None:
    expect(board.locator(".audience")).to_contain_text(f"Goes to {recipients} subscribers")
    board.once("dialog", lambda dialog: dialog.accept())  # "Send to 3 people in Cully?"
    board.get_by_role("button", name="Approve and send").click()
    # Every message leaves (100%: none waiting), and then, as the simulator's status
    # callbacks arrive through the same code as Twilio's, 'delivered' rises on the page.
    percent = board.locator(".progress .percent")
    expect(percent).to_have_attribute("data-percent", "100", timeout=SENDING_MS)
    delivered = board.locator('.progress [data-count="delivered"]')
    expect(delivered).to_have_text(str(recipients), timeout=SENDING_MS)
    expect(board.locator('.progress [data-count="failed"]')).to_have_text("0")


def test_the_first_hour_of_the_readme(browser: Browser, demo: Demo, artifacts: Path) -> None:
    phone_context = browser.new_context(base_url=demo.url, viewport=PHONE_WIDTH)
    board_context = browser.new_context(base_url=demo.url)
    phone_context.set_default_timeout(TIMEOUT_MS)
    board_context.set_default_timeout(TIMEOUT_MS)
    try:
        walk_the_first_hour(demo, phone_context.new_page(), board_context.new_page(), artifacts)
    finally:
        phone_context.close()
        board_context.close()


def walk_the_first_hour(demo: Demo, page: Page, board: Page, artifacts: Path) -> None:
    # 1. The home page leads to the simulator phone.
    page.goto("/")
    page.get_by_role("link", name="Simulator phone").click()
    phone = SimulatorPhone(page)

    # 2. Subscribe: a new phone joins Cully and confirms.
    phone.be("A new phone")
    assert "YES" in phone.send("JOIN Cully")
    assert "Cully" in phone.send("YES")

    # 3. Report what you see.
    report_answer = phone.send(SIGHTING)
    assert re.search(r"\b[A-Z0-9]{4}\b", report_answer), report_answer
    page.screenshot(path=artifacts / "first-hour-phone-report.png", full_page=True)

    # 4. Sign in to the board with the banner's login and the authenticator's code.
    board.goto("/")
    board.get_by_role("link", name="Staff sign-in").click()
    board.fill("#email", demo.value("login"))
    board.fill("#password", demo.value("password"))
    board.click("#login-form button[type=submit]")
    board.wait_for_url("**/login/code**")
    board.fill("#code", demo.totp().now())
    board.click("#code-form button[type=submit]")
    board.wait_for_url(re.compile(r"/board$"))
    # Live: its socket is served by the demo's own socket process, on another port, and
    # so are the board's re-reads of its fragment (across origins, with CORS).
    reads: list[Response] = []
    board.on("response", lambda r: reads.append(r) if r.url.endswith("/board/live") else None)
    expect(board.locator("#connection")).to_have_attribute("data-state", "connected")
    card = board.locator("li.incident-card")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("Cully")

    # 5. Be Ana, the responder for Cully from the banner: she was paged, goes, confirms.
    ana_number, ana_line = demo.person("Ana (demo)")
    assert "Cully" in ana_line and "Spanish" in ana_line
    phone.be("Ana (demo)")
    assert page.locator("#From").input_value() == ana_number
    paged = phone.wait_for_message(r"^[A-Z0-9]{4}: posible actividad en Cully")
    code = paged[:4]
    assert code in phone.send(f"{code} VOY")
    assert "CONFIRM" in phone.send(f"{code} CONFIRMO 3 camionetas en la 42")
    expect(card).to_have_attribute("data-state", "confirmed")
    web_port = urllib.parse.urlsplit(demo.url).port
    assert reads and web_port not in {urllib.parse.urlsplit(r.url).port for r in reads}
    assert all(r.status in (200, 304) for r in reads)

    # 6. Approve the drafted alert; watch it be sent, then delivered, to 3 subscribers.
    alert_card = board.locator("li.alert-card")
    expect(alert_card).to_have_count(1)
    alert_card.locator("a").click()
    board.wait_for_url("**/board/alerts/*")
    approve_and_watch_delivery(board, recipients=3)
    board.screenshot(path=artifacts / "first-hour-alert-delivered.png", full_page=True)

    # 7. The subscribers' phones have it, each in their language.
    phone.be("Luis (demo subscriber)")
    phone.wait_for_message(r"^ALERTA")
    phone.be("A new phone")
    phone.wait_for_message(r"^ALERT")

    # 8. All clear, to exactly the people who got the alert.
    board.select_option("#follow-up-form select[name=kind]", "all_clear")
    board.click("#follow-up-form button[type=submit]")
    board.wait_for_url("**/board/alerts/*")
    approve_and_watch_delivery(board, recipients=3)
    phone.wait_for_message(r"^ALL CLEAR")

    # 9. STOP: one confirmation, then nothing more.
    answer = phone.send("STOP")
    assert "START" in answer
    page.screenshot(path=artifacts / "first-hour-phone-stop.png", full_page=True)
