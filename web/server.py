"""Serving the app with gunicorn's threaded worker, as Flask-SocketIO's threading mode wants.

One process: Socket.IO needs sticky sessions, which gunicorn's own balancer cannot give.
Scale out by running more ``rapidresponse web`` processes behind a sticky load balancer;
they share events through the Redis message queue.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication
from sqlalchemy.exc import SQLAlchemyError

THREADS = 64  # each open Socket.IO connection holds one
log = logging.getLogger(__name__)


def _read_areas(services: Any) -> None:
    try:
        services.area_directory()
    except SQLAlchemyError as error:  # the first text will try again
        log.warning("areas not read at start-up (%s)", type(error).__name__)


class WebServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, host: str, port: int, log_level: str) -> None:
        self.options = {
            "bind": f"{host}:{port}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": THREADS,
            "timeout": 60,
            "graceful_timeout": 10,
            "loglevel": log_level.lower(),
            "accesslog": None,  # access logs are a record of who reported what, when
            "errorlog": "-",
            "proc_name": "rapidresponse-web",
            "control_socket_disable": True,  # no admin socket in the user's home directory
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # Built in the worker process, after the fork: connections are never shared.
        from web import create_app
        from web.sms import start_spool_drain

        app = create_app()
        services = app.extensions["rapidresponse"]
        start_spool_drain(services)  # texts kept while the database was away
        # The areas are parsed now, not by the first text to arrive (a city file: ~1 s).
        threading.Thread(target=_read_areas, args=(services,), name="areas", daemon=True).start()
        return app

    def init(self, parser: Any, opts: Any, args: Any) -> None:
        return None


def serve(host: str, port: int, log_level: str) -> None:
    WebServer(host, port, log_level).run()
