"""The board's socket: only signed-in staff who may see the board connect, and ending a
session disconnects its sockets in every web process.

Events are hints (ids and counts); a page that receives one, or reconnects, fetches the
record over HTTP, where every request checks the session again.
"""

from __future__ import annotations

import logging
import threading

from flask import request, session
from flask_socketio import ConnectionRefusedError as SocketRefused
from redis.exceptions import RedisError

from rapidresponse.models import utcnow
from rapidresponse.staff import Permission, find_session, may
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


class _Held:
    """The sockets this process holds: counted to refuse past MAX_SOCKETS."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sids: set[str] = set()

    def take(self, sid: str) -> bool:
        with self._lock:
            if len(self._sids) >= MAX_SOCKETS:
                return False
            self._sids.add(sid)
            return True

    def release(self, sid: str) -> None:
        with self._lock:
            self._sids.discard(sid)

    def __len__(self) -> int:
        return len(self._sids)


held = _Held()


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
    if not held.take(sid):
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
