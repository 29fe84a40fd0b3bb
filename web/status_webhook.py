"""``POST /sms/status``, answered before Flask.

A broadcast brings two status callbacks per message (sent, then delivered), hundreds a
second at a carrier's top rate, all on the web processes that must also answer the
hotline. Each is small and the same: check Twilio's signature, put four fields on the
status queue, answer 200. Through Flask's routing, request and response objects, its
session and locale hooks, that cost more than the work itself; here it is parsed from
the WSGI environ and answered directly. What a callback means is decided where it was
before (``web.sms.answer_status_callback``), so both ways of arriving behave alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.datastructures import MultiDict

from dispatch.services import Services
from web.security import security_headers
from web.sms import answer_status_callback, webhook_url
from web.wsgi import WsgiApp

STATUS_PATH = "/sms/status"
MAX_BODY = 64 * 1024  # as the app's MAX_CONTENT_LENGTH: a callback is a few hundred bytes
MAX_FIELDS = 100  # Twilio sends about 15
FORM = "application/x-www-form-urlencoded"
STATUS_LINES = {
    200: "200 OK",
    400: "400 Bad Request",
    403: "403 Forbidden",
    413: "413 Content Too Large",
    500: "500 Internal Server Error",
}

log = logging.getLogger(__name__)


class TooLarge(Exception):
    pass


class StatusWebhook:
    """WSGI middleware: status callbacks here, everything else to ``app``."""

    def __init__(self, app: WsgiApp, services: Services) -> None:
        self.app = app
        self.services = services

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != STATUS_PATH or environ.get("REQUEST_METHOD") != "POST":
            return self.app(environ, start_response)
        code = self.answer(environ)
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", "0"),
            *security_headers(self.services.settings),
        ]
        start_response(STATUS_LINES[code], headers)
        return [b""]

    def answer(self, environ: dict[str, Any]) -> int:
        try:
            form = read_form(environ)
        except TooLarge:
            return 413
        except ValueError:  # more fields than any callback has, or a broken length
            return 400
        query = str(environ.get("QUERY_STRING", ""))
        url = webhook_url(self.services.settings, STATUS_PATH, query)
        try:
            return answer_status_callback(
                self.services,
                url,
                form,
                MultiDict(parse_qsl(query, keep_blank_values=True)),
                str(environ.get("HTTP_X_TWILIO_SIGNATURE", "")),
            )
        except Exception as error:  # a webhook answers; the log says what
            # The type only: an exception's text could carry a number or a message.
            log.error("status callback not recorded (%s)", type(error).__name__)
            return 500


def read_form(environ: dict[str, Any]) -> MultiDict[str, str]:
    """The urlencoded body's fields; empty for any other kind of body, as Flask's
    ``request.form`` would be.

    Raises:
        TooLarge: the body is longer than any callback.
        ValueError: a malformed Content-Length, or too many fields.
    """
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > MAX_BODY:
        raise TooLarge
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    content_type = str(environ.get("CONTENT_TYPE", "")).split(";", 1)[0].strip().lower()
    if content_type != FORM:
        return MultiDict()
    fields = parse_qsl(
        body.decode("latin-1"),
        keep_blank_values=True,
        encoding="utf-8",
        errors="replace",
        max_num_fields=MAX_FIELDS,
    )
    return MultiDict(fields)
