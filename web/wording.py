"""The words of the alerts, per language, set by a coordinator (``rapidresponse.wording``):
each message with its default, and what every kind of alert costs with the wording as it
stands or as typed (encoding, segments, over the budget or not) before it is saved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from rapidresponse import wording
from rapidresponse.messages import catalog
from rapidresponse.models import Language
from rapidresponse.staff import Permission
from web.auth import requires, signed_in
from web.context import services
from web.refusal import refusal

bp = Blueprint("wording", __name__)
TYPED_CHARS = 2000  # what is kept of a typed wording to show it again


@dataclass(frozen=True)
class Message:
    message_id: str
    text: str
    default: str
    custom: bool


@dataclass(frozen=True)
class LanguageWording:
    language: Language
    messages: list[Message]
    measured: list[wording.Measured]
    replies: list[wording.MeasuredReply]


@bp.get("/wording")
@requires(Permission.MANAGE_AREAS)
def index() -> ResponseReturnValue:
    return render_template("wording/index.html", **_context())


@bp.post("/wording/<language>/<message_id>")
@requires(Permission.MANAGE_AREAS)
def change(language: str, message_id: str) -> ResponseReturnValue:
    chosen = next((lang for lang in Language if lang.value == language), None)
    if chosen is None or message_id not in wording.EDITABLE:
        abort(404)
    typed = request.form.get("text", "")[:TYPED_CHARS]
    try:
        cleaned = wording.check(chosen, message_id, typed) if typed.strip() else ""
    except wording.WordingRefused as refused:
        context = {**_context((chosen, message_id, typed)), "error": refusal(refused)}
        return render_template("wording/index.html", **context), 400
    if request.form.get("action") != "save":  # "check": the cost, nothing stored
        return render_template("wording/index.html", **_context((chosen, message_id, cleaned)))
    with services().database.session() as session:
        wording.save(session, chosen, message_id, cleaned, signed_in().user_id)
    if not cleaned:
        flash(_("Back to the default text."))
    elif message_id in wording.RIGHTS_REPLIES:
        flash(_("Saved: the hotline answers with it from now on."))
    else:
        flash(_("Saved: alerts drafted from now on use it."))
    return redirect(url_for("wording.index", _anchor=f"{language}-{message_id}"), code=303)


def _context(typed: tuple[Language, str, str] | None = None) -> dict[str, Any]:
    found = services()
    with found.database.reading() as session:
        custom = wording.wordings(session)
    settings = found.settings
    tz = ZoneInfo(settings.timezone)
    rights_url = f"{settings.public_url}/rights"
    languages = []
    for language in Language:
        mine = dict(custom.get(language.value, {}))
        if typed is not None and typed[0] is language and typed[2].strip():
            mine[typed[1]] = typed[2]
        messages = [
            Message(
                message_id,
                mine.get(message_id) or _default(language, message_id),
                _default(language, message_id),
                message_id in custom.get(language.value, {}),
            )
            for message_id in wording.EDITABLE
        ]
        org = settings.org_name if language is Language.EN else settings.org_name_es
        stored = dict(custom.get(language.value, {}))
        try:
            measured = wording.measure(language, mine, org, tz)
            replies = wording.measure_replies(language, mine, rights_url)
        except (KeyError, ValueError, IndexError):  # a typed wording that does not format
            measured = wording.measure(language, stored, org, tz)
            replies = wording.measure_replies(language, stored, rights_url)
        languages.append(LanguageWording(language, messages, measured, replies))
    return {"languages": languages, "typed": typed, "error": None}


def _default(language: Language, message_id: str) -> str:
    return catalog(language).get(message_id) or catalog(Language.EN)[message_id]
