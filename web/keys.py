"""The panic seal from the board: every process drops its keys within seconds.

A coordinator seals at once. With ``PANIC_SEAL=two-staff`` any signed-in dispatcher or
coordinator may ask, and a second, different one confirms within ``SEAL_ASK_SECONDS``:
for a collective where a coordinator may not be awake when the door is knocked on.
Unsealing is never done here: it needs the recovery phrases, at a terminal
(``rapidresponse keys unseal``), so a stolen session cannot undo a seal.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, redirect, render_template, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from dispatch import key_custody
from rapidresponse import audit
from rapidresponse.models import StaffRole
from rapidresponse.staff import Permission
from web.auth import Staff, requires, signed_in
from web.context import services

bp = Blueprint("keys", __name__)
log = logging.getLogger(__name__)

SEAL_ASKED = "rr:keys:seal-asked"  # who asked first, in two-staff mode
SEAL_ASK_SECONDS = 600


@bp.get("/keys/seal")
@requires(Permission.SEAL_KEYS)
def seal_page() -> ResponseReturnValue:
    return render_template("keys/seal.html", **_context())


@bp.post("/keys/seal")
@requires(Permission.SEAL_KEYS)
def seal_now() -> ResponseReturnValue:
    found, staff = services(), signed_in()
    if found.settings.custody != "sealed":
        said = _("This deployment's keys are not in a sealed keyring, so there is nothing to seal.")
        return render_template("keys/seal.html", **_context(error=said)), 409
    if staff.role is not StaffRole.COORDINATOR:
        if found.settings.panic_seal != "two-staff":
            said = _("Only a coordinator can seal this deployment.")
            return render_template("keys/seal.html", **_context(error=said)), 409
        try:
            asked = found.redis.get(SEAL_ASKED)
            if asked is None or int(asked) == staff.user_id:
                _ask_to_seal(staff)
                return redirect(url_for("keys.seal_page"), code=303)
        except RedisError:
            said = _(
                "The seal could not be asked for just now: try again, "
                "or run 'rapidresponse keys seal'."
            )
            return render_template("keys/seal.html", **_context(error=said)), 503
    try:
        key_custody.seal(found.redis)  # first: nothing (the database down, say) may delay it
        found.redis.delete(SEAL_ASKED)
    except RedisError:
        said = _(
            "The seal did not go through (Redis is unavailable): run 'rapidresponse keys seal'."
        )
        return render_template("keys/seal.html", **_context(error=said)), 503
    try:
        with found.database.session() as session:
            audit.record(session, actor=staff.actor, action="keys.sealed")
    except SQLAlchemyError as error:
        log.error("the seal was not audited (%s)", type(error).__name__)
    return redirect(url_for("home.index"), code=303)


def _ask_to_seal(staff: Staff) -> None:
    found = services()
    found.redis.set(SEAL_ASKED, staff.user_id, ex=SEAL_ASK_SECONDS)
    with found.database.session() as session:
        audit.record(session, actor=staff.actor, action="keys.seal_asked")


def _context(error: str | None = None) -> dict[str, Any]:
    found, staff = services(), signed_in()
    asked_by_me = asked_by_other = False
    try:
        asked = found.redis.get(SEAL_ASKED)
    except RedisError:
        asked = None
    if asked is not None:
        asked_by_me = int(asked) == staff.user_id
        asked_by_other = not asked_by_me
    return {
        "sealable": found.settings.custody == "sealed",
        "alone": staff.role is StaffRole.COORDINATOR,
        "two_staff": found.settings.panic_seal == "two-staff",
        "asked_by_me": asked_by_me,
        "asked_by_other": asked_by_other,
        "minutes": SEAL_ASK_SECONDS // 60,
        "error": error,
    }
