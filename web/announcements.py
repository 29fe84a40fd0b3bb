"""Announcements on the web: a coordinator writes one, for some areas or all, and sees
what came of the last ones (how many it reached, the answers counted — never who)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from dispatch.announcements import send_announcement
from rapidresponse import announcements, broadcast
from rapidresponse.announcements import AnnouncementRefused
from rapidresponse.board import AlertView
from rapidresponse.models import Alert, AlertKind, Area, Language, utcnow
from rapidresponse.staff import Permission
from web.auth import requires, signed_in
from web.context import services
from web.inputs import row_ids
from web.local_time import local_clock
from web.refusal import refusal

bp = Blueprint("announcements", __name__)
RECENT = 20  # announcements listed


@bp.get("/announcements")
@requires(Permission.SEND_ANNOUNCEMENTS)
def index() -> ResponseReturnValue:
    found = services()
    now = utcnow()
    with found.database.session() as session:
        sent = session.scalars(
            select(Alert)
            .where(Alert.kind == AlertKind.ANNOUNCEMENT)
            .options(selectinload(Alert.areas))
            .order_by(Alert.id.desc())
            .limit(RECENT)
        ).all()
        answers = announcements.rsvp_counts(session, [a.id for a in sent])
        rows = [
            {
                "id": a.id,
                "approved_at": a.approved_at,
                "send_after": a.send_after,
                "waiting": a.send_after is not None and a.send_after > now,
                "areas": [area.name for area in a.areas],
                "text": a.texts.get(Language.EN.value, ""),
                "asks_rsvp": a.asks_rsvp,
                "bar": AlertView(
                    a.id,
                    a.kind,
                    a.status,
                    None,
                    a.created_at,
                    a.approved_at,
                    a.texts,
                    (),
                    broadcast.progress(session, a.id),
                ),
                "answers": answers[a.id],
            }
            for a in sent
        ]
        areas = session.execute(select(Area.id, Area.name).order_by(Area.name)).all()
        consenting = announcements.consenting(session)
    settings = found.settings
    return render_template(
        "announcements/index.html",
        sent=rows,
        areas=areas,
        consenting=consenting,
        languages=[language.value for language in Language],
        limit=announcements.MAX_BODY_CHARS,
        quiet=settings.quiet_hours,
        per_week=settings.announcements_per_week,
    )


@bp.post("/announcements")
@requires(Permission.SEND_ANNOUNCEMENTS)
def send() -> ResponseReturnValue:
    found = services()
    bodies = {
        language.value: request.form.get(f"text_{language.value}", "")[:2000]
        for language in Language
    }
    asked = set(row_ids(request.form.getlist("area_ids")[:500]))
    with found.database.session() as session:
        known = set(session.scalars(select(Area.id).where(Area.id.in_(asked)))) if asked else set()
    if known != asked:
        flash(_("One of those areas no longer exists: choose again."))
        return redirect(url_for("announcements.index"), code=303)
    try:
        result = send_announcement(
            found,
            bodies=bodies,
            area_ids=sorted(known),
            asks_rsvp=request.form.get("asks_rsvp") == "1",
            staff_id=signed_in().user_id,
        )
    except AnnouncementRefused as refused:
        flash(refusal(refused))
        return redirect(url_for("announcements.index"), code=303)
    if result.recipients == 0:
        flash(_("Nobody gets it: nobody there said yes to announcements, or had enough this week."))
    elif result.send_after > utcnow():
        when = local_clock(ZoneInfo(found.settings.timezone), result.send_after)
        flash(
            ngettext(
                "It goes to %(num)d person when the quiet hours end, at %(time)s.",
                "It goes to %(num)d people when the quiet hours end, at %(time)s.",
                result.recipients,
                time=when,
            )
        )
    else:
        flash(
            ngettext(
                "It is going out to %(num)d person.",
                "It is going out to %(num)d people.",
                result.recipients,
            )
        )
    return redirect(url_for("announcements.index"), code=303)
