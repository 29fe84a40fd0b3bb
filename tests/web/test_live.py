"""Live events: a publisher outside the web app reaches browsers through Redis.

A real server on a local port and a real Socket.IO client: Flask-SocketIO's test client
cannot go through a message queue, and the queue is the point here.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from queue import Empty, Queue
from typing import Any

import pytest
import socketio
from flask import Flask
from sqlalchemy import select
from werkzeug.serving import BaseWSGIServer, make_server

from dispatch.live import LivePublisher
from dispatch.services import Services
from rapidresponse.models import StaffRole
from tests.web.staff_helpers import add_account, session_cookie, sign_in


@pytest.fixture
def app(services: Services) -> Flask:
    """A refused or closed polling client waits for the server's next ping: make it soon."""
    from web import create_app

    return create_app(services=services, test_config={"TESTING": True, "SOCKETIO_PING_INTERVAL": 1})


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture
def signed_in_cookie(app: Flask, services: Services) -> dict[str, str]:
    """The Cookie header of a dispatcher's browser: the socket refuses anyone else."""
    return session_cookie(app, services)


def test_an_event_published_by_a_worker_reaches_a_connected_board(
    live_server: str, services: Services, signed_in_cookie: dict[str, str]
) -> None:
    received: Queue[Any] = Queue()
    board = socketio.Client(reconnection=False)
    board.on("broadcast_progress", received.put)
    board.connect(live_server, headers=signed_in_cookie, transports=["polling"], wait_timeout=10)
    try:
        publisher = LivePublisher(services.redis_url)
        event = None
        for _ in range(50):  # the server subscribes to Redis in the background
            publisher.emit("broadcast_progress", {"alert_id": 7, "sent": 3, "pending": 2})
            try:
                event = received.get(timeout=0.2)
                break
            except Empty:
                continue
    finally:
        board.disconnect()
    assert event.pop("live_version") > 0  # the hint's count: boards ask for a render since
    assert event == {"alert_id": 7, "sent": 3, "pending": 2}


@pytest.mark.slow
def test_a_broadcast_pushes_its_progress_from_the_workers(
    live_server: str, services: Services, cli_env: dict[str, str], signed_in_cookie: dict[str, str]
) -> None:
    from tests.dispatch.test_alerts import confirmed_incident
    from tests.dispatch.test_broadcast_core import make_area
    from tests.factories import add_many_subscribers

    area = make_area(services, "cully")
    add_many_subscribers(services, area, 1200)
    events: Queue[tuple[str, Any]] = Queue()
    board = socketio.Client(reconnection=False)
    for name in ("probe", "alert_progress", "alert_complete"):
        board.on(name, lambda data, name=name: events.put((name, data)))
    board.connect(live_server, headers=signed_in_cookie, transports=["polling"], wait_timeout=10)
    try:
        wait_until_subscribed(services, events)
        from dispatch.alerts import alert_for_incident, approve_alert

        alert_id = alert_for_incident(confirmed_incident(services, area))
        assert alert_id is not None
        approve_alert(services, alert_id)
        subprocess.run(
            [sys.executable, "-m", "web.cli", "worker", "--burst", "--no-scheduler"],
            env=cli_env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        seen = collect_until(events, "alert_complete", timeout=10)
    finally:
        board.disconnect()

    assert all(data.pop("live_version") > 0 for _name, data in seen)  # each hint's count
    progress = [data for name, data in seen if name == "alert_progress"]
    assert progress[0]["alert_id"] == alert_id and progress[0]["pending"] == 1200
    assert progress[-1] == {
        "alert_id": alert_id,
        "total": 1200,
        "pending": 0,
        "sent": 1200,
        "delivered": 0,
        "failed": 0,
        "expired": 0,
    }
    sent = [data["sent"] for data in progress]
    assert sent == sorted(sent)  # counts only grow
    assert ("alert_complete", {"alert_id": alert_id}) in seen


def wait_until_subscribed(services: Services, events: Queue[tuple[str, Any]]) -> None:
    publisher = LivePublisher(services.redis_url)
    for _ in range(50):  # the server subscribes to Redis in the background
        publisher.emit("probe", {})
        try:
            events.get(timeout=0.2)
            return
        except Empty:
            continue
    pytest.fail("the board never heard from Redis")


def collect_until(
    events: Queue[tuple[str, Any]], last: str, timeout: float
) -> list[tuple[str, Any]]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            seen.append(events.get(timeout=0.2))
        except Empty:
            continue
        if seen[-1][0] == last:
            return seen
    pytest.fail(f"no {last} event; saw {[name for name, _ in seen]}")


def cookie_of(app: Flask, services: Services, role: StaffRole, email: str) -> dict[str, str]:
    return session_cookie(app, services, role, email)


@pytest.mark.parametrize("who", ["nobody", "responder"])
def test_the_board_socket_refuses_anyone_who_may_not_see_the_board(
    live_server: str, app: Flask, services: Services, who: str
) -> None:
    headers = {} if who == "nobody" else cookie_of(app, services, StaffRole.RESPONDER, "r@x.org")
    board = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        board.connect(live_server, headers=headers, transports=["polling"], wait_timeout=5)
    board.disconnect()


@pytest.mark.parametrize("ending", ["revoke the session", "disable the account"])
def test_ending_a_session_disconnects_its_socket(
    live_server: str, app: Flask, services: Services, ending: str
) -> None:
    from sqlalchemy import select

    from rapidresponse.models import StaffSession, StaffUser
    from tests.web.staff_helpers import post_form

    headers = cookie_of(app, services, StaffRole.DISPATCHER, "d@x.org")
    board = socketio.Client(reconnection=False)
    gone = threading.Event()
    board.on("disconnect", lambda *_: gone.set())
    board.connect(live_server, headers=headers, transports=["polling"], wait_timeout=10)
    assert board.connected
    coordinator = app.test_client()
    sign_in(coordinator, services, add_account(services, StaffRole.COORDINATOR, "c@x.org"))
    with services.database.session() as session:
        victim, victim_user = session.execute(
            select(StaffSession.id, StaffUser.id)
            .join(StaffUser, StaffUser.id == StaffSession.user_id)
            .where(StaffUser.email == "d@x.org")
        ).one()
    if ending == "revoke the session":
        page = coordinator.get("/staff/sessions").get_data(as_text=True)
        path = f"/staff/sessions/{victim}/revoke"
    else:
        page = coordinator.get("/staff").get_data(as_text=True)
        path = f"/staff/{victim_user}/disable"
    assert post_form(coordinator, path, {}, page).status_code == 303
    assert gone.wait(10), f"the socket stayed connected after we {ending}"
    again = socketio.Client(reconnection=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        again.connect(live_server, headers=headers, transports=["polling"], wait_timeout=5)
    again.disconnect()


def test_a_session_that_times_out_has_its_socket_closed(
    live_server: str, app: Flask, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timeout is no event: the socket process sweeps its sockets' sessions."""
    from datetime import timedelta

    from sqlalchemy import update

    from rapidresponse.models import StaffSession, StaffUser, utcnow
    from web import board_live

    monkeypatch.setattr(board_live, "SWEEP_SECONDS", 0.2)
    boards = {}
    for email in ("idle@x.org", "busy@x.org"):
        board = socketio.Client(reconnection=False)
        gone = threading.Event()
        board.on("disconnect", lambda *_, gone=gone: gone.set())
        headers = cookie_of(app, services, StaffRole.DISPATCHER, email)
        board.connect(live_server, headers=headers, transports=["polling"], wait_timeout=10)
        boards[email] = (board, gone)
    idle = timedelta(minutes=services.settings.staff_idle_minutes)
    with services.database.session() as session:
        idle_user = select(StaffUser.id).where(StaffUser.email == "idle@x.org")
        session.execute(
            update(StaffSession)
            .where(StaffSession.user_id.in_(idle_user.scalar_subquery()))
            .values(last_seen_at=utcnow() - idle - timedelta(seconds=1))
        )
    try:
        # At most one sweep of an earlier test's longer pause, then ours.
        assert boards["idle@x.org"][1].wait(20), "the timed-out session's socket stayed open"
        time.sleep(0.6)  # a few more sweeps
        assert boards["busy@x.org"][0].connected and not boards["busy@x.org"][1].is_set()
    finally:
        for board, _ in boards.values():
            board.disconnect()
