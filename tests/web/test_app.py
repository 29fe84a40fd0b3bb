"""The app: security headers, clear errors, and nothing at import time."""

from __future__ import annotations

import subprocess
import sys

import pytest
from flask.testing import FlaskClient


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
        "import web, web.cli, web.demo, web.server, dispatch.jobs, dispatch.worker\n"
        "print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.stdout.strip() == "ok", done.stderr
