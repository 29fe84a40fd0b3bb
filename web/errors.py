"""Clear answers for bad requests: JSON for machines, short text for people, never a trace."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from flask_babel import gettext as _
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(SQLAlchemyError, _database_error)
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


def _database_error(error: SQLAlchemyError) -> tuple[Response, int]:
    """The database is down, busy, or refused the write (a full disk, a failed replica):
    the change was rolled back whole, so nothing stored is lost; say so, and when to retry.
    (The hotline's own webhook keeps the text in its spool instead: see web.sms.)"""
    # The class name only: SQLAlchemy's message quotes the statement and its parameters.
    log.error("database error %s on %s %s", error.__class__.__name__, request.method, request.path)
    said = _(
        "The database could not take this just now; nothing was changed. Try again in a moment."
    )
    if request.accept_mimetypes.best_match(("application/json", "text/html")) == "text/html":
        response = Response(said + "\n", mimetype="text/plain")
    else:
        response = jsonify({"error": "Service Unavailable", "status": 503, "detail": said})
    response.headers["Retry-After"] = "5"
    return response, 503
