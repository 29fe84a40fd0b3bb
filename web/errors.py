"""Clear answers for bad requests: JSON for machines, short text for people, never a trace."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


def _http_error(error: HTTPException) -> tuple[Response, int]:
    status = error.code or 500
    response = jsonify({"error": error.name, "status": status})
    # A browser names text/html first (and */* at a lower quality); a machine asks for JSON
    # or takes anything: the first choice wins a tie.
    if request.accept_mimetypes.best_match(("application/json", "text/html")) == "text/html":
        response = Response(f"{status} {error.name}\n", mimetype="text/plain")
    return response, status


def _unexpected_error(error: Exception) -> tuple[Response, int]:
    # The class name only: exception text can quote request data (a number, a report).
    log.error("unhandled %s on %s %s", error.__class__.__name__, request.method, request.path)
    return _http_error(InternalServerError())
