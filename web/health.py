"""``GET /healthz``: can this process reach the database and Redis? For load balancers."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from dispatch.redis_conn import ping
from web.context import services

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    found = services()
    checks = {
        "database": "ok" if found.database.ping() else "down",
        "redis": "ok" if ping(found.redis) else "down",
    }
    healthy = all(state == "ok" for state in checks.values())
    body = {"status": "ok" if healthy else "unavailable", **checks}
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, 200 if healthy else 503
