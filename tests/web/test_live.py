"""Live events: a publisher outside the web app reaches browsers through Redis.

A real server on a local port and a real Socket.IO client: Flask-SocketIO's test client
cannot go through a message queue, and the queue is the point here.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from queue import Empty, Queue
from typing import Any

import pytest
import socketio
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from dispatch.live import LivePublisher
from dispatch.services import Services


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def test_an_event_published_by_a_worker_reaches_a_connected_board(
    live_server: str, services: Services
) -> None:
    received: Queue[Any] = Queue()
    board = socketio.Client(reconnection=False)
    board.on("broadcast_progress", received.put)
    board.connect(live_server, transports=["polling"], wait_timeout=10)
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
    assert event == {"alert_id": 7, "sent": 3, "pending": 2}
