"""Flask extensions, created unbound and attached in ``create_app`` (no config at import)."""

from __future__ import annotations

from flask_socketio import SocketIO

# threading mode with simple-websocket: no eventlet (unmaintained) and no monkey-patching.
socketio = SocketIO()
