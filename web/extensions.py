"""Flask extensions, created unbound and attached in ``create_app`` (no config at import)."""

from __future__ import annotations

from flask_socketio import SocketIO
from flask_wtf.csrf import CSRFProtect

# threading mode with simple-websocket: no eventlet (unmaintained) and no monkey-patching.
socketio = SocketIO()

# Every form POST carries a CSRF token; the Twilio webhooks are exempt (they are signed).
csrf = CSRFProtect()
