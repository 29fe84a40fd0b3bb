"""Fixtures for the browser tests: Debian's Chromium driven by Playwright, the app on a
real threaded server on a local port (PUBLIC_URL names that port, so Socket.IO's CORS
check and Twilio's webhook signatures hold), and real ``rapidresponse worker`` processes
sending through the local Twilio.

Playwright's own browser download is not used: Chromium comes from the system
(``apt-get install chromium``). Without it these tests skip, except in CI (``CI=true``),
where a missing browser is a failure: CI must never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from werkzeug.serving import BaseWSGIServer, make_server

from dispatch.processes import stop_process
from dispatch.services import Services
from tests.dispatch.conftest import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import new_sid, sign, twiml_message
from tests.web.staff_helpers import PASSWORD, Account, next_code

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
WORKERS = 2
TIMEOUT_MS = 15_000  # any one step in the browser


def find_chromium() -> str | None:
    for candidate in (CHROMIUM, shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        message = "no chromium on this machine (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: CI must run the browser tests, not skip them")
        pytest.skip(message)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def artifacts() -> Path:
    """Where screenshots go: ``RR_ARTIFACTS``, else test-artifacts/screenshots/."""
    given = os.environ.get("RR_ARTIFACTS")
    folder = Path(given) if given else REPO / "test-artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# --- the app on a real server, with real workers ---------------------------------------------


def _not_ready(environ: object, start_response: Callable[..., object]) -> Iterable[bytes]:
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"not ready\n"]


@pytest.fixture
def server() -> Iterator[BaseWSGIServer]:
    """A server bound to a free port before the app exists: PUBLIC_URL must name the port."""
    bound = make_server("127.0.0.1", 0, _not_ready, threaded=True)
    yield bound
    bound.server_close()


@pytest.fixture
def environ(environ: dict[str, str], server: BaseWSGIServer) -> dict[str, str]:
    """The shared test environment, with PUBLIC_URL at the live server (web and workers)."""
    return {**environ, "PUBLIC_URL": f"http://127.0.0.1:{server.server_port}"}


@dataclass
class Live:
    url: str
    services: Services
    fake: FakeTwilio
    worker_logs: list[Path] = field(default_factory=list)

    def text(self, number: str, body: str) -> str | None:
        """A text to the hotline, posted to the live server as Twilio does (signed)."""
        url = self.url + "/sms/inbound"
        params = {"From": number, "Body": body, "MessageSid": new_sid()}
        response = requests.post(
            url, data=params, headers={"X-Twilio-Signature": sign(params, url)}, timeout=10
        )
        assert response.status_code == 200, response.text
        return twiml_message(response.text)

    def sent_to(self, number: str) -> list[str]:
        return [m.body for m in self.fake.messages if m.to == number]

    def worker_output(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.worker_logs)

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 20) -> None:
        """Poll ``check`` (state outside the browser) until true, or fail saying ``what``."""
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                pytest.fail(f"{what}: not after {timeout}s\nworkers:\n{self.worker_output()}")
            time.sleep(0.05)


@pytest.fixture
def live(
    server: BaseWSGIServer,
    twilio_services: Services,
    fake: FakeTwilio,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[Live]:
    from web import create_app

    server.app = create_app(services=twilio_services, test_config={"TESTING": True})
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    url = twilio_services.settings.public_url
    assert url == f"http://127.0.0.1:{server.server_port}"
    env = {
        **cli_env,
        "SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM": FROM_NUMBER,
        "TWILIO_API_URL": fake.url,
    }
    running = Live(url, twilio_services, fake)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(WORKERS):
            log_path = tmp_path / f"worker-{n}.log"
            running.worker_logs.append(log_path)
            with log_path.open("wb") as log:
                workers.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "web.cli", "worker"],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        yield running
    finally:
        for process in workers:
            stop_process(process, "worker")
        server.shutdown()
        serving.join(5)


# --- the browser ----------------------------------------------------------------------------


@pytest.fixture
def page(browser: Browser, live: Live) -> Iterator[Page]:
    context = browser.new_context(base_url=live.url)
    context.set_default_timeout(TIMEOUT_MS)
    opened = context.new_page()
    yield opened
    context.close()


def sign_in(page: Page, services: Services, account: Account) -> None:
    """Password, then a fresh TOTP code, typed into the real forms."""
    page.goto("/login")
    page.fill("#email", account.email)
    page.fill("#password", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url("**/login/code**")
    page.fill("#code", next_code(services, account))
    page.click("#code-form button[type=submit]")
    page.wait_for_url(lambda url: "/login" not in url)


def wait_until_connected(page: Page) -> None:
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected")


SIDEWAYS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"


def sideways_overflow(page: Page) -> int:
    """How many pixels the page scrolls sideways (0 when it fits)."""
    return max(0, int(page.evaluate(f"() => {SIDEWAYS}")))


def no_sideways_scroll(page: Page) -> None:
    """The page fits its width once its layout has settled (fonts, a flash appearing)."""
    with suppress(PlaywrightTimeoutError):  # said below, with the width
        page.wait_for_function(f"() => {SIDEWAYS} <= 0", timeout=3000)
    overflow = sideways_overflow(page)
    assert overflow <= 0, f"{page.url} scrolls sideways by {overflow}px"
