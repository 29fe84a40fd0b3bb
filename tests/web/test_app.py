"""The app: security headers, clear errors, and nothing at import time."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dispatch.services import Services


@pytest.mark.parametrize("path", ["/", "/healthz", "/simulator/outbox", "/no-such-page"])
def test_every_response_carries_the_security_headers(client: FlaskClient, path: str) -> None:
    headers = client.get(path).headers
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in headers  # only in production


def test_pages_load_no_third_party_resources(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert "http://" not in page and "https://" not in page


def test_the_home_page_leads_to_sign_in_the_report_form_and_the_simulator(
    client: FlaskClient,
) -> None:
    page = client.get("/").get_data(as_text=True)
    for link in ('href="/login"', 'href="/report"', 'href="/report?lang=es"'):
        assert link in page
    assert 'href="/simulator/phone"' in page and 'href="/simulator/outbox"' in page


def test_in_production_the_home_page_has_no_simulator_links(services: Services) -> None:
    from web import create_app

    services.settings = replace(services.settings, env="production")
    app = create_app(services=services, test_config={"TESTING": True})
    page = app.test_client().get("/").get_data(as_text=True)
    assert 'href="/login"' in page and "/simulator" not in page


def test_an_unknown_page_is_a_clear_404(client: FlaskClient) -> None:
    response = client.get("/no-such-page", headers={"Accept": "application/json"})
    assert response.status_code == 404
    assert response.json == {"error": "Not Found", "status": 404}


def test_a_wrong_method_is_a_405(client: FlaskClient) -> None:
    assert client.post("/healthz").status_code == 405


def test_importing_the_web_package_connects_to_nothing() -> None:
    script = (
        "import socket\n"
        "def refuse(*a, **k): raise SystemExit('connected at import time')\n"
        "socket.socket.connect = refuse\n"
        "import web, web.cli, web.demo, web.server\n"
        "import dispatch.broadcast, dispatch.alerts, dispatch.worker\n"
        "print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_behind_a_trusted_proxy_the_client_address_is_the_forwarded_one(
    services: Services,
) -> None:
    from dataclasses import replace

    from flask import request

    from web import create_app

    services.settings = replace(services.settings, trusted_proxies=1)
    app = create_app(services=services, test_config={"TESTING": True})

    @app.get("/_whoami")
    def whoami() -> str:
        return request.remote_addr or ""

    seen = app.test_client().get("/_whoami", headers={"X-Forwarded-For": "198.51.100.7"})
    assert seen.get_data(as_text=True) == "198.51.100.7"


def test_without_trusted_proxies_forwarded_headers_are_ignored(app: Flask) -> None:
    from flask import request

    @app.get("/_whoami")
    def whoami() -> str:
        return request.remote_addr or ""

    seen = app.test_client().get("/_whoami", headers={"X-Forwarded-For": "198.51.100.7"})
    assert seen.get_data(as_text=True) == "127.0.0.1"


def test_an_error_answers_a_browser_in_text_and_a_machine_in_json(client: FlaskClient) -> None:
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    page = client.get("/no-such-page", headers={"Accept": browser})
    assert page.status_code == 404 and page.mimetype == "text/plain"
    for accept in ("*/*", "application/json", ""):
        machine = client.get("/no-such-page", headers={"Accept": accept} if accept else {})
        assert machine.status_code == 404 and machine.json == {"error": "Not Found", "status": 404}


def test_production_adds_hsts_and_a_secure_session_cookie(services: Services) -> None:
    from dataclasses import replace

    from web import create_app

    services.settings = replace(
        services.settings, env="production", public_url="https://alerts.example.org"
    )
    app = create_app(services=services, test_config={"TESTING": True})
    client = app.test_client()
    response = client.get("/login", base_url="https://alerts.example.org")
    assert response.status_code == 200
    hsts = response.headers["Strict-Transport-Security"]
    assert "max-age=63072000" in hsts and "includeSubDomains" in hsts
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    cookie = response.headers.get("Set-Cookie", "")
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie


@pytest.mark.parametrize("digits", [19, 20, 400])
def test_an_id_too_large_for_the_database_is_a_404_not_a_500(
    client: FlaskClient, digits: int
) -> None:
    huge = "9" * digits
    for path in (f"/board/incidents/{huge}", f"/board/alerts/{huge}/live", f"/staff/{huge}/enable"):
        response = client.get(path, headers={"Accept": "application/json"})
        assert response.status_code in (404, 405), (path, response.status_code)
