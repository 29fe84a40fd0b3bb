"""``GET /healthz``: can this process reach the database and Redis? For load balancers.

It counts the texts this process keeps in its spool while the database is away, the
status callbacks waiting for a worker, and, with PROVIDER_REDACTION, the deletions at
Twilio waiting and failing."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from dispatch import status_queue
from dispatch.redis_conn import ping
from dispatch.senders import redaction_delay
from rapidresponse import redaction
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
    body: dict[str, object] = {"status": "ok" if healthy else "unavailable", **checks}
    # Texts answered but not yet stored: more than a few for long is worth a page.
    body["spooled_texts"] = len(found.spool.waiting())
    # Status callbacks waiting for a worker: growing for long means no worker drains them.
    body["status_callbacks_waiting"] = status_queue.waiting(found.redis)
    if redaction_delay(found.settings) is not None and checks["database"] == "ok":
        # Deletions at the provider that are waiting, and those that keep failing: a
        # count to alert on, not a reason to take this process out of rotation.
        with found.database.session() as session:
            body["provider_redaction"] = redaction.counts(session).as_dict()
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response, 200 if healthy else 503
