"""Open boards never take the hotline down: the sockets are served by their own process.

Before, one gunicorn process with 64 threads served both, and each open board socket
held a thread: with 64 boards open, texts to the hotline and /healthz got no answer at
all. Here the real ``rapidresponse web`` runs (its web process and its sockets process),
more boards than that connect with real Socket.IO clients, and the hotline still answers
at once.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
import socketio
from flask import Flask
from werkzeug.serving import make_server

from dispatch.services import Services
from tests.demo_process import free_port
from tests.dispatch.conftest import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
from tests.web.sms_helpers import new_sid, sign, twiml_message
from tests.web.staff_helpers import session_cookie
from web import board_live

BOARDS = 80  # more than the 64 threads that used to serve everything


@dataclass
class Served:
    url: str
    socket_url: str


@pytest.fixture
def served(cli_env: dict[str, str], tmp_path: object) -> Iterator[Served]:
    port, socket_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **cli_env,
        "PUBLIC_URL": url,
        "SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM": FROM_NUMBER,
        "LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-m", "web.cli", "web", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--socket-port", str(socket_port)], env=env, start_new_session=True
    )
    try:
        for address in (url, f"http://127.0.0.1:{socket_port}"):
            wait_healthy(address, process)
        yield Served(url, f"http://127.0.0.1:{socket_port}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        process.wait(20)


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, "rapidresponse web exited"
        with contextlib.suppress(requests.RequestException):
            if requests.get(url + "/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"{url} never became healthy")


def text_help(url: str) -> tuple[int, str | None, float]:
    params = {"From": "+15035550142", "Body": "HELP", "MessageSid": new_sid()}
    started = time.monotonic()
    response = requests.post(
        url + "/sms/inbound",
        data=params,
        headers={"X-Twilio-Signature": sign(params, url + "/sms/inbound")},
        timeout=15,
    )
    answer = twiml_message(response.text) if response.status_code == 200 else None
    return response.status_code, answer, time.monotonic() - started


@pytest.mark.slow
def test_the_hotline_answers_with_more_boards_open_than_it_has_threads(
    served: Served, app: Flask, services: Services
) -> None:
    cookie = session_cookie(app, services)
    boards = []
    try:
        for _ in range(BOARDS):
            # A board page's socket, as a browser opens it: from the page's origin.
            board = socketio.Client(
                reconnection=False, websocket_extra_options={"origin": served.url}
            )
            board.connect(
                served.socket_url, headers=cookie, transports=["websocket"], wait_timeout=10
            )
            boards.append(board)
        assert all(board.connected for board in boards)
        for _ in range(3):
            status, answer, took = text_help(served.url)
            assert status == 200 and answer, "the hotline did not answer"
            assert took < 2.0, f"the hotline took {took:.1f} s with {BOARDS} boards open"
        health = requests.get(served.url + "/healthz", timeout=5)
        assert health.status_code == 200
        live = requests.get(served.url + "/board/live", headers=cookie, timeout=5)
        assert live.status_code == 200
    finally:
        for board in boards:
            board.disconnect()


def test_the_web_process_serves_no_socket_and_the_socket_process_nothing_else(
    served: Served,
) -> None:
    handshake = "/socket.io/?EIO=4&transport=polling"
    assert requests.get(served.url + handshake, timeout=5).status_code == 404
    assert requests.get(served.socket_url + handshake, timeout=5).status_code == 200
    assert requests.get(served.socket_url + "/report", timeout=5).status_code == 404
    assert requests.get(served.socket_url + "/healthz", timeout=5).status_code == 200


def test_the_board_page_names_the_socket_server_and_may_connect_to_it(
    served: Served, app: Flask, services: Services
) -> None:
    cookie = session_cookie(app, services)
    page = requests.get(served.url + "/board", headers=cookie, timeout=5)
    assert page.status_code == 200
    assert f'data-socket-url="{served.socket_url}"' in page.text
    policy = page.headers["Content-Security-Policy"]
    connect = next(part for part in policy.split("; ") if part.startswith("connect-src"))
    assert served.socket_url in connect.split()
    assert served.socket_url.replace("http://", "ws://") in connect.split()


def test_the_board_re_reads_its_fragment_from_the_socket_process(
    served: Served, app: Flask, services: Services
) -> None:
    """Each hint makes every board re-read: those re-reads go to the socket process,
    across origins from the page's port, with CORS for the page's origin only."""
    cookie = session_cookie(app, services)
    page = requests.get(served.url + "/board", headers=cookie, timeout=5)
    assert f'data-live-url="{served.socket_url}/board/live"' in page.text
    ours = {**cookie, "Origin": served.url, "X-Board-Refresh": "background"}
    live = requests.get(served.socket_url + "/board/live", headers=ours, timeout=5)
    assert live.status_code == 200 and 'class="board' in live.text
    assert live.headers["Access-Control-Allow-Origin"] == served.url
    assert live.headers["Access-Control-Allow-Credentials"] == "true"
    assert "ETag" in live.headers["Access-Control-Expose-Headers"]
    again = requests.get(
        served.socket_url + "/board/live",
        headers={**ours, "If-None-Match": live.headers["ETag"]},
        timeout=5,
    )
    assert again.status_code == 304
    assert again.headers["Access-Control-Allow-Origin"] == served.url
    asked = {
        "Origin": served.url,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-board-refresh,if-none-match,x-live-version",
    }
    preflight = requests.options(served.socket_url + "/board/live", headers=asked, timeout=5)
    assert preflight.status_code == 204
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert {"x-board-refresh", "if-none-match", "x-live-version"} <= {
        name.strip() for name in allowed.split(",")
    }
    # Another site's page: no CORS headers, so its scripts read nothing.
    theirs = {**cookie, "Origin": "http://elsewhere.example"}
    foreign = requests.get(served.socket_url + "/board/live", headers=theirs, timeout=5)
    assert "Access-Control-Allow-Origin" not in foreign.headers
    # Signed out: refused there as on the web processes.
    nobody = requests.get(
        served.socket_url + "/board/live",
        headers={"Origin": served.url},
        timeout=5,
        allow_redirects=False,
    )
    assert nobody.status_code in (302, 401)


def test_past_its_limit_a_socket_process_says_busy(
    monkeypatch: pytest.MonkeyPatch, app: Flask, services: Services
) -> None:
    """Refused with "busy" (the browser says so and retries later), never left hanging;
    a place freed by a board that leaves is taken by the next."""
    monkeypatch.setattr(board_live, "MAX_SOCKETS", 2)
    # Counted from none: sockets an earlier test's server shut down under (a browser's
    # board in this same process) are never released there, and would fill the two.
    monkeypatch.setattr(board_live, "held", board_live._Held())
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    cookie = session_cookie(app, services)
    boards = [socketio.Client(reconnection=False) for _ in range(4)]
    try:
        for board in boards[:2]:
            board.connect(url, headers=cookie, transports=["polling"], wait_timeout=10)
        refusals: list[object] = []
        boards[2].on("connect_error", refusals.append)
        with pytest.raises(socketio.exceptions.ConnectionError):
            boards[2].connect(url, headers=cookie, transports=["polling"], wait_timeout=10)
        assert refusals == [{"message": board_live.BUSY}]  # what board.js shows as busy
        boards[0].disconnect()
        deadline = time.monotonic() + 10
        while len(board_live.held) >= 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        boards[3].connect(url, headers=cookie, transports=["polling"], wait_timeout=10)
        assert boards[3].connected
    finally:
        for board in boards:
            board.disconnect()
        server.shutdown()


@pytest.mark.slow
def test_a_socket_server_that_dies_is_started_again(served: Served) -> None:
    """``rapidresponse web`` keeps its socket process running: killed outright, it is
    back within seconds, and the web processes never noticed."""
    import psutil

    def socket_servers() -> list[psutil.Process]:
        return [
            process
            for process in psutil.process_iter(["cmdline"])
            if "sockets" in (process.info["cmdline"] or [])
            and served.socket_url.rsplit(":", 1)[1] in (process.info["cmdline"] or [])
        ]

    # The gunicorn arbiter: the socket server process whose parent is not one.
    running = socket_servers()
    [first] = [p for p in running if p.ppid() not in {q.pid for q in running}]
    first.kill()
    first.wait(10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(served.socket_url + "/healthz", timeout=2).status_code == 200:
                break
        time.sleep(0.2)
    else:
        pytest.fail("the socket server was not started again")
    assert first.pid not in [p.pid for p in socket_servers()]
    assert requests.get(served.url + "/healthz", timeout=5).status_code == 200
