"""Live updates for the board, pushed through Redis so that any process can publish.

Web processes subscribe (Flask-SocketIO's client manager); workers publish with a
write-only manager and never import the web app. Events are hints that something
changed (ids and counts), never phone numbers or report text: the board re-reads the
record from the server.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import socketio
from redis import Redis
from redis.exceptions import RedisError

from dispatch.redis_conn import connect

log = logging.getLogger(__name__)

DEFAULT_CHANNEL = "rapidresponse"
# A hint repeated within this is sent once more at its end, not each time (see
# LivePublisher.emit_coalesced).
COALESCE_MS = 500
COALESCE_PREFIX = "rr:hint:"


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
        self._later: set[threading.Timer] = set()  # repeated hints to send at a window's end
        self._later_lock = threading.Lock()
        self._closed = False

    def emit(self, event: str, data: dict[str, Any], room: str | None = None) -> None:
        # Before the hint: a board that hears it re-reads, and must not get a render
        # made before the change.
        version = int(self._redis.incr(LIVE_VERSION_KEY))
        self._manager.emit(event, {**data, VERSION_FIELD: version}, namespace="/", room=room)

    def emit_coalesced(
        self, event: str, data: dict[str, Any], window_ms: int = COALESCE_MS
    ) -> None:
        """``emit``, but the same hint (event and data) at most once per window across
        every process, and once more at the end of a window in which it was repeated.

        The hotline's reports touch the same few incidents many times a second on a raid
        morning; each hint went to every open board, and each board re-read. A board
        needs to hear that an incident changed, not how often: the first hint goes at
        once, the repeats within ``window_ms`` become one more at its end (made after
        them, so the board's re-read finds them all).
        """
        key = COALESCE_PREFIX + event + ":" + json.dumps(data, sort_keys=True)
        if self._redis.set(key, 1, nx=True, px=window_ms):
            self.emit(event, data)
        elif self._redis.set(key + ":again", 1, nx=True, px=window_ms):
            later = threading.Timer(
                window_ms / 1000, lambda: self._again(later, key, event, data, window_ms)
            )
            later.daemon = True
            with self._later_lock:
                if self._closed:
                    return
                self._later.add(later)
            later.start()

    def _again(
        self, later: threading.Timer, key: str, event: str, data: dict[str, Any], window_ms: int
    ) -> None:
        with self._later_lock:
            self._later.discard(later)
        try:
            self._redis.set(key, 1, px=window_ms)  # a repeat right after waits its turn too
            self.emit(event, data)
        except (RedisError, OSError) as error:  # the board's half-minute re-read catches up
            log.warning("a repeated hint was not sent (%s)", error.__class__.__name__)

    def close(self) -> None:
        """Drop the repeated hints not sent yet (their boards re-read within 30 s)."""
        with self._later_lock:
            self._closed = True
            pending, self._later = self._later, set()
        for later in pending:
            later.cancel()
        self._redis.close()


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
