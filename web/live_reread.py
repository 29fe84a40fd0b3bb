"""``GET /board/live`` re-reads that find nothing new, answered before Flask.

Every hint makes every open board re-read its fragment: 200 boards and a hint a second
are 200 requests a second, each through Flask's routing, its session check (a database
query) and its hooks, about 2 ms of CPU. Most of them find what the board already
shows: the hint changed nothing it shows, or only a broadcast's counts, which the socket
brings and board.js draws in place.

So board.js sends the ETag of the fragment it shows (``web.shared_render.shape_tag``:
the fragment without its counts) and the hint it heard (``X-Live-Version``), and here,
before Flask, a re-read is answered ``304 Not Modified`` when that tag belongs to a
render made since that hint. Checked here, without the database: the session cookie's
signature (a staff browser), and that the re-read is the board's own (a person's touch
goes through Flask, where it keeps their session alive). The tag names one language's
render: a board whose person chose another language meanwhile reloads, and reads the
new one whole.

A 304 carries nothing: it tells a browser that the fragment it holds, and proved it
holds by its hash, is still the one to show. A session ended meanwhile is found by the
next re-read that has something new, and its socket is closed at once anyway
(``web.board_live.disconnect_session``). Anything else, and every tag not current, goes
to the app, which renders (once per hint and language) or refuses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.http import parse_cookie

from dispatch.live import live_version
from dispatch.services import Services
from web.auth import BACKGROUND_HEADER, TOKEN_KEY
from web.security import security_headers
from web.shared_render import (
    LIVE_CACHE_CONTROL,
    VERSION_HEADER,
    SharedRender,
    heard_version,
    sent_tag,
)
from web.wsgi import WsgiApp

LIVE_PATH = "/board/live"
_BACKGROUND_KEY = "HTTP_" + BACKGROUND_HEADER.upper().replace("-", "_")
_VERSION_KEY = "HTTP_" + VERSION_HEADER.upper().replace("-", "_")


class ConditionalReread:
    """WSGI middleware: a board's re-read of an unchanged fragment here, all else to
    ``app``."""

    def __init__(
        self, app: WsgiApp, flask_app: Flask, services: Services, shared: SharedRender
    ) -> None:
        self.app = app
        self.flask_app = flask_app
        self.services = services
        self.shared = shared

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        tag = self.current_tag(environ)
        if tag is None:
            return self.app(environ, start_response)
        start_response(
            "304 Not Modified",
            [
                ("ETag", f'"{tag}"'),
                ("Cache-Control", LIVE_CACHE_CONTROL),
                *security_headers(self.services.settings),
            ],
        )
        return [b""]

    def current_tag(self, environ: dict[str, Any]) -> str | None:
        """The tag the board sent, if it is the current render's; else None (the app
        answers)."""
        if environ.get("PATH_INFO") != LIVE_PATH or environ.get("REQUEST_METHOD") != "GET":
            return None
        if environ.get("QUERY_STRING"):  # ?lang=: the app picks the render of that language
            return None
        if environ.get(_BACKGROUND_KEY) != "background":
            return None
        tag = sent_tag(environ.get("HTTP_IF_NONE_MATCH"))
        if tag is None or not self.signed_in(environ):
            return None
        # The hint the board heard: any render made since will do (no Redis round trip).
        version = heard_version(environ.get(_VERSION_KEY)) or live_version(self.services.redis)
        if version is None or not self.shared.unchanged(tag, version):
            return None
        return tag

    def signed_in(self, environ: dict[str, Any]) -> bool:
        """A session cookie this app signed, naming a staff session."""
        app = self.flask_app
        cookie = parse_cookie(environ).get(app.config["SESSION_COOKIE_NAME"])
        serializer = self._serializer
        if not cookie or serializer is None:
            return False
        try:
            data = serializer.loads(
                cookie, max_age=int(app.permanent_session_lifetime.total_seconds())
            )
        except BadSignature:
            return False
        return isinstance(data, dict) and bool(data.get(TOKEN_KEY))

    @functools.cached_property
    def _serializer(self) -> URLSafeTimedSerializer | None:
        """Flask's own, made once (at the first re-read: the app is configured by then)."""
        app = self.flask_app
        return app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined,no-any-return]
