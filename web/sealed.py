"""The web while the deployment is sealed: the hotline still takes texts, nothing is read.

A sealed process holds no key, so it cannot look anyone up, open a report or sign anyone
in. What needs no key goes on:

- ``/sms/inbound``: a signed text is sealed to the keyring's intake *public* key in the
  spool's ``sealed/`` folder and answered "kept" (a STOP gets no answer: Twilio's own
  opt-out answers it and blocks our sends to that number, and it is applied at the
  unseal, before anything could be sent). After the unseal the texts are stored and
  answered like texts spooled while the database was away.
- ``/sms/status``: callbacks go onto the status queue, which workers apply once they
  hold keys again; a TwiML reply's id (``redact=1``) is sealed like a text, and its
  deletion at the provider scheduled at the unseal.
- ``/healthz`` says "sealed"; every other page says so too, in English and Spanish.

``SealableApp`` serves this until a holder hands the keyring over, then the real app;
at a seal it serves this again and ends its process, since keys only leave memory with
it (gunicorn starts a fresh, sealed one).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response, abort, jsonify, request
from redis import Redis
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from dispatch import key_custody, status_queue
from dispatch.redis_conn import connect
from dispatch.senders import redaction_delay
from dispatch.spool import SealedIntake, SpooledText
from rapidresponse.commands import Command, Keyword, parse
from rapidresponse.config import Settings
from rapidresponse.keyring import Keyring, read_wrapped
from rapidresponse.languages import guess as guess_language
from rapidresponse.messages import text as message_text
from web.sms import (
    coordinates,
    intake_location,
    read_inbound,
    read_status_report,
    request_is_signed,
    twiml,
)
from web.wsgi import WsgiApp

log = logging.getLogger(__name__)

START_WAIT_SECONDS = 5.0
KEYLESS = frozenset(
    {Keyword.HELP, Keyword.RIGHTS}
)  # a process started while unsealed asks this long before serving

SEALED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sealed · Sellado</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem;
line-height:1.5}h1{font-size:1.4rem}</style></head><body>
<h1>Sealed</h1>
<p>This service is locked: its keys are not on this server. Texts to the hotline are still
received and kept, unreadable, until coordinators unseal it.</p>
<p>Coordinators: <code>rapidresponse keys unseal</code>, with your shares.</p>
<h1 lang="es">Sellado</h1>
<p lang="es">Este servicio esta cerrado: sus llaves no estan en este servidor. Los mensajes a la
linea se siguen recibiendo y se guardan, ilegibles, hasta que las coordinadoras lo abran.</p>
</body></html>
"""


def create_sealed_app(settings: Settings, redis: Redis) -> Flask:
    """The app a sealed web process serves (see the module's docstring)."""
    if settings.intake_public is None:
        raise ValueError("settings: a sealed deployment's intake key is needed")
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=64 * 1024)
    if settings.trusted_proxies:
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    intake = SealedIntake(settings.spool_path, settings.intake_public)
    where = intake_location(settings)

    def kept(entry: str) -> None:
        # Workers hold their sends at the unseal until this host's intake is stored.
        with contextlib.suppress(RedisError, OSError):
            key_custody.note_intake_pending(redis, where)
        log.info("kept while sealed: %s", entry)

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="sealed", sealed=True)

    @app.post("/sms/inbound")
    def inbound() -> Response:
        if not request_is_signed(settings):
            abort(403)
        sid, phone, body, location, channel = read_inbound(settings.phone_region)
        redact = redaction_delay(settings) is not None
        action = f"{settings.public_url}/sms/status?redact=1" if redact else None
        command = parse(body)
        if command.keyword in KEYLESS:  # what anyone may ask, answered now, not kept
            if redact:
                intake.keep_redaction(sid)  # still deleted at Twilio, after the unseal
                kept("an id")
            return twiml(_keyless_answer(settings, command, body), action)
        intake.keep_text(
            SpooledText(phone, body, sid, *coordinates(location), channel=channel.value)
        )
        kept("a text")
        return twiml(kept_while_sealed(command, body), action)

    @app.post("/sms/status")
    def status() -> Response:
        if not request_is_signed(settings):
            abort(403)
        report = read_status_report(settings, request.form, request.args)
        if report is None:
            abort(400, "MessageSid and MessageStatus are required")
        if report.redact:
            intake.keep_redaction(report.sid)
            kept("an id")
            return Response(status=200)
        if report.callback is not None:
            try:
                status_queue.record(redis, report.callback)  # applied once workers hold keys
            except (RedisError, OSError) as error:
                log.warning("status callback not kept while sealed (%s)", type(error).__name__)
                return Response("busy", status=503, headers={"Retry-After": "5"})
        return Response(status=200)

    @app.route("/", defaults={"path": ""}, methods=["GET", "POST", "HEAD"])
    @app.route("/<path:path>", methods=["GET", "POST", "HEAD"])
    def everything_else(path: str) -> Response:
        return Response(SEALED_PAGE, status=503, mimetype="text/html", headers=_no_store())

    @app.after_request
    def say_sealed(response: Response) -> Response:
        response.headers["X-Sealed"] = "1"  # the board reloads into the sealed page
        return response

    @app.errorhandler(HTTPException)
    def plain_error(error: HTTPException) -> Response:
        return Response(
            f"{error.code} {error.name}\n", status=error.code or 500, mimetype="text/plain"
        )

    return app


def kept_while_sealed(command: Command, body: str) -> str | None:
    """A text kept while sealed is answered that it is kept (a STOP gets nothing now: the
    carrier's own opt-out answers it, and it is applied at the unseal)."""
    if command.keyword is Keyword.STOP:
        return None
    return message_text(command.language or guess_language(body), "sms.kept_while_sealed")


def _keyless_answer(settings: Settings, command: Command, body: str) -> str:
    """HELP and RIGHTS, in the catalog's words (a coordinator's own wording is in the
    database, read again once unsealed): a raid does not wait for the unseal."""
    language = command.language or guess_language(body)
    if command.keyword is Keyword.HELP:
        return message_text(language, "sms.help")
    topic = command.argument
    message_id = f"sms.rights_{topic}" if topic else "sms.rights"
    return message_text(
        language, message_id, url=f"{settings.public_url}/rights?lang={language.value}"
    )


def _no_store() -> dict[str, str]:
    return {"Cache-Control": "no-store", "Retry-After": "30"}


class SealableApp:
    """Serves the sealed app until the keyring arrives, then the real one (``build``).

    Args:
        build: makes the real app from settings with keys, and the keyring (for work
            such as releasing what arrived while sealed).
        role: how this process names itself when it asks for keys.
    """

    def __init__(
        self, settings: Settings, build: Callable[[Settings, Keyring], WsgiApp], role: str
    ) -> None:
        self.settings = settings
        self.redis = connect(settings.redis_url or "")
        self.wrapped = read_wrapped(settings.keyring_path)
        self.sealed_app: WsgiApp = create_sealed_app(settings, self.redis)
        self.app: WsgiApp = self.sealed_app
        self._build = build
        self._role = role

    def start(self) -> SealableApp:
        try:
            if key_custody.is_unsealed(self.redis, self.wrapped):
                keyring = key_custody.ask_for_keys(
                    self.redis, self.wrapped, self._role, timeout=START_WAIT_SECONDS
                )
                if keyring is not None and self._open(keyring):
                    return self
        except (RedisError, OSError) as error:  # the sealed hotline needs no Redis
            log.warning("keys not asked for at start (%s)", type(error).__name__)
        threading.Thread(target=self._wait, name="rapidresponse-unseal", daemon=True).start()
        return self

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        return self.app(environ, start_response)

    def _wait(self) -> None:
        log.warning("sealed: serving the sealed hotline until 'rapidresponse keys unseal'")
        while True:
            try:
                keyring = key_custody.ask_for_keys(self.redis, self.wrapped, self._role)
            except (RedisError, OSError) as error:
                log.warning("asking for keys: Redis unavailable (%s)", type(error).__name__)
                time.sleep(1)
                continue
            if keyring is not None and self._open(keyring):
                return
            time.sleep(1)

    def _open(self, keyring: Keyring) -> bool:
        """Serve the real app, watched by a key holder. False (still sealed) if either
        could not be made: a process must never hold keys without a holder."""
        holder = key_custody.KeyHolder(self.redis, keyring, on_seal=self._sealed)
        try:
            holder.start()
            app = self._build(self.settings.with_keyring(keyring), keyring)
        except Exception:
            log.exception("keys received but the app could not be built; still sealed")
            holder.stop()
            return False
        if holder.stopped.is_set():
            return False  # sealed again while it was being built
        self.app = app
        log.warning("unsealed: serving everything")
        return True

    def _sealed(self) -> None:
        self.app = self.sealed_app
        # The keys are in this process's memory (the app, its services): end it. gunicorn
        # lets the requests in flight finish, and starts a fresh worker, sealed.
        os.kill(os.getpid(), signal.SIGTERM)
