"""Serving the app with gunicorn's threaded worker, in two kinds of processes.

Flask-SocketIO's threading mode holds a thread for each open socket. Served together,
64 open boards took every thread and no text to the hotline was answered. So they are
served apart:

- **web** processes (``WEB_PROCESSES``, one per core is right) answer the webhooks, the
  report form and the pages; they refuse ``/socket.io/``;
- one **sockets** process holds the boards' sockets, up to ``MAX_SOCKETS`` (refusing
  more with "busy": the browser retries later), and answers the boards' re-reads of
  ``/board/live`` (``LIVE_PATH``), and nothing else. Each hint makes every open board
  re-read; served by the web processes, those re-reads (and the renders behind them)
  took the CPU and threads of the processes the hotline needs: with 200 boards the
  hotline's p99 went from 0.7 to 2.1-3.2 s. Served here, 1.1 s (bench webtier).

Browsers find the sockets at ``SOCKET_URL``: a reverse proxy routing ``/socket.io/`` and
``/board/live`` to the sockets process (docker-compose ships one), or its own port
(``rapidresponse web`` without a proxy, the demo), which the board's page then reads
its fragment from too, across origins (``board_reads_across_origins``). Events reach
every sockets process through Redis.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from gunicorn.app.base import BaseApplication
from sqlalchemy.exc import SQLAlchemyError

from rapidresponse.config import Settings
from rapidresponse.keyring import Keyring
from web.board_live import MAX_SOCKETS
from web.live_reread import LIVE_PATH
from web.wsgi import WsgiApp

# Per web process: webhooks and pages (sockets are not served here). Few on purpose:
# a request is mostly Python holding the GIL, and every thread more that wants it makes
# every handoff dearer. With the hotline's mix at 50 texts at once on PostgreSQL
# (bench/inbound.py, 2 cores): 64 threads 148 texts/s, p99 0.84 s, 6.8 ms of CPU each;
# 4 threads 183/s, p99 0.31 s, 5.3 ms (the others wait their turn in gunicorn's queue).
# A text that meets a held lock waits at most twice LOCK_WAIT_MS; while it does, the
# others go to the spool at once (dispatch.spool.StorageBreaker), not behind it.
WEB_THREADS = 4
# A thread per socket, and some to refuse the ones past MAX_SOCKETS, to answer /healthz
# and the boards' re-reads (most a 304 in well under a millisecond).
SOCKET_THREADS = MAX_SOCKETS + 64
SOCKET_PATH = "/socket.io/"
# What board.js sends with a re-read, and may read of the answer, across origins.
LIVE_REQUEST_HEADERS = "X-Board-Refresh, If-None-Match, X-Live-Version"
LIVE_ANSWER_HEADERS = "ETag, X-Sealed, Retry-After"
PREFLIGHT_MAX_AGE = "600"  # seconds a browser may skip asking again
log = logging.getLogger(__name__)


def _read_areas(services: Any) -> None:
    try:
        services.area_directory()
    except SQLAlchemyError as error:  # the first text will try again
        log.warning("areas not read at start-up (%s)", type(error).__name__)


def _not_here(start_response: Callable[..., Any], why: bytes) -> Iterable[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
    return [why]


def without_sockets(app: WsgiApp) -> WsgiApp:
    """The web processes' app: a socket here would hold one of the webhooks' threads."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if str(environ.get("PATH_INFO", "")).startswith(SOCKET_PATH):
            return _not_here(start_response, b"The board's socket is at SOCKET_URL.\n")
        return app(environ, start_response)

    return serve


def only_sockets(app: WsgiApp) -> WsgiApp:
    """The sockets process's app: the board's socket, its re-reads and /healthz, nothing
    else."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith(SOCKET_PATH) or path in (LIVE_PATH, "/healthz"):
            return app(environ, start_response)
        return _not_here(start_response, b"This is the socket server.\n")

    return serve


def board_reads_across_origins(app: WsgiApp, public_url: str) -> WsgiApp:
    """CORS for ``/board/live``, for the page at ``public_url`` only: without a proxy the
    sockets process has a port of its own, so the board's page (from the web processes'
    port) reads its fragment here across origins. Credentials go with it: the session
    cookie is SameSite=Lax, and another port of the same host is the same site. Any
    other origin gets no CORS headers, so its scripts can read nothing."""
    allowed = _origin_of(public_url)
    granted = [
        ("Access-Control-Allow-Origin", allowed),
        ("Access-Control-Allow-Credentials", "true"),
        ("Vary", "Origin"),
    ]

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        mine = environ.get("HTTP_ORIGIN") == allowed
        if environ.get("PATH_INFO") != LIVE_PATH or not mine:
            return app(environ, start_response)
        if environ.get("REQUEST_METHOD") == "OPTIONS":
            start_response(
                "204 No Content",
                [
                    *granted,
                    ("Access-Control-Allow-Methods", "GET"),
                    ("Access-Control-Allow-Headers", LIVE_REQUEST_HEADERS),
                    ("Access-Control-Max-Age", PREFLIGHT_MAX_AGE),
                ],
            )
            return [b""]

        def with_cors(status: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            extra = [*granted, ("Access-Control-Expose-Headers", LIVE_ANSWER_HEADERS)]
            return start_response(status, [*headers, *extra], *rest)

        return app(environ, with_cors)

    return serve


def _origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class WebServer(BaseApplication):  # type: ignore[misc]
    def __init__(
        self, host: str, port: int, log_level: str, *, sockets: bool = False, processes: int = 1
    ) -> None:
        self.sockets = sockets
        self.options = {
            "bind": f"{host}:{port}",
            "workers": 1 if sockets else processes,
            "worker_class": "gthread",
            "threads": SOCKET_THREADS if sockets else WEB_THREADS,
            "worker_connections": SOCKET_THREADS + 100 if sockets else 1000,
            "timeout": 60,
            "graceful_timeout": 10,
            "loglevel": log_level.lower(),
            "accesslog": None,  # access logs are a record of who reported what, when
            "errorlog": "-",
            "proc_name": "rapidresponse-sockets" if sockets else "rapidresponse-web",
            "control_socket_disable": True,  # no admin socket in the user's home directory
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> WsgiApp:
        # Built in the worker process, after the fork: connections are never shared.
        settings = Settings.from_env()
        if settings.custody == "sealed":
            from web.sealed import SealableApp

            role = "sockets" if self.sockets else "web"
            app: WsgiApp = SealableApp(settings, self._ready_app, role).start()
        else:
            app = self._ready_app(settings, None)
        if self.sockets:
            return board_reads_across_origins(only_sockets(app), settings.public_url)
        return without_sockets(app)

    def _ready_app(self, settings: Settings, keyring: Keyring | None) -> WsgiApp:
        from web import create_app

        app = create_app(settings)
        if not self.sockets:
            _start_background_work(app, keyring)
        return app

    def init(self, parser: Any, opts: Any, args: Any) -> None:
        return None


def _start_background_work(app: Flask, keyring: Keyring | None) -> None:
    from web.sms import start_spool_drain, store_sealed_intake

    services = app.extensions["rapidresponse"]
    if keyring is not None:
        # Before this process answers anything with its keys: what came while sealed is
        # stored first, in order (a STOP then, before a JOIN now), and the workers wait.
        store_sealed_intake(services, keyring)
    start_spool_drain(services, keyring)  # texts kept while the database was away (or sealed)
    # The areas are parsed now, not by the first text to arrive (a city file: ~1 s).
    threading.Thread(target=_read_areas, args=(services,), name="areas", daemon=True).start()


def serve(host: str, port: int, log_level: str, processes: int = 1) -> None:
    """The web processes (pages, webhooks, the board's re-reads)."""
    WebServer(host, port, log_level, processes=processes).run()


def serve_sockets(host: str, port: int, log_level: str) -> None:
    """The sockets process (the boards' live hints)."""
    WebServer(host, port, log_level, sockets=True).run()
