"""The simulator's outbox: what the SimulatorSender 'sent', for exploring the demo.

Registered only with SMS_BACKEND=simulator. Numbers are masked to their last four
digits here as everywhere else on staff pages.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import Blueprint, abort, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from werkzeug.wrappers import Response

from dispatch.senders import SendError
from dispatch.services import Services
from rapidresponse.crypto import Purpose
from rapidresponse.models import OutboxMessage
from rapidresponse.phones import InvalidPhoneNumber, masked, normalize
from rapidresponse.subscribers import Reply
from web.context import services
from web.sms import answer

bp = Blueprint("simulator", __name__, url_prefix="/simulator")

OUTBOX_PAGE_SIZE = 200


@dataclass(frozen=True)
class OutboxEntry:
    sid: str
    to: str
    body: str
    segments: int
    created_at: datetime


@bp.post("/inbound")
def inbound() -> Response:
    """Text the hotline as any number: the same handler as Twilio's webhook.

    The answer is 'sent' through the guarded simulator sender, so it lands in the outbox
    exactly as it would reach a phone (and not at all for an opted-out number).
    """
    found = services()
    try:
        phone = normalize(request.form.get("From", ""), found.settings.phone_region)
    except InvalidPhoneNumber:
        abort(400, "From is not a phone number")
    reply = answer(found, phone, request.form.get("Body", ""), sid=None)
    answered = reply is not None and _deliver(found, phone, reply)
    if request.accept_mimetypes.best == "text/html":  # the outbox page's form
        return redirect(url_for("simulator.outbox"), code=303)
    return jsonify({"answered": answered})


def _deliver(found: Services, phone: str, reply: Reply) -> bool:
    try:
        found.sender.send_reply(phone, reply.text, reply.kind)
    except SendError:  # the guard said no (say, a STOP arrived in between)
        return False
    return True


@bp.get("/outbox")
def outbox() -> str:
    found = services()
    with found.database.session() as session:
        rows = session.scalars(
            select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(OUTBOX_PAGE_SIZE)
        ).all()
        entries = [
            OutboxEntry(
                sid=row.sid,
                to=masked(found.cipher.decrypt(row.to_sealed, Purpose.OUTBOX_TO)),
                body=found.cipher.decrypt(row.body_sealed, Purpose.OUTBOX_BODY),
                segments=row.segments,
                created_at=row.created_at,
            )
            for row in rows
        ]
    return render_template("simulator/outbox.html", entries=entries)


@bp.route("/phone", methods=["GET", "POST"])
def phone() -> ResponseReturnValue:
    """A pretend phone: text the hotline as any number and read what that number received.

    The number travels in the form body, never the URL, so that it stays out of access
    logs; the page shows only the inbox of the number typed in, never a list of numbers.
    """
    found = services()
    if request.method == "GET":
        return render_template("simulator/phone.html", number=None, inbox=[], sent=False)
    raw = request.form.get("From", "")
    try:
        number = normalize(raw, found.settings.phone_region)
    except InvalidPhoneNumber:
        return render_template(
            "simulator/phone.html", number=None, inbox=[], sent=False, bad_number=True
        ), 400
    body = request.form.get("Body", "").strip()
    if body:
        reply = answer(found, number, body, sid=None)
        if reply is not None:
            _deliver(found, number, reply)
    return render_template(
        "simulator/phone.html", number=number, inbox=_inbox(found, number), sent=bool(body)
    )


def _inbox(found: Services, number: str) -> list[OutboxEntry]:
    digest = found.index.digest(number, Purpose.PHONE_INDEX)
    with found.database.session() as session:
        rows = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.to_index == digest)
            .order_by(OutboxMessage.id.desc())
            .limit(OUTBOX_PAGE_SIZE)
        ).all()
        return [
            OutboxEntry(
                sid=row.sid,
                to=masked(number),
                body=found.cipher.decrypt(row.body_sealed, Purpose.OUTBOX_BODY),
                segments=row.segments,
                created_at=row.created_at,
            )
            for row in rows
        ]
