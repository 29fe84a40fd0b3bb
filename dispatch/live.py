"""Live updates for the board, pushed through Redis so that any process can publish.

Web processes subscribe (Flask-SocketIO's client manager); workers publish with a
write-only manager and never import the web app. Events are hints that something
changed (ids and counts), never phone numbers or report text: the board re-reads the
record from the server.
"""

from __future__ import annotations

from typing import Any

import socketio
from redis import Redis
from redis.exceptions import RedisError

from dispatch.redis_conn import connect

DEFAULT_CHANNEL = "rapidresponse"


def live_events_manager(
    redis_url: str, channel: str | None = None, write_only: bool = False
) -> socketio.RedisManager:
    """The Redis pub/sub manager shared by the web app (subscriber) and workers (publishers).

    Built explicitly because Flask-SocketIO only recognises redis:// URLs by itself,
    and the embedded Redis listens on a unix:// socket.
    """
    return socketio.RedisManager(
        redis_url, channel=channel or DEFAULT_CHANNEL, write_only=write_only
    )


# Counts the hints ever published: a board render made while it read N is still the
# record while it reads N (see web/shared_render.py).
LIVE_VERSION_KEY = "rr:live-version"
# Each hint carries the count it made, so that a board that heard it asks for a render
# at least that new, which one render serves to every board, rather than for the newest
# (a render per hint, when reports arrive many a second).
VERSION_FIELD = "live_version"


class LivePublisher:
    """Emits Socket.IO events from outside the web app (workers, the CLI)."""

    def __init__(self, redis_url: str, channel: str | None = None) -> None:
        self._manager = live_events_manager(redis_url, channel, write_only=True)
        self._redis = connect(redis_url)

    def emit(self, event: str, data: dict[str, Any], room: str | None = None) -> None:
        # Before the hint: a board that hears it re-reads, and must not get a render
        # made before the change.
        version = int(self._redis.incr(LIVE_VERSION_KEY))
        self._manager.emit(event, {**data, VERSION_FIELD: version}, namespace="/", room=room)


def live_version(redis: Redis) -> int | None:
    """The hints published so far; None when Redis cannot say (then nothing is shared)."""
    try:
        raw = redis.get(LIVE_VERSION_KEY)
    except (RedisError, OSError):
        return None
    if raw is None:
        return 0
    try:
        return int(raw)
    except (TypeError, ValueError):
        return None
