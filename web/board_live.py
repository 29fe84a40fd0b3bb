"""The board's socket: only signed-in staff who may see the board connect, and ending a
session disconnects its sockets in every web process.

Events are hints (ids and counts); a page that receives one, or reconnects, fetches the
record over HTTP, where every request checks the session again.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask, current_app, request, session
from flask_socketio import ConnectionRefusedError as SocketRefused
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from rapidresponse.models import StaffSession, utcnow
from rapidresponse.staff import Permission, find_session, is_live, may
from web.auth import TOKEN_KEY, session_rules
from web.context import services
from web.extensions import socketio

log = logging.getLogger(__name__)

SOCKETS_KEY = "rr:staff-sockets:{session_id}"
# Boards one socket process holds at most. Each holds a thread of that process (threading
# mode), which serves nothing else: past this a board is told "busy" and its browser
# retries later, with growing pauses, instead of the process running out of threads.
MAX_SOCKETS = 500
BUSY = "busy"
# How soon a board socket is closed after its session times out (the page itself notices
# at its next re-read, up to 30 s).
SWEEP_SECONDS = 15.0


class _Held:
    """The sockets this process holds, with their staff session: counted to refuse past
    MAX_SOCKETS, and swept when their session ends by itself (see _Sweeper)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, int] = {}

    def take(self, sid: str, session_id: int) -> bool:
        with self._lock:
            if len(self._sessions) >= MAX_SOCKETS:
                return False
            self._sessions[sid] = session_id
            return True

    def release(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def by_socket(self) -> dict[str, int]:
        with self._lock:
            return dict(self._sessions)

    def __len__(self) -> int:
        return len(self._sessions)


held = _Held()


class _Sweeper:
    """Closes the sockets whose session has timed out (idle or absolute), every
    SWEEP_SECONDS while this process holds any: a timeout is no event, so nothing else
    would close them, and a board left open would go on receiving hints."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = False
        self._app: Flask | None = None

    def ensure_running(self, app: Flask) -> None:
        with self._lock:
            self._app = app  # the latest: one per process in production
            if self._running:
                return
            self._running = True
        socketio.start_background_task(self._run)

    def _run(self) -> None:
        while True:
            socketio.sleep(SWEEP_SECONDS)
            with self._lock:
                if not len(held):
                    self._running = False
                    return
                app = self._app
            assert app is not None
            try:
                with app.app_context():
                    sweep_timed_out()
            except Exception:  # a database hiccup: try again next round, never die
                log.exception("board sockets not swept")


sweeper = _Sweeper()


def sweep_timed_out() -> int:
    """Disconnect this process's sockets whose session is no longer live; how many."""
    sockets = held.by_socket()
    if not sockets:
        return 0
    found = services()
    rules, now = session_rules(found), utcnow()
    with found.database.reading() as db:
        sessions = db.scalars(
            select(StaffSession)
            .options(joinedload(StaffSession.user))
            .where(StaffSession.id.in_(set(sockets.values())))
        )
        live = {
            found_session.id for found_session in sessions if is_live(found_session, rules, now)
        }
    ended = [sid for sid, session_id in sockets.items() if session_id not in live]
    for sid in ended:
        socketio.server.disconnect(sid, namespace="/")
    return len(ended)


def _sockets_key(session_id: int) -> str:
    return SOCKETS_KEY.format(session_id=session_id)


@socketio.on("connect")  # type: ignore[untyped-decorator]
def connect(_auth: object = None) -> bool:
    """Refuse anyone who may not see the board; remember the socket under its session."""
    token = session.get(TOKEN_KEY)
    if not isinstance(token, str):
        return False
    found = services()
    rules = session_rules(found)
    with found.database.session() as db:
        staff_session = find_session(db, token, rules, utcnow(), activity=False)
        if staff_session is None or not may(staff_session.user.role, Permission.VIEW_BOARD):
            return False
        session_id = staff_session.id
    sid = request.sid  # type: ignore[attr-defined]
    if not held.take(sid, session_id):
        log.warning("board socket refused: this process holds %d already", MAX_SOCKETS)
        raise SocketRefused(BUSY)
    try:
        key = _sockets_key(session_id)
        found.redis.sadd(key, sid)
        found.redis.expire(key, int(rules.absolute.total_seconds()))
    except (RedisError, OSError) as error:
        held.release(sid)
        # Without Redis no event reaches this socket anyway; refusing is the safe side.
        log.warning("board socket refused: Redis unavailable (%s)", error.__class__.__name__)
        return False
    sweeper.ensure_running(current_app._get_current_object())  # type: ignore[attr-defined]
    return True


@socketio.on("disconnect")  # type: ignore[untyped-decorator]
def disconnect(_reason: object = None) -> None:
    held.release(request.sid)  # type: ignore[attr-defined]


def disconnect_session(session_id: int) -> int:
    """Disconnect every socket of a session, in whichever web process holds it."""
    found = services()
    try:
        sids = found.redis.smembers(_sockets_key(session_id))
        found.redis.delete(_sockets_key(session_id))
    except (RedisError, OSError) as error:
        log.warning("sockets not disconnected (%s)", error.__class__.__name__)
        return 0
    for sid in sids:
        # Through the message queue: the process holding the socket closes it.
        socketio.server.disconnect(sid.decode() if isinstance(sid, bytes) else sid, namespace="/")
    return len(sids)
