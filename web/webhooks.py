"""Twilio's two webhooks, ``POST /sms/inbound`` and ``POST /sms/status``, answered before
Flask.

Both are what a raid morning multiplies: every text to the hotline, and two status
callbacks per message of a broadcast, hundreds a second at a carrier's top rate, on the
web processes that must answer them all. Each is small and always the same shape: check
Twilio's signature, do the work, answer. Through Flask's routing, request and response
objects, its session and locale hooks, the wrapping cost more than a callback's work and
a tenth of a text's; here the form is parsed from the WSGI environ and the answer
written directly. What each means is decided in ``web.sms`` (``answer_inbound``,
``answer_status_callback``), where the sealed app's own webhook finds it too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

import werkzeug.urls  # noqa: F401  (registers the "werkzeug.url_quote" codec error handler)
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.datastructures import MultiDict

from dispatch.services import Services
from web.security import security_headers
from web.sms import TWIML_TYPE, answer_inbound, answer_status_callback, webhook_url
from web.wsgi import WsgiApp

INBOUND_PATH = "/sms/inbound"
STATUS_PATH = "/sms/status"
# As the app's MAX_CONTENT_LENGTH: a callback is a few hundred bytes, a text's form at
# most a few kilobytes (Twilio's longest message is 1,600 characters).
MAX_BODY = 64 * 1024
MAX_FIELDS = 100  # Twilio sends about 15 with a callback, 20 to 40 with a text
FORM = "application/x-www-form-urlencoded"
STATUS_LINES = {
    200: "200 OK",
    400: "400 Bad Request",
    403: "403 Forbidden",
    405: "405 Method Not Allowed",
    413: "413 Content Too Large",
    500: "500 Internal Server Error",
    503: "503 Service Unavailable",
}
EMPTY_TYPE = "text/plain; charset=utf-8"

log = logging.getLogger(__name__)


class TooLarge(Exception):
    pass


# What a webhook decides from its signed request: the status, and the body to answer.
Handler = Callable[[Services, str, MultiDict[str, str], MultiDict[str, str], str], tuple[int, str]]


def _inbound(
    services: Services, url: str, form: MultiDict[str, str], _args: object, signature: str
) -> tuple[int, str]:
    return answer_inbound(services, url, form, signature)


def _status(
    services: Services,
    url: str,
    form: MultiDict[str, str],
    args: MultiDict[str, str],
    signature: str,
) -> tuple[int, str]:
    return answer_status_callback(services, url, form, args, signature), ""


# Each webhook's handler, and the type of what it answers with.
WEBHOOKS: dict[str, tuple[Handler, str]] = {
    INBOUND_PATH: (_inbound, TWIML_TYPE),
    STATUS_PATH: (_status, EMPTY_TYPE),
}


class TwilioWebhooks:
    """WSGI middleware: Twilio's webhooks here, everything else to ``app``."""

    def __init__(self, app: WsgiApp, services: Services) -> None:
        self.app = app
        self.services = services

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO"))
        webhook = WEBHOOKS.get(path)
        if webhook is None:
            return self.app(environ, start_response)
        handler, content_type = webhook
        if environ.get("REQUEST_METHOD") != "POST":
            code, body = 405, ""
        else:
            code, body = self.answer(environ, path, handler)
        payload = body.encode()
        headers = [
            ("Content-Type", content_type if payload else EMPTY_TYPE),
            ("Content-Length", str(len(payload))),
            *([("Allow", "POST")] if code == 405 else []),
            *([("Retry-After", "5")] if code == 503 else []),
            *security_headers(self.services.settings),
        ]
        start_response(STATUS_LINES[code], headers)
        return [payload]

    def answer(self, environ: dict[str, Any], path: str, handler: Handler) -> tuple[int, str]:
        try:
            form = read_form(environ)
        except TooLarge:
            return 413, ""
        except ValueError:  # more fields than Twilio sends, or a broken length
            return 400, ""
        query = str(environ.get("QUERY_STRING", ""))
        url = webhook_url(self.services.settings, path, query)
        args = MultiDict(parse_qsl(query, keep_blank_values=True))
        signature = str(environ.get("HTTP_X_TWILIO_SIGNATURE", ""))
        try:
            return handler(self.services, url, form, args, signature)
        except SQLAlchemyError as error:  # refused, not away (that is spooled): rolled back
            # The type only: SQLAlchemy's message quotes the statement and its parameters.
            log.error("database error %s on POST %s", type(error).__name__, path)
            return 503, ""
        except Exception as error:  # a webhook answers; the log says what
            # The type only: an exception's text could carry a number or a message.
            log.error("%s not handled (%s)", path, type(error).__name__)
            return 500, ""


def read_form(environ: dict[str, Any]) -> MultiDict[str, str]:
    """The urlencoded body's fields; empty for any other kind of body, as Flask's
    ``request.form`` would be.

    Raises:
        TooLarge: the body is longer than any webhook's.
        ValueError: a malformed Content-Length, or too many fields.
    """
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length > MAX_BODY:
        raise TooLarge
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    content_type = str(environ.get("CONTENT_TYPE", "")).split(";", 1)[0].strip().lower()
    if content_type != FORM:
        return MultiDict()
    # An invalid escape is kept as it came ("%FF"), as Werkzeug keeps it: Twilio signs
    # what it sent, and the signature is checked over what is read here.
    fields = parse_qsl(
        body.decode("latin-1"),
        keep_blank_values=True,
        encoding="utf-8",
        errors="werkzeug.url_quote",
        max_num_fields=MAX_FIELDS,
    )
    return MultiDict(fields)
