"""The WhatsApp templates a coordinator has had approved (``rapidresponse.whatsapp``):
one per kind of alert and language, each with the exact text to submit to Meta, its
Content API sid and its review status; and who goes by SMS for lack of one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext

from dispatch.content_sync import SyncFailed, sync_templates
from rapidresponse import whatsapp
from rapidresponse.config import whatsapp_alerts
from rapidresponse.models import AlertKind, Language, TemplateStatus, WhatsAppTemplate
from rapidresponse.staff import Permission
from web.auth import requires, signed_in
from web.context import services

bp = Blueprint("whatsapp_templates", __name__)


@dataclass(frozen=True)
class Slot:
    """One kind of alert in one language: its suggested text and its template, if any."""

    kind: AlertKind
    language: Language
    suggested: str
    template: WhatsAppTemplate | None

    @property
    def approved(self) -> bool:
        return self.template is not None and self.template.status is TemplateStatus.APPROVED


@bp.get("/whatsapp/templates")
@requires(Permission.MANAGE_AREAS)
def index() -> ResponseReturnValue:
    return render_template("whatsapp/templates.html", **_context())


@bp.post("/whatsapp/templates/sync")
@requires(Permission.MANAGE_AREAS)
def sync() -> ResponseReturnValue:
    """Read the templates and Meta's reviews from Twilio's Content API."""
    found = services()
    if found.settings.sms_backend != "twilio":
        said = _("No Twilio account is set here: enter the templates by hand.")
        return render_template("whatsapp/templates.html", **{**_context(), "error": said}), 400
    try:
        synced = sync_templates(found.settings, found.database, signed_in().user_id)
    except SyncFailed:
        said = _("Twilio could not be asked for the templates just now. Nothing was changed.")
        return render_template("whatsapp/templates.html", **{**_context(), "error": said}), 502
    flash(
        ngettext(
            "%(num)d template of ours found at Twilio.",
            "%(num)d templates of ours found at Twilio.",
            synced.found,
        )
    )
    if synced.not_utility:
        flash(
            ngettext(
                "%(num)d approved template is not in the Utility category: it is not used.",
                "%(num)d approved templates are not in the Utility category: they are not used.",
                synced.not_utility,
            )
        )
    return redirect(url_for("whatsapp_templates.index"), code=303)


@bp.post("/whatsapp/templates/<kind>/<language>")
@requires(Permission.MANAGE_AREAS)
def save(kind: str, language: str) -> ResponseReturnValue:
    chosen_kind = next((k for k in AlertKind if k.value == kind), None)
    chosen_language = next((lang for lang in Language if lang.value == language), None)
    status = next((s for s in TemplateStatus if s.value == request.form.get("status")), None)
    if chosen_kind is None or chosen_language is None:
        abort(404)
    try:
        if status is None:
            raise whatsapp.TemplateError("status")
        with services().database.session() as session:
            whatsapp.save_template(
                session,
                kind=chosen_kind,
                language=chosen_language,
                content_sid=request.form.get("content_sid", "")[:64],
                variables=["text"],
                status=status,
                staff_id=signed_in().user_id,
            )
    except whatsapp.TemplateError as refused:
        context = {**_context(), "error": _refusal(str(refused))}
        return render_template("whatsapp/templates.html", **context), 400
    flash(_("Saved: alerts approved from now on use it."))
    return redirect(url_for("whatsapp_templates.index", _anchor=f"{kind}-{language}"), code=303)


def _refusal(field: str) -> str:
    said: str = (
        _("That is not a Content API sid: HX followed by 32 hexadecimal characters.")
        if field == "content_sid"
        else _("Choose the template's review status.")
    )
    return said


def _context() -> dict[str, Any]:
    found = services()
    with found.database.reading() as session:
        entered = whatsapp.templates_by_key(session)
        readers = whatsapp.readers(session)
        for row in entered.values():
            session.expunge(row)
    slots = [
        Slot(
            kind, language, whatsapp.SUGGESTED_BODIES[kind, language], entered.get((kind, language))
        )
        for kind in AlertKind
        for language in Language
    ]
    return {
        "slots": slots,
        "readers": readers,
        "statuses": list(TemplateStatus),
        "whatsapp_on": whatsapp_alerts(found.settings),
        "can_sync": found.settings.sms_backend == "twilio",
        "error": None,
    }
