"""Drills on the web: a coordinator starts one (area, scenario, responders), types in the
drill's reports if nobody texts them, ends it, and prints its report card."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from dispatch.incidents import after_intake
from rapidresponse import drills
from rapidresponse.drills import DrillRefused
from rapidresponse.models import Area, Drill, Incident, ReportChannel, Responder, utcnow
from rapidresponse.reports import MAX_REPORT_CHARS, ReportDesk, Sighting, intake_rules
from rapidresponse.staff import Permission
from web.auth import requires, signed_in
from web.context import services
from web.inputs import row_id, row_ids
from web.refusal import refusal

bp = Blueprint("drills", __name__)
log = logging.getLogger(__name__)
RECENT = 20  # drills listed


@bp.get("/drills")
@requires(Permission.RUN_DRILLS)
def index() -> ResponseReturnValue:
    found = services()
    with found.database.session() as session:
        listed = session.scalars(select(Drill).order_by(Drill.id.desc()).limit(RECENT)).all()
        rows = [
            {
                "id": d.id,
                "code": d.code,
                "area": d.area.name,
                "started_at": d.started_at,
                "ended_at": d.ended_at,
                "running": drills.is_running(d, utcnow()),
            }
            for d in listed
        ]
        areas = session.execute(select(Area.id, Area.name).order_by(Area.name)).all()
        responders = session.execute(
            select(Responder.id, Responder.name).where(Responder.active).order_by(Responder.name)
        ).all()
    return render_template(
        "drills/index.html",
        drills=rows,
        areas=areas,
        responders=responders,
        limit=drills.MAX_SCENARIO_CHARS,
    )


@bp.post("/drills")
@requires(Permission.RUN_DRILLS)
def start() -> ResponseReturnValue:
    found = services()
    area_id = row_id(request.form.get("area_id", ""))
    try:
        with found.database.session() as session:
            drill = drills.start(
                session,
                area_id=area_id or 0,
                scenario=request.form.get("scenario", "")[: drills.MAX_SCENARIO_CHARS * 4],
                responder_ids=row_ids(request.form.getlist("responder_ids")[:500]),
                started_by_id=signed_in().user_id,
                now=utcnow(),
            )
            drill_id = drill.id
    except DrillRefused as refused:
        flash(refusal(refused))
        return redirect(url_for("drills.index"), code=303)
    flash(_("The drill has started. Everything in it is marked DRILL."))
    return redirect(url_for("drills.show", drill_id=drill_id), code=303)


@bp.get("/drills/<int:drill_id>")
@requires(Permission.RUN_DRILLS)
def show(drill_id: int) -> ResponseReturnValue:
    found = services()
    with found.database.session() as session:
        drill = session.get(Drill, drill_id)
        if drill is None:
            abort(404)
        card = drills.card_of(session, found.cipher, drill)
        responders, subscribers = drills.participant_counts(session, drill.id)
        incidents = session.execute(
            select(Incident.id, Incident.code, Incident.state)
            .where(Incident.drill_id == drill.id)
            .order_by(Incident.id)
        ).all()
        view = {
            "id": drill.id,
            "code": drill.code,
            "area": drill.area.name,
            "scenario": drill.scenario,
            "started_at": drill.started_at,
            "ended_at": drill.ended_at,
            "running": drills.is_running(drill, utcnow()),
        }
    sender = found.settings.twilio_from or ""
    return render_template(
        "drills/show.html",
        drill=view,
        card=card,
        steps=drills.STEPS,
        responders=responders,
        subscribers=subscribers,
        incidents=incidents,
        hotline=sender if sender.startswith("+") else None,
        limit=MAX_REPORT_CHARS,
    )


@bp.post("/drills/<int:drill_id>/reports")
@requires(Permission.RUN_DRILLS)
def add_report(drill_id: int) -> ResponseReturnValue:
    """A drill report typed in by the coordinator: the same intake as a texted one."""
    found = services()
    said = " ".join(request.form.get("text", "")[:MAX_REPORT_CHARS].split())
    if not said:
        flash(_("Write what the participant reports."))
        return redirect(url_for("drills.show", drill_id=drill_id), code=303)
    try:
        # Before the write transaction, as the hotline does: a rebuild parses every outline.
        directory = found.area_directory()
        with found.database.session() as session:
            drill = session.get(Drill, drill_id)
            if drill is None:
                abort(404)
            if not drills.is_running(drill, utcnow()):
                flash(_("This drill has ended: it takes no more reports."))
                return redirect(url_for("drills.show", drill_id=drill_id), code=303)
            sighting = Sighting(
                text=said,
                channel=ReportChannel.WEB,
                drill_id=drill.id,
                drill_area_id=drill.area_id,
            )
            desk = ReportDesk(session, found.cipher, intake_rules(found.settings), directory)
            intake = desk.receive(sighting)
    except SQLAlchemyError as error:
        log.error("drill report: not stored (%s)", error.__class__.__name__)
        flash(_("The report could not be stored: try again in a moment."))
        return redirect(url_for("drills.show", drill_id=drill_id), code=303)
    after_intake(found, intake)
    flash(
        _(
            "Drill report %(code)s added: responders in the drill are being paged.",
            code=intake.report_code,
        )
    )
    return redirect(url_for("drills.show", drill_id=drill_id), code=303)


@bp.post("/drills/<int:drill_id>/end")
@requires(Permission.RUN_DRILLS)
def end(drill_id: int) -> ResponseReturnValue:
    found = services()
    try:
        with found.database.session() as session:
            drill = session.get(Drill, drill_id)
            if drill is None:
                abort(404)
            drills.end(session, drill, found.cipher, utcnow(), f"staff:{signed_in().user_id}")
    except DrillRefused as refused:
        flash(refusal(refused))
        return redirect(url_for("drills.show", drill_id=drill_id), code=303)
    flash(_("The drill has ended. Its report card is kept below; print it for the debrief."))
    return redirect(url_for("drills.show", drill_id=drill_id), code=303)
