"""The live board: incidents and alerts as they happen, and what a dispatcher does about them.

Pages are rendered on the server. A little JavaScript (static/board.js) listens on the
socket and, on any event or reconnection, fetches the page's ``/live`` fragment again:
events are hints, the fragment is the record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import get_locale, ngettext
from flask_babel import gettext as _
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch import corrections
from dispatch.alerts import (
    DraftRefused,
    NotFollowable,
    approval_rules,
    approve_from_board,
    cancel_draft,
    draft_follow_up,
    draft_for_incident,
    revise_draft,
)
from dispatch.board_actions import NotPossible, close_from_board, page_more, place_incident
from dispatch.incidents import incident_touched
from dispatch.live import live_version
from dispatch.services import Services
from rapidresponse import board, broadcast, drills
from rapidresponse.approvals import ApprovalRefused
from rapidresponse.composer import TAKES_A_NOTE, Correcting, NoteRefused, last_clock_time, previews
from rapidresponse.corrections import CorrectionRefused
from rapidresponse.directory import changes_made_here, current_revision
from rapidresponse.incident_notes import CommentRefused, add_comment, notes_of
from rapidresponse.mapping import AreaShape, IncidentPoint, build_map
from rapidresponse.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Area,
    IncidentState,
    Language,
    utcnow,
)
from rapidresponse.next_step import timing
from rapidresponse.staff import Permission
from web.alert_plan import rest_units, send_plan
from web.auth import is_background_refresh, requires, signed_in
from web.context import services
from web.inputs import row_id
from web.refusal import refusal
from web.shared_render import (
    LIVE_CACHE_CONTROL,
    RETRY_AFTER_SECONDS,
    VERSION_HEADER,
    Busy,
    RenderGate,
    SharedRender,
    heard_version,
    sent_tag,
)

log = logging.getLogger(__name__)

bp = Blueprint("board", __name__, url_prefix="/board")


FOLLOW_UP_KINDS = {kind.value: kind for kind in broadcast.FOLLOW_UP_KINDS}
CORRECTING = {correcting.value: correcting for correcting in Correcting}
NOTE_FIELD_CHARS = 1000  # what is kept of a typed note (the composer allows far less)


# --- reading -----------------------------------------------------------------------------


@bp.get("")
@requires(Permission.VIEW_BOARD)
def index() -> ResponseReturnValue:
    return render_template("board/index.html", running_drill=_running_drill(), **_board_context())


def _running_drill() -> dict[str, Any] | None:
    """The drill under way, named above the board so no one takes its cards for real."""
    with services().database.reading() as session:
        drill = drills.current(session, utcnow())
        if drill is None:
            return None
        return {"id": drill.id, "code": drill.code, "area": drill.area.name}


# Re-reads of the live fragments: shared where they can be, gated always.
render_gate = RenderGate()
shared_live = SharedRender(render_gate)


@bp.errorhandler(Busy)
def busy(_error: Busy) -> ResponseReturnValue:
    """Too many boards re-reading at once: come back later (board.js backs off)."""
    retry = {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"}
    return Response(_("Busy, retrying…"), status=503, headers=retry, mimetype="text/plain")


@bp.get("/live")
@requires(Permission.VIEW_BOARD)
def live() -> ResponseReturnValue:
    # The same for every board in one language (no form, no token): one render serves all;
    # an area changed here is drawn at once (elsewhere: within the render's 5 s). A board
    # that heard a hint takes any render made since; one that did not, the newest.
    newest = live_version(services().redis)
    heard = heard_version(request.headers.get(VERSION_HEADER))
    made = shared_live.rendered(
        f"{get_locale()}:{changes_made_here()}",
        newest if heard is None or newest is None else min(heard, newest),
        lambda: render_template("board/_live.html", **_board_context()),
        newest,
    )
    # A board's own re-read (not one after a person's touch, which must reach the
    # session) whose tag is current is told so; most are, before Flask (web.live_reread).
    sent = sent_tag(request.headers.get("If-None-Match"))
    unchanged = is_background_refresh() and sent == made.tag
    response = Response(None if unchanged else made.html, status=304 if unchanged else 200)
    response.set_etag(made.tag)
    response.headers["Cache-Control"] = LIVE_CACHE_CONTROL
    return response


def _board_context() -> dict[str, Any]:
    found = services()
    now = utcnow()
    with found.database.reading() as session:  # a board never writes: no write lock
        incidents = board.board_incidents(session, found.cipher, now, timing(found.settings))
        alerts = board.board_alerts(session, found.cipher, now)
        revision = current_revision(session) or "none"
    points = [
        IncidentPoint(i.id, i.code, i.state.value, i.area_id, i.latitude, i.longitude, i.drill)
        for i in incidents
        if i.state is not IncidentState.CLOSED
    ]
    shapes = area_shapes(found, revision)
    return {
        "incidents": incidents,
        "alerts": alerts,
        "board_map": build_map(shapes, points, tile_url=found.settings.map_tile_url),
        "areas_revision": revision,
        "now": now,
    }


# The outlines change only when the areas do: read once per revision, and drawn once per
# revision as an image the browser keeps (/board/map/areas.svg?rev=...). The live
# fragment then carries only what changes (markers, counts): ~200 kB less per re-read
# with a city's 100 areas.
_outlines_lock = threading.Lock()
_outlines: dict[str, tuple[list[AreaShape], str | None]] = {}
OUTLINES_MAX_AGE = 365 * 24 * 3600  # the URL changes with the areas: keep it for good


def area_shapes(found: Services, revision: str) -> list[AreaShape]:
    return _outlines_of(found, revision)[0]


def _outlines_of(found: Services, revision: str) -> tuple[list[AreaShape], str | None]:
    with _outlines_lock:
        known = _outlines.get(revision)
        if known is not None:
            return known
        with found.database.reading() as session:
            areas = session.scalars(select(Area).order_by(Area.name)).all()
            shapes = [AreaShape(a.id, a.name, a.geometry) for a in areas]
        _outlines.clear()  # one revision at a time
        _outlines[revision] = (shapes, None)
        return _outlines[revision]


@bp.get("/map/areas.svg")
@requires(Permission.VIEW_BOARD)
def map_areas() -> ResponseReturnValue:
    """The areas' outlines, drawn under the live map's markers. Cached by the browser for
    good: the page asks for it under the areas' revision, which any change replaces."""
    found = services()
    with found.database.reading() as session:
        revision = current_revision(session) or "none"
    svg = _drawn_outlines(found, revision)
    response = Response(svg, mimetype="image/svg+xml")
    response.headers["Cache-Control"] = f"private, max-age={OUTLINES_MAX_AGE}, immutable"
    return response


def _drawn_outlines(found: Services, revision: str) -> str:
    shapes, drawn = _outlines_of(found, revision)
    if drawn is None:
        drawn = render_template("board/map_areas.svg", board_map=build_map(shapes, []))
        with _outlines_lock:
            if revision in _outlines:
                _outlines[revision] = (shapes, drawn)
    return drawn


@bp.get("/incidents/<int:incident_id>")
@requires(Permission.VIEW_BOARD)
def incident(incident_id: int) -> ResponseReturnValue:
    return render_template("board/incident.html", **_incident_context(incident_id))


@bp.get("/incidents/<int:incident_id>/live")
@requires(Permission.VIEW_BOARD)
def incident_live(incident_id: int) -> ResponseReturnValue:
    with render_gate.turn():
        return render_template("board/_incident.html", **_incident_context(incident_id))


def _incident_context(incident_id: int) -> dict[str, Any]:
    found = services()
    with found.database.session() as session:
        detail = board.incident_detail(session, found.cipher, incident_id, timing(found.settings))
        if detail is None:
            abort(404)
        areas = session.scalars(select(Area).order_by(Area.name)).all()
        area_choices = [(a.id, a.name) for a in areas]
        others = board.merge_candidates(session, incident_id)
    return {"detail": detail, "areas": area_choices, "merge_choices": others, "now": utcnow()}


@bp.get("/alerts/<int:alert_id>")
@requires(Permission.VIEW_BOARD)
def alert(alert_id: int) -> ResponseReturnValue:
    return render_template("board/alert.html", **_alert_context(alert_id))


@bp.get("/alerts/<int:alert_id>/live")
@requires(Permission.VIEW_BOARD)
def alert_live(alert_id: int) -> ResponseReturnValue:
    with render_gate.turn():
        return render_template("board/_alert.html", **_alert_context(alert_id))


def _alert_context(alert_id: int) -> dict[str, Any]:
    found = services()
    with found.database.session() as session:
        views = board.alert_views(session, found.cipher, [alert_id])
        if not views:
            abort(404)
        row = session.get_one(Alert, alert_id)
        view = views[0]
        plan = send_plan(found, session, row, view.texts)
        # What the people on the ground said, beside the text that is about to go out.
        notes = notes_of(session, found.cipher, row.incident_id) if row.incident_id else []
        lines = broadcast.lines_of(found.cipher, row)
        rest = _rest_for_typing(found, session, row, plan.areas)
        area_options = (
            session.execute(select(Area.id, Area.name).order_by(Area.name)).all()
            if row.kind is AlertKind.ALERT and row.status is not AlertStatus.DRAFT
            else []
        )
    staff = signed_in()
    return {
        "lines": lines,
        "rest": rest,
        "area_options": area_options,
        "alert": view,
        "previews": previews(view.texts),
        "audience": plan.capacity.recipients,
        "plan": plan,
        "needed": approval_rules(found).approvers,
        "approved_by_me": staff.user_id in view.approver_ids,
        "notes": notes,
        "now": utcnow(),
    }


def _rest_for_typing(
    found: Services, session: Session, row: Alert, areas: tuple[str, ...]
) -> dict[str, int]:
    """What a line typed on this page is added to: the draft alert's text, or an update's
    (the follow-up form of a sent alert)."""
    if row.kind is not AlertKind.ALERT:
        return {}
    if row.status is AlertStatus.DRAFT:
        return rest_units(found, session, AlertKind.ALERT, areas)
    return rest_units(found, session, AlertKind.UPDATE, areas)


# --- acting --------------------------------------------------------------------------------


def _back_to_incident(incident_id: int) -> ResponseReturnValue:
    return redirect(url_for("board.incident", incident_id=incident_id), code=303)


def _queue_down() -> None:
    flash(_("Saved. The queue is unreachable; the workers will catch up when it is back."))


@bp.post("/incidents/<int:incident_id>/place")
@requires(Permission.ACT_ON_INCIDENTS)
def place(incident_id: int) -> ResponseReturnValue:
    area_id = row_id(request.form.get("area_id"))
    if area_id is None:
        flash(_("Choose an area."))
        return _back_to_incident(incident_id)
    try:
        place_incident(services(), incident_id, area_id, signed_in().user_id)
        flash(_("Placed. Responders there are being paged."))
    except NotPossible as refused:
        flash(refusal(refused))
    except (RedisError, OSError):
        _queue_down()
    return _back_to_incident(incident_id)


@bp.post("/incidents/<int:incident_id>/page")
@requires(Permission.ACT_ON_INCIDENTS)
def page(incident_id: int) -> ResponseReturnValue:
    how_many = row_id(request.form.get("how_many")) or 1
    try:
        paged = page_more(services(), incident_id, how_many, signed_in().user_id)
        flash(
            ngettext("%(num)d more responder paged.", "%(num)d more responders paged.", paged)
            if paged
            else _("Nobody else is on shift nearby.")
        )
    except NotPossible as refused:
        flash(refusal(refused))
    except (RedisError, OSError):
        _queue_down()
    return _back_to_incident(incident_id)


@bp.post("/incidents/<int:incident_id>/comment")
@requires(Permission.ACT_ON_INCIDENTS)
def comment(incident_id: int) -> ResponseReturnValue:
    found = services()
    try:
        with found.database.session() as session:
            add_comment(
                session,
                found.cipher,
                incident_id,
                signed_in().user_id,
                request.form.get("comment", ""),
            )
    except CommentRefused as refused:
        flash(refusal(refused))
    else:
        incident_touched(found, incident_id)
        flash(_("Comment added."))
    return _back_to_incident(incident_id)


@bp.get("/find")
@requires(Permission.VIEW_BOARD)
def find() -> ResponseReturnValue:
    """An incident by its code or any of its reports' codes: the code a reporter or a
    responder reads out on the phone."""
    code = request.args.get("code", "")
    with services().database.reading() as session:
        incident_id = board.find_incident(session, code)
    if incident_id is None:
        flash(_("No incident or report has that code."))
        return redirect(url_for("board.index"), code=303)
    return _back_to_incident(incident_id)


# --- correcting the record ------------------------------------------------------------------


def _correction(act: Callable[[], int], done: str, fallback: int) -> ResponseReturnValue:
    """Run a correction; to the incident it leaves in front of the dispatcher."""
    try:
        incident_id = act()
    except CorrectionRefused as refused:
        flash(refusal(refused))
        return _back_to_incident(fallback)
    flash(done)
    return _back_to_incident(incident_id)


@bp.post("/incidents/<int:incident_id>/merge")
@requires(Permission.ACT_ON_INCIDENTS)
def merge(incident_id: int) -> ResponseReturnValue:
    """Merge another incident (chosen on the page) into this one."""
    other = row_id(request.form.get("other_id"))
    if other is None:
        flash(_("Choose the incident to merge into this one."))
        return _back_to_incident(incident_id)
    return _correction(
        lambda: corrections.merge(services(), incident_id, other, signed_in().user_id),
        _("Merged. Its reports, responders and verdicts are here now."),
        incident_id,
    )


@bp.post("/incidents/<int:incident_id>/split")
@requires(Permission.ACT_ON_INCIDENTS)
def split(incident_id: int) -> ResponseReturnValue:
    code = request.form.get("report", "").strip().upper()[:12]
    return _correction(
        lambda: corrections.split(services(), incident_id, code, signed_in().user_id),
        _("The report is an incident of its own now; responders are being found for it."),
        incident_id,
    )


@bp.post("/incidents/<int:incident_id>/reopen")
@requires(Permission.ACT_ON_INCIDENTS)
def reopen(incident_id: int) -> ResponseReturnValue:
    return _correction(
        lambda: corrections.reopen(services(), incident_id, signed_in().user_id),
        _("Reopened."),
        incident_id,
    )


@bp.post("/incidents/<int:incident_id>/unplace")
@requires(Permission.ACT_ON_INCIDENTS)
def unplace(incident_id: int) -> ResponseReturnValue:
    return _correction(
        lambda: corrections.unplace(services(), incident_id, signed_in().user_id),
        _("Its place is undone; its pages are closed. Place it again."),
        incident_id,
    )


@bp.post("/incidents/<int:incident_id>/close")
@requires(Permission.ACT_ON_INCIDENTS)
def close(incident_id: int) -> ResponseReturnValue:
    try:
        close_from_board(services(), incident_id, signed_in().user_id)
        flash(_("Closed."))
    except NotPossible as refused:
        flash(refusal(refused))
    return _back_to_incident(incident_id)


@bp.post("/incidents/<int:incident_id>/draft")
@requires(Permission.SEND_ALERTS)
def draft(incident_id: int) -> ResponseReturnValue:
    """Draft the alert now, if the job that drafts it on confirmation has not yet."""
    alert_id = draft_for_incident(services(), incident_id)
    if alert_id is None:
        flash(_("Only a confirmed, placed incident gets an alert."))
        return _back_to_incident(incident_id)
    return redirect(url_for("board.alert", alert_id=alert_id), code=303)


@bp.post("/alerts/<int:alert_id>/approve")
@requires(Permission.SEND_ALERTS)
def approve(alert_id: int) -> ResponseReturnValue:
    found = services()
    with found.database.session() as session:
        row = session.get(Alert, alert_id)
        if row is None:
            abort(404)
        risky = (
            row.status is AlertStatus.DRAFT
            and send_plan(found, session, row, broadcast.texts_of(found.cipher, row)).needs_consent
        )
    if risky and request.form.get("send_anyway") != "1":
        flash(_("Nobody or not everyone would get this alert: tick “Send anyway” to send it."))
        return redirect(url_for("board.alert", alert_id=alert_id), code=303)
    try:
        state = approve_from_board(found, alert_id, signed_in().user_id)
    except ApprovalRefused as refused:
        flash(refusal(refused))
    else:
        if state.complete:
            flash(_("Approved. The alert is going out."))
        else:
            flash(_("Your approval is counted. Another dispatcher must approve too."))
    return redirect(url_for("board.alert", alert_id=alert_id), code=303)


@bp.post("/alerts/<int:alert_id>/cancel")
@requires(Permission.SEND_ALERTS)
def cancel(alert_id: int) -> ResponseReturnValue:
    cancelled = cancel_draft(services(), alert_id, signed_in().user_id)
    flash(_("Cancelled. Nothing was sent.") if cancelled else _("Only a draft can be cancelled."))
    return redirect(url_for("board.alert", alert_id=alert_id), code=303)


@bp.post("/alerts/<int:alert_id>/follow-up")
@requires(Permission.SEND_ALERTS)
def follow_up(alert_id: int) -> ResponseReturnValue:
    kind = FOLLOW_UP_KINDS.get(request.form.get("kind", ""))
    # An update's note and a correction's reason, one per language; an all-clear is fixed.
    notes = _typed_per_language("note")
    if kind is None:
        flash(_("Choose update, all clear or correction."))
        return redirect(url_for("board.alert", alert_id=alert_id), code=303)
    correcting = CORRECTING.get(request.form.get("correcting", ""), Correcting.FALSE_ALARM)
    try:
        new_id = draft_follow_up(
            services(),
            alert_id,
            kind,
            notes=notes if kind in TAKES_A_NOTE else None,
            staff_id=signed_in().user_id,
            correcting=correcting,
            right_area_id=row_id(request.form.get("right_area_id")),
            right_time=_local_clock(request.form.get("right_time", "")),
        )
    except (NoteRefused, DraftRefused) as refused:  # said without quoting; fields keep it
        return _alert_page_again(alert_id, refusal(refused), notes)
    except NotFollowable:
        flash(_("Follow-ups go to the recipients of an approved alert."))
    else:
        return redirect(url_for("board.alert", alert_id=new_id), code=303)
    return redirect(url_for("board.alert", alert_id=alert_id), code=303)


@bp.post("/alerts/<int:alert_id>/revise")
@requires(Permission.SEND_ALERTS)
def revise(alert_id: int) -> ResponseReturnValue:
    lines = _typed_per_language("line")
    extra = [a for a in map(row_id, request.form.getlist("area_id")) if a is not None]
    try:
        revise_draft(
            services(), alert_id, extra_area_ids=extra, lines=lines, staff_id=signed_in().user_id
        )
    except (NoteRefused, DraftRefused) as refused:
        return _alert_page_again(alert_id, refusal(refused), lines, field="line")
    except NotFollowable:
        flash(_("Only a draft alert can be changed."))
    else:
        flash(_("The draft is updated. Approvals given before are withdrawn."))
    return redirect(url_for("board.alert", alert_id=alert_id), code=303)


def _typed_per_language(field: str) -> dict[str, str]:
    return {
        language.value: request.form.get(f"{field}_{language.value}", "")[:NOTE_FIELD_CHARS]
        for language in Language
    }


def _local_clock(typed: str) -> datetime | None:
    tz = ZoneInfo(services().settings.timezone)
    return last_clock_time(typed, tz, utcnow())


def _alert_page_again(
    alert_id: int, error: str, typed: dict[str, str], field: str = "note"
) -> ResponseReturnValue:
    """The alert page with the refusal and the form (follow-up, or the draft's line) as it
    was filled in."""
    context = _alert_context(alert_id)
    if field == "line":
        context["lines"], context["line_error"] = typed, error
        return render_template("board/alert.html", **context), 400
    return render_template("board/alert.html", **context, error=error, typed=typed), 400
