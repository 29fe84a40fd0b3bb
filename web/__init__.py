"""The Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, Map

from dispatch.live import live_events_manager
from dispatch.services import Services, install
from rapidresponse.config import Settings
from web import local_time
from web.extensions import csrf, socketio
from web.live_reread import ConditionalReread
from web.security import add_security_headers
from web.webhooks import TwilioWebhooks


class RowId(IntegerConverter):
    """``<int:...>`` in our routes: an id that fits a database integer (63 bits), else 404.

    Werkzeug's converter takes any length of digits, and SQLite cannot even compare a
    larger number with a column: a URL with a 20-digit id would be a 500."""

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, max=2**63 - 1)


def create_app(
    settings: Settings | None = None,
    services: Services | None = None,
    test_config: dict[str, Any] | None = None,
) -> Flask:
    """Build the web app.

    Args:
        settings: defaults to ``Settings.from_env()``.
        services: database/Redis/sender wiring; built from ``settings`` when omitted.
        test_config: Flask config overrides for tests.
    """
    settings = settings or (services.settings if services else Settings.from_env())
    services = services or Services.build(settings)
    install(services)
    app = Flask(__name__, instance_path=str(settings.instance_path))
    if settings.trusted_proxies:
        # Behind a reverse proxy every request comes from the proxy: without this, the
        # per-client limits would put a whole city in one bucket.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
        MAX_CONTENT_LENGTH=64 * 1024,  # webhooks and forms are small; refuse floods early
        RR_SETTINGS=settings,
    )
    app.config.update(test_config or {})
    app.extensions["rapidresponse"] = services
    csrf.init_app(app)
    app.url_map.converters["int"] = RowId  # before any route is added
    _register_blueprints(app, settings)
    local_time.init_app(app, settings.timezone)
    app.after_request(add_security_headers)
    socketio.init_app(
        app,
        async_mode="threading",
        client_manager=live_events_manager(services.redis_url, app.config.get("SOCKETIO_CHANNEL")),
        cors_allowed_origins=[settings.public_url],
        # Engine.IO's default; tests shorten it, since a long poll waits for the next ping.
        ping_interval=app.config.get("SOCKETIO_PING_INTERVAL", 25),
        logger=False,
        engineio_logger=False,
    )
    from web.board import shared_live

    # Outermost: Twilio's webhooks, or a board's re-read of what it shows already, pass
    # nothing else (see web.webhooks and web.live_reread).
    app.wsgi_app = ConditionalReread(app.wsgi_app, app, services, shared_live)  # type: ignore[method-assign]
    app.wsgi_app = TwilioWebhooks(app.wsgi_app, services)  # type: ignore[method-assign]
    return app


def _register_blueprints(app: Flask, settings: Settings) -> None:
    from web import (
        announcements,
        areas,
        auth,
        board,
        board_live,
        drills,
        errors,
        health,
        home,
        keys,
        people,
        report,
        simulator,
        whatsapp_templates,
        wording,
    )

    auth.init_app(app)
    app.register_blueprint(board.bp)
    app.register_blueprint(people.bp)
    app.register_blueprint(announcements.bp)
    app.register_blueprint(drills.bp)
    app.register_blueprint(people.my)
    app.register_blueprint(areas.bp)
    app.register_blueprint(wording.bp)
    app.register_blueprint(keys.bp)
    app.register_blueprint(whatsapp_templates.bp)
    del board_live  # imported for its socket handlers
    app.register_blueprint(home.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(report.bp)
    report.init_babel(app)
    errors.register(app)
    if settings.sms_backend == "simulator" and not settings.is_production:
        app.register_blueprint(simulator.bp)
