"""People, sessions and the audit trail: the coordinator's pages.

Nothing here can show a subscriber's number: the views have no field for one, and there
is no export. Responders' numbers appear as their last four digits.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from dispatch.welcome import enqueue_welcome
from rapidresponse import audit, invites, practice, reconfirm
from rapidresponse.board import responder_views, subscriber_counts
from rapidresponse.crypto import Purpose
from rapidresponse.models import (
    Area,
    AuditEvent,
    Dispatch,
    Language,
    Responder,
    StaffRole,
    StaffUser,
    utcnow,
)
from rapidresponse.people import AlreadyExists, add_responder
from rapidresponse.phones import InvalidPhoneNumber, display_number, normalize
from rapidresponse.staff import (
    AccountAction,
    AccountRefused,
    Permission,
    change_account,
    end_session,
    live_sessions,
)
from web.auth import SAFE_NEXT, requires, session_rules, signed_in
from web.board_live import disconnect_session
from web.context import services
from web.inputs import row_id, row_ids
from web.refusal import refusal

bp = Blueprint("people", __name__)
log = logging.getLogger(__name__)

AUDIT_PAGE_SIZE = 100
MAX_NAME_LENGTH = 120
LANGUAGES = frozenset(language.value for language in Language)


@bp.get("/people")
@requires(Permission.VIEW_PEOPLE)
def responders() -> ResponseReturnValue:
    found = services()
    with found.database.session() as session:
        context: dict[str, Any] = {
            "responders": responder_views(session),
            "audiences": subscriber_counts(session),
            "list_health": reconfirm.list_health(session),
            "reconfirm_days": found.settings.reconfirm_after_days,
            "areas": [(a.id, a.name) for a in session.scalars(select(Area).order_by(Area.name))],
        }
    return render_template("people/index.html", **context)


@bp.post("/people/responders")
@requires(Permission.MANAGE_PEOPLE)
def add() -> ResponseReturnValue:
    found = services()
    name = (request.form.get("name") or "").strip()[:MAX_NAME_LENGTH]
    area_ids = _area_ids()
    language = request.form.get("language", "en")
    try:
        phone = normalize(request.form.get("phone", ""), found.settings.phone_region)
    except InvalidPhoneNumber:
        flash(_("That is not a phone number we can text."))
        return _to_people(400)
    if not name or not area_ids or language not in LANGUAGES:
        flash(_("A responder needs a name, a number and at least one area."))
        return _to_people(400)
    with found.database.session() as session:
        areas = session.scalars(select(Area).where(Area.id.in_(area_ids))).all()
        responder = None
        try:
            if areas:  # ids of no area add nobody
                responder = add_responder(
                    session,
                    found.cipher,
                    found.index,
                    name=name,
                    phone_e164=phone,
                    areas=areas,
                    language=Language(language),
                )
        except AlreadyExists:
            pass
        if responder is not None:
            audit.record(
                session,
                actor=signed_in().actor,
                action="responder.added",
                subject=f"responder:{responder.id}",
                details={"areas": len(areas)},
            )
    if not areas:
        flash(_("A responder needs a name, a number and at least one area."))
        return _to_people(400)
    if responder is None:
        flash(_("A responder with that number exists already."))
        return _to_people(409)
    try:
        enqueue_welcome(found.redis, responder.id)
    except (RedisError, OSError):  # the sweep sends it within minutes
        log.warning("responder %s: welcome not queued; the sweep will", responder.id)
    flash(_("Responder added. A welcome text with how it works is on its way to them."))
    return _to_people()


@bp.post("/people/responders/<int:responder_id>/call")
@requires(Permission.VIEW_BOARD)
def call(responder_id: int) -> ResponseReturnValue:
    """A responder's number, for the dispatcher who sent them: shown on this click only
    (never on a list), audited (without the number)."""
    found = services()
    staff = signed_in()
    with found.database.session() as session:
        responder = session.get(Responder, responder_id)
        if responder is None:
            abort(404)
        e164 = found.cipher.decrypt(responder.phone_sealed, Purpose.RESPONDER_PHONE)
        name = responder.name
        audit.record(
            session,
            actor=staff.actor,
            action="responder.number_shown",
            subject=f"responder:{responder_id}",
        )
    back = request.form.get("back", "")
    if not SAFE_NEXT.fullmatch(back):  # only a path of this site: never an open redirect
        back = url_for("people.responders")
    shown = display_number(e164, found.settings.phone_region)
    return render_template("people/call.html", name=name, e164=e164, shown=shown, back=back)


@bp.post("/people/responders/<int:responder_id>/shift")
@requires(Permission.MANAGE_PEOPLE)
def shift(responder_id: int) -> ResponseReturnValue:
    on_shift = request.form.get("on_shift") == "1"
    with services().database.session() as session:
        responder = session.get(Responder, responder_id)
        if responder is None:
            abort(404)
        refused = on_shift and not responder.active
        if not refused:
            responder.on_shift = on_shift
            audit.record(
                session,
                actor=signed_in().actor,
                action="responder.on_shift" if on_shift else "responder.off_shift",
                subject=f"responder:{responder_id}",
            )
    if refused:  # the page is drawn after the transaction: one database session at a time
        flash(_("An inactive responder cannot go on shift: make them active first."))
        return _to_people(409)
    return _to_people()


@bp.get("/people/responders/<int:responder_id>")
@requires(Permission.MANAGE_PEOPLE)
def edit_responder(responder_id: int) -> ResponseReturnValue:
    return _responder_page(responder_id)


@bp.post("/people/responders/<int:responder_id>")
@requires(Permission.MANAGE_PEOPLE)
def change_responder(responder_id: int) -> ResponseReturnValue:
    """Name, areas, language, and whether the person is still a responder at all.

    A responder who leaves is deactivated, not deleted: their past dispatches and verdicts
    stay in the record, and they are never paged again. Their number cannot be changed
    here; a new number is a new responder (added above, this one deactivated)."""
    name = (request.form.get("name") or "").strip()[:MAX_NAME_LENGTH]
    language = request.form.get("language", "")
    active = request.form.get("active") == "1"
    saved = False
    with services().database.session() as session:
        found = session.get(Responder, responder_id, options=[selectinload(Responder.areas)])
        if found is None:
            abort(404)
        areas = list(session.scalars(select(Area).where(Area.id.in_(_area_ids()))))
        if name and areas and language in LANGUAGES:
            found.name, found.areas, found.language = name, areas, Language(language)
            found.active = active
            found.on_shift = found.on_shift and active  # nobody inactive is paged
            audit.record(
                session,
                actor=signed_in().actor,
                action="responder.changed",
                subject=f"responder:{responder_id}",
                details={"areas": len(areas), "language": language, "active": active},
            )
            saved = True
    if not saved:  # the form is drawn again after the transaction: one session at a time
        flash(_("A responder needs a name and at least one area."))
        return _responder_page(responder_id, 400)
    flash(_("Responder saved."))
    return _to_people()


def _responder_page(responder_id: int, status: int = 200) -> ResponseReturnValue:
    with services().database.session() as session:
        view = next((r for r in responder_views(session) if r.id == responder_id), None)
        if view is None:
            abort(404)
        areas = session.scalars(select(Area).order_by(Area.name)).all()
        choices = [(a.id, a.name, a.name in view.areas) for a in areas]
        practised = practice.results(session, responder_id)
    page = render_template(
        "people/responder.html", responder=view, areas=choices, practices=practised
    )
    return page, status


def _area_ids() -> list[int]:
    return row_ids(request.form.getlist("area_ids"))


def _to_people(status: int = 303) -> ResponseReturnValue:
    """Back to the list; a refused form is shown there with its status, not redirected."""
    if status == 303:
        return redirect(url_for("people.responders"), code=303)
    page = responders()
    return (page if isinstance(page, str) else ""), status


# --- sessions --------------------------------------------------------------------------------


@bp.get("/staff/sessions")
@requires(Permission.MANAGE_SESSIONS)
def sessions() -> ResponseReturnValue:
    found = services()
    mine = signed_in().session_id
    with found.database.session() as session:
        live = live_sessions(session, session_rules(found), utcnow())
        rows = [
            {
                "id": s.id,
                "email": s.user.email,
                "role": s.user.role.value,
                "created_at": s.created_at,
                "last_seen_at": s.last_seen_at,
                "mine": s.id == mine,
            }
            for s in live
        ]
    return render_template("people/sessions.html", sessions=rows)


@bp.post("/staff/sessions/<int:session_id>/revoke")
@requires(Permission.MANAGE_SESSIONS)
def revoke(session_id: int) -> ResponseReturnValue:
    staff = signed_in()
    with services().database.session() as session:
        ended = end_session(session, session_id, utcnow(), by_id=staff.user_id)
        if ended:
            audit.record(
                session,
                actor=staff.actor,
                action="staff.session_revoked",
                subject=f"session:{session_id}",
            )
    if ended:
        disconnect_session(session_id)
        flash(_("Session ended. Its sockets are disconnected."))
    else:
        flash(_("That session had already ended."))
    return redirect(url_for("people.sessions"), code=303)


# --- staff accounts ----------------------------------------------------------------------------


@bp.get("/staff")
@requires(Permission.MANAGE_STAFF)
def accounts() -> ResponseReturnValue:
    with services().database.session() as session:
        users = session.scalars(select(StaffUser).order_by(StaffUser.role, StaffUser.email)).all()
        rows = [
            {
                "id": u.id,
                "email": u.email,
                "role": u.role.value,
                "active": u.active,
                "enrolled": u.totp_enrolled_at is not None,
                "last_login_at": u.last_login_at,
                "mine": u.id == signed_in().user_id,
            }
            for u in users
        ]
        waiting = invites.pending(session, utcnow())
    return render_template(
        "people/staff.html", accounts=rows, invites=waiting, roles=invites.INVITABLE_ROLES
    )


@bp.post("/staff/invites")
@requires(Permission.MANAGE_STAFF)
def invite() -> ResponseReturnValue:
    """A one-time link for a new dispatcher or coordinator, shown here once."""
    found = services()
    staff = signed_in()
    try:
        role = StaffRole(request.form.get("role", ""))
    except ValueError:
        role = StaffRole.RESPONDER  # refused below, in words
    try:
        with found.database.session() as session:
            row, token = invites.invite(
                session, request.form.get("email", "")[:300], role, staff.user_id, utcnow()
            )
            email, expires_at = row.email, row.expires_at
    except invites.InviteRefused as refused:
        flash(refusal(refused))
        return redirect(url_for("people.accounts"), code=303)
    link = found.settings.public_url.rstrip("/") + url_for("auth.join", token=token)
    return render_template(
        "people/invite_link.html", link=link, email=email, role=role, expires_at=expires_at
    )


@bp.post("/staff/invites/<int:invite_id>/withdraw")
@requires(Permission.MANAGE_STAFF)
def withdraw_invite(invite_id: int) -> ResponseReturnValue:
    with services().database.session() as session:
        withdrawn = invites.withdraw(session, invite_id, signed_in().user_id, utcnow())
    if withdrawn:
        flash(_("Invitation withdrawn: its link no longer works."))
    else:
        flash(_("That invitation was already used or withdrawn."))
    return redirect(url_for("people.accounts"), code=303)


ACCOUNT_ACTION_DONE = {
    AccountAction.DISABLE: _l("Account disabled. Its sessions and sockets are ended."),
    AccountAction.ENABLE: _l("Account enabled. It can sign in again."),
    AccountAction.RESET_SECOND_FACTOR: _l(
        "Authenticator forgotten: the next sign-in enrols a new one. Sessions ended."
    ),
}


@bp.post("/staff/<int:user_id>/<any(disable, enable, 'reset-second-factor'):action>")
@requires(Permission.MANAGE_STAFF)
def account_action(user_id: int, action: str) -> ResponseReturnValue:
    staff, chosen = signed_in(), AccountAction(action)
    try:
        with services().database.session() as session:
            user = session.get(StaffUser, user_id)
            if user is None:
                abort(404)
            ended = change_account(
                session, user, chosen, actor=staff.actor, by_id=staff.user_id, now=utcnow()
            )
    except AccountRefused as refused:
        flash(refusal(refused))
        return redirect(url_for("people.accounts"), code=303)
    for session_id in ended:
        disconnect_session(session_id)
    flash(str(ACCOUNT_ACTION_DONE[chosen]))
    return redirect(url_for("people.accounts"), code=303)


# --- audit -------------------------------------------------------------------------------------


@bp.get("/audit")
@requires(Permission.VIEW_AUDIT)
def audit_log() -> ResponseReturnValue:
    before = row_id(request.args.get("before"))
    with services().database.session() as session:
        query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(AUDIT_PAGE_SIZE)
        if before is not None:
            query = query.where(AuditEvent.id < before)
        events = session.scalars(query).all()
        total = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
        references = {e.actor for e in events} | {e.subject for e in events}
        names = audit.readable_names(session, references)
        rows = [
            {
                "id": e.id,
                "occurred_at": e.occurred_at,
                "actor": names.get(e.actor, e.actor),
                "actor_id": e.actor,
                "action": e.action,
                "subject": names.get(e.subject, e.subject),
                "subject_id": e.subject,
                "details": [(key, detail_value(value)) for key, value in e.details.items()],
                "hash": (e.hash or "…")[:12],  # "…": not sealed into the chain yet
            }
            for e in events
        ]
        head = audit.checkpoint(session)
    older = rows[-1]["id"] if len(rows) == AUDIT_PAGE_SIZE else None
    return render_template(
        "people/audit.html", events=rows, total=total, older=older, checkpoint=head
    )


def detail_value(value: object) -> str:
    """An audit detail in words: the record keeps JSON, the page shows no Python values."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(_("yes") if value else _("no"))
    if isinstance(value, list | tuple):
        return ", ".join(detail_value(item) for item in value) or "—"
    if isinstance(value, dict):
        return "; ".join(f"{key}: {detail_value(item)}" for key, item in value.items())
    return str(value)


@bp.post("/audit/verify")
@requires(Permission.VIEW_AUDIT)
def audit_verify() -> ResponseReturnValue:
    typed = request.form.get("checkpoint", "")[:200]
    try:
        kept = audit.Checkpoint.parse(typed) if typed.strip() else None
    except ValueError:
        flash(_("That is not a checkpoint: paste the whole line, as the page gave it."))
        return redirect(url_for("people.audit_log"), code=303)
    with services().database.session() as session:
        broken = audit.verify(session)
        count = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
        rewritten = kept is not None and not audit.matches(session, kept)
    if rewritten and kept is not None:
        flash(
            _(
                "The chain does not match the checkpoint you kept of event %(num)d: "
                "it was rewritten since.",
                num=kept.position,
            )
        )
    elif broken is None:
        flash(
            ngettext(
                "The chain is intact: its %(num)d event checks out.",
                "The chain is intact: all %(num)d events check out.",
                count,
            )
        )
    else:
        flash(_("The chain is broken at event %(id)d: it was changed or removed.", id=broken))
    if kept is not None and not rewritten and broken is None:
        flash(_("It matches the checkpoint you kept of event %(num)d.", num=kept.position))
    return redirect(url_for("people.audit_log"), code=303)


# --- a responder's own dispatches -------------------------------------------------------------


my = Blueprint("my", __name__)


@my.get("/my")
@requires(Permission.OWN_DISPATCHES)
def dispatches() -> ResponseReturnValue:
    staff = signed_in()
    with services().database.session() as session:
        rows = []
        if staff.responder_id is not None:
            found = session.scalars(
                select(Dispatch)
                .where(Dispatch.responder_id == staff.responder_id)
                .options(selectinload(Dispatch.incident))
                .order_by(Dispatch.paged_at.desc())
                .limit(50)
            ).all()
            rows = [
                {
                    "code": d.incident.code,
                    "drill": d.incident.drill_id is not None,
                    "area": d.incident.area.name if d.incident.area else None,
                    "state": d.state,
                    "verdict": d.verdict,
                    "paged_at": d.paged_at,
                }
                for d in found
            ]
    return render_template("people/my.html", dispatches=rows, linked=staff.responder_id is not None)


@my.get("/my/card")
@requires(Permission.READ_GUIDES)
def card() -> ResponseReturnValue:
    """The responder card: one printable page with the keywords and the rules."""
    settings = services().settings
    hotline = None
    if settings.twilio_from and settings.twilio_from.startswith("+"):  # not a service SID
        hotline = display_number(settings.twilio_from, settings.phone_region)
    return render_template("people/card.html", hotline=hotline)
