"""The simulator: a pretend phone that texts the hotline, and the outbox of what it sent.

Registered only with SMS_BACKEND=simulator, never in production. Numbers are masked to
their last four digits on the outbox, as everywhere else on staff pages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from shapely.geometry import shape
from sqlalchemy import select
from werkzeug.wrappers import Response

from dispatch.senders import SendError, simulated_sid, store_phone_message
from dispatch.services import Services
from dispatch.simulator import UNREACHABLE_LAST_DIGIT, conversation, whatsapp_window_ends
from rapidresponse.crypto import Purpose
from rapidresponse.hotline import Location
from rapidresponse.models import Area, OutboxMessage, ReportChannel
from rapidresponse.phones import InvalidPhoneNumber, masked, normalize
from web.context import services
from web.demo import demo_cast
from web.sms import answer, inbound_text, twilio_location

bp = Blueprint("simulator", __name__, url_prefix="/simulator")

OUTBOX_PAGE_SIZE = 200
SMS = ReportChannel.SMS
# What a WhatsApp quick-reply button of ours would carry (ButtonPayload).
QUICK_REPLIES = ("YES", "SI", "GO", "CONFIRM", "FALSE")


@dataclass(frozen=True)
class OutboxEntry:
    sid: str
    to: str
    body: str
    segments: int
    created_at: datetime


@dataclass(frozen=True)
class QuickPhone:
    """A button on the simulator phone: act as one of the demo's people."""

    label: str
    role: str
    phone: str


def quick_phones() -> list[QuickPhone]:
    return [QuickPhone(person.name, role, person.phone) for role, person in demo_cast()]


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
    answered = _text_hotline(found, phone, request.form.get("Body", ""), channel=SMS)
    if request.accept_mimetypes.best == "text/html":  # the outbox page's form
        return redirect(url_for("simulator.outbox"), code=303)
    return jsonify({"answered": answered})


def _text_hotline(
    found: Services,
    phone: str,
    body: str,
    *,
    channel: ReportChannel,
    location: Location | None = None,
    shown: str | None = None,
) -> bool:
    """What a phone does: the message joins its conversation (as ``shown`` there, when a
    pin or a button stands for it), then the hotline answers on the same channel."""
    store = partial(store_phone_message, found.database, found.cipher, found.index, phone)
    store(shown or body, sid=simulated_sid(), inbound=True, channel=channel.value)
    reply = answer(found, phone, body, sid=None, location=location, channel=channel)
    if reply is None:
        return False
    if channel is ReportChannel.WHATSAPP:
        # Answered inside WhatsApp's 24-hour window, as the webhook's TwiML answer is.
        store(reply.text, sid=simulated_sid(), inbound=False, channel=channel.value)
        return True
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
            select(OutboxMessage)
            .where(OutboxMessage.inbound.is_(False))
            .order_by(OutboxMessage.id.desc())
            .limit(OUTBOX_PAGE_SIZE)
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
    return render_template("simulator/outbox.html", entries=entries, local=_local_time(found))


@bp.route("/phone", methods=["GET", "POST"])
def phone() -> ResponseReturnValue:
    """A pretend phone: text the hotline as any number and read the conversation.

    The number travels in the form body, never the URL, so that it stays out of access
    logs; the page shows only the conversation of the number typed in (or of a demo
    person's button), never a list of everyone who texted.
    """
    found = services()
    channel = ReportChannel.WHATSAPP if request.values.get("channel") == "whatsapp" else SMS
    page = partial(
        render_template,
        "simulator/phone.html",
        quick=quick_phones(),
        local=_local_time(found),
        unreachable_digit=UNREACHABLE_LAST_DIGIT,
        channel=channel.value,
        pins=pin_places(found) if channel is ReportChannel.WHATSAPP else [],
        quick_replies=QUICK_REPLIES,
        window_ends=None,
    )
    if request.method == "GET":
        return page(number=None, messages=[])
    try:
        number = normalize(request.form.get("From", ""), found.settings.phone_region)
    except InvalidPhoneNumber:
        return page(number=None, messages=[], bad_number=True), 400
    if channel is ReportChannel.WHATSAPP:
        _whatsapp_message(found, number, request.form)
    else:
        body = request.form.get("Body", "").strip()
        if body:
            _text_hotline(found, number, body, channel=SMS)
    messages = conversation(found, number, channel.value)
    ends = whatsapp_window_ends(messages) if channel is ReportChannel.WHATSAPP else None
    return page(number=number, messages=messages, window_ends=ends)


def _whatsapp_message(found: Services, number: str, form: Mapping[str, str]) -> None:
    """Words, a quick-reply button or a location pin, read as the webhook reads them."""
    fields = {"Body": form.get("Body", "").strip(), "ButtonPayload": form.get("ButtonPayload", "")}
    pin = form.get("pin", "")
    if pin.count(",") == 1:
        fields["Latitude"], fields["Longitude"] = pin.split(",")
    location = twilio_location(fields)
    said = inbound_text(fields, location)
    if not said or not said.strip():
        return  # nothing sent: just look at the conversation
    shown = said if location is None else f"📍 {location.latitude:.4f}, {location.longitude:.4f}"
    if location is not None and fields["Body"]:
        shown = f"{shown} {fields['Body']}"
    _text_hotline(
        found, number, said, channel=ReportChannel.WHATSAPP, location=location, shown=shown
    )


@dataclass(frozen=True)
class PinPlace:
    """A place the simulator phone can share as a WhatsApp location pin."""

    name: str
    point: str  # "latitude,longitude"


def pin_places(found: Services) -> list[PinPlace]:
    """A point inside each area with an outline (the demo's neighbourhoods)."""
    with found.database.reading() as session:
        rows = session.execute(
            select(Area.name, Area.geometry).where(Area.geometry.is_not(None)).order_by(Area.name)
        ).all()
    places = []
    for name, geometry in rows:
        point = shape(geometry).representative_point()
        places.append(PinPlace(name, f"{point.y:.5f},{point.x:.5f}"))
    return places


def _local_time(found: Services) -> Callable[[datetime], str]:
    """Times as the deployment's people read them (TIMEZONE), not UTC."""
    zone = ZoneInfo(found.settings.timezone)
    return lambda at: at.astimezone(zone).strftime("%H:%M:%S")
