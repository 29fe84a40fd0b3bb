"""Twilio's webhooks: ``POST /sms/inbound`` (answered with TwiML) and ``POST /sms/status``,
both served before Flask by ``web.webhooks``.

Fails closed: a missing or wrong ``X-Twilio-Signature`` (computed over PUBLIC_URL + path
and every parameter received) is a 403 and touches nothing. A replayed MessageSid is
answered with an empty TwiML and changes nothing.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import Response, abort, request
from redis.exceptions import RedisError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse
from werkzeug.datastructures import MultiDict

from dispatch import key_custody, status_queue
from dispatch.broadcast import apply_status_callbacks
from dispatch.incidents import after_intake, incident_changed, incident_touched
from dispatch.senders import SendError, redaction_delay
from dispatch.services import Services
from dispatch.spool import SealedIntake, SpooledText
from dispatch.status_queue import StatusCallback
from rapidresponse import redaction, whatsapp
from rapidresponse.broadcast import CALLBACK_KEY, CallbackStatus
from rapidresponse.commands import Keyword, parse
from rapidresponse.config import Settings, whatsapp_alerts
from rapidresponse.directory import AreaDirectory
from rapidresponse.hotline import Hotline, Location, Outcome
from rapidresponse.keyring import Keyring
from rapidresponse.languages import guess as guess_language
from rapidresponse.messages import text as message_text
from rapidresponse.models import ReportChannel, utcnow
from rapidresponse.phones import InvalidPhoneNumber, normalize
from rapidresponse.reports import intake_rules
from rapidresponse.subscribers import Reply, ReplyKind

log = logging.getLogger(__name__)

PHOTO_ONLY = "(sent a photo with no text; photos are not kept)"
LOCATION_ONLY = "(shared a location with no text)"
# What the webhook may wait for locks, per attempt, and how many attempts: inside the
# 15 s Twilio waits for an answer, with room for the rest of the request.
LOCK_WAIT_MS = 4_000
STORE_ATTEMPTS = 2
SPOOL_DRAIN_SECONDS = 5.0
# The database could not take the text: locked past the budget, or down.
STORAGE_DOWN = (OperationalError, InterfaceError, SQLAlchemyTimeoutError)
WHATSAPP = "whatsapp:"
MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
TWIML_TYPE = "application/xml"


class BadInbound(ValueError):
    """Not a message Twilio sends: a field every message has is missing or wrong."""


def twiml(message: str | None, action: str | None = None) -> Response:
    """A TwiML answer; ``action`` is where Twilio reports the reply's status."""
    return Response(twiml_text(message, action), mimetype=TWIML_TYPE)


def twiml_text(message: str | None, action: str | None = None) -> str:
    answer = MessagingResponse()
    if message:
        answer.message(message, action=action)
    return str(answer)


def request_is_signed(settings: Settings) -> bool:
    """Whether this request carries Twilio's signature for our own URL."""
    url = webhook_url(settings, request.path, request.query_string.decode("latin-1"))
    return is_signed(settings, url, request.form, request.headers.get("X-Twilio-Signature", ""))


def webhook_url(settings: Settings, path: str, query: str) -> str:
    """The URL Twilio signed: ours as it knows it (PUBLIC_URL), whatever proxy is between."""
    return settings.public_url + path + (f"?{query}" if query else "")


def is_signed(settings: Settings, url: str, form: MultiDict[str, str], signature: str) -> bool:
    """Whether ``signature`` is Twilio's for a request to ``url`` with ``form``."""
    token = settings.twilio_auth_token
    if not token or not signature:
        return False  # no token configured: nothing can be verified, so nothing is accepted
    return bool(_validator(token).validate(url, form, signature))


@functools.cache
def _validator(token: str) -> RequestValidator:
    return RequestValidator(token)


def answer_inbound(
    found: Services, url: str, form: MultiDict[str, str], signature: str
) -> tuple[int, str]:
    """Twilio's webhook for a text that came in (``form``, posted to ``url``): the HTTP
    status to answer, and with a 200 the TwiML. Served by ``web.webhooks``, before Flask.

    A missing or wrong signature is a 403 and touches nothing; a request without the
    fields every message has is a 400; a replay is answered with nothing and changes
    nothing. The text is stored and answered in one transaction, or kept in the spool.
    """
    if not is_signed(found.settings, url, form, signature):
        return 403, ""
    try:
        sid, phone, body, location, channel = inbound_fields(form, found.settings.phone_region)
    except BadInbound:
        return 400, ""
    if not found.seen_messages.first_time(sid):
        log.info("ignored a replayed inbound message")
        return 200, twiml_text(None)
    redact = redaction_delay(found.settings) is not None
    # The reply's id reaches us only in its status callback: redact=1 asks for it.
    action = f"{found.settings.public_url}/sms/status?redact=1" if redact else None
    if not found.storage.may_try():  # another text is finding out whether it is back
        return 200, twiml_text(spool_text(found, phone, body, sid, location, channel), action)
    try:
        # Once stored, Twilio may forget the message: asked in the same transaction.
        reply = handle_within_budget(found, phone, body, location, sid if redact else None, channel)
    except STORAGE_DOWN as error:
        found.storage.tried(stored=False)
        log.error("inbound text kept in the spool: database unavailable (%s)", type(error).__name__)
        return 200, twiml_text(spool_text(found, phone, body, sid, location, channel), action)
    except BaseException:
        found.storage.tried(stored=None)  # says nothing about the database
        raise
    found.storage.tried(stored=True)
    return 200, twiml_text(reply.text if reply is not None else None, action)


def spool_text(
    found: Services,
    phone: str,
    body: str,
    sid: str,
    location: Location | None,
    channel: ReportChannel,
) -> str | None:
    """Keep a text the database cannot take now; what to answer it. Its redaction at
    Twilio is scheduled once it is stored."""
    found.spool.keep(SpooledText(phone, body, sid, *coordinates(location), channel=channel.value))
    return kept_reply(body)


def read_inbound(region: str) -> tuple[str, str, str, Location | None, ReportChannel]:
    """``inbound_fields`` of this Flask request (the sealed app's); a 400 without them."""
    try:
        return inbound_fields(request.form, region)
    except BadInbound as error:
        abort(400, str(error))


def inbound_fields(
    form: Mapping[str, str], region: str
) -> tuple[str, str, str, Location | None, ReportChannel]:
    """The inbound text ``form`` carries: its id, who wrote, its words, its place and
    channel.

    Raises:
        BadInbound: without them.
    """
    sid, sender = form.get("MessageSid"), form.get("From")
    location = twilio_location(form)
    body = inbound_text(form, location)
    if sid is None or sender is None or body is None or not MESSAGE_SID.match(sid):
        raise BadInbound("MessageSid, From and Body are required")
    # WhatsApp comes through the same webhook as "whatsapp:+1503...": the same person as
    # the number, on another channel (answered there; its STOP is not an SMS STOP).
    channel = ReportChannel.WHATSAPP if sender.startswith(WHATSAPP) else ReportChannel.SMS
    try:
        phone = sender_identity(form, channel, region)
    except InvalidPhoneNumber:
        raise BadInbound("From is not a phone number we can answer") from None
    return sid, phone, body, location, channel


def handle_within_budget(
    found: Services,
    phone: str,
    body: str,
    location: Location | None,
    redact_sid: str | None,
    channel: ReportChannel = ReportChannel.SMS,
) -> Reply | None:
    """Handle the text, waiting at most LOCK_WAIT_MS for a lock, twice: well inside the
    15 s Twilio waits for an answer. The answer, if it may be sent (opt-outs checked in
    the same transaction). Raises one of STORAGE_DOWN if it could not."""
    options: dict[str, Any] = {
        "permitted_only": True,
        "redact_sid": redact_sid,
        "channel": channel,
    }
    for _ in range(STORE_ATTEMPTS - 1):
        with contextlib.suppress(*STORAGE_DOWN):
            return handle(found, phone, body, location, LOCK_WAIT_MS, **options)
    return handle(found, phone, body, location, LOCK_WAIT_MS, **options)


def kept_reply(body: str) -> str | None:
    """What a text kept in the spool is answered: that it is kept (a STOP gets nothing
    now: the carrier's own opt-out answers it, and it is applied once stored)."""
    if parse(body).keyword is Keyword.STOP:
        return None
    return message_text(guess_language(body), "sms.kept_for_later")


def coordinates(location: Location | None) -> tuple[float | None, float | None]:
    return (location.latitude, location.longitude) if location else (None, None)


def sender_identity(form: Mapping[str, str], channel: ReportChannel, region: str) -> str:
    """Who wrote: their E.164 number, or on WhatsApp, for someone who hides it behind a
    username, their business-scoped user id (``US.1349…``), kept like a number (sealed,
    blind-indexed) and answered on WhatsApp only.

    Raises:
        InvalidPhoneNumber: neither.
    """
    address = form.get("From", "").removeprefix(WHATSAPP)
    if channel is ReportChannel.WHATSAPP and whatsapp.is_user_id(address):
        # WaId carries the number when WhatsApp shares it: the same person as by SMS.
        with contextlib.suppress(InvalidPhoneNumber):
            return normalize("+" + form.get("WaId", "").removeprefix("+"), region)
        return address
    return normalize(address, region)


def inbound_text(form: Mapping[str, str], location: Location | None) -> str | None:
    """The words of an inbound message, standing in for what has none.

    A photo with no words (MMS sends no ``Body`` at all) and a shared location with an
    empty body are sightings too: the photo is not kept, the place is. A WhatsApp
    quick-reply button says what was chosen in ``ButtonPayload``, in the words we gave it
    ("YES", "K7P3 GO"), whatever its label read in the person's language. None when there
    is neither words nor anything else, which is not a message Twilio sends.
    """
    payload = form.get("ButtonPayload", "").strip()
    if payload:
        return payload
    body = form.get("Body")
    if body is not None and body.strip():
        return body
    if location is not None:
        return LOCATION_ONLY
    if form.get("NumMedia", "0").strip() not in ("", "0"):
        return PHOTO_ONLY
    return body


def _schedule_redaction(found: Services, sid: str, after: timedelta) -> None:
    with found.database.session() as session:
        redaction.schedule(session, found.cipher, sid, utcnow() + after)


def answer(
    found: Services,
    phone: str,
    body: str,
    sid: str | None,
    location: Location | None = None,
    channel: ReportChannel = ReportChannel.SMS,
) -> Reply | None:
    """Handle one inbound text and return what to answer (None: answer nothing).

    For the simulator, so the demo exercises the same path as the webhook. The caller
    still asks ``permit_text`` (directly, or through the guarded sender) before the
    answer leaves.
    """
    # Even a message we refuse to read is used up. Ids are remembered in the volatile
    # store for the reporter window only: nothing durable ties a report to its message.
    if sid is not None and not found.seen_messages.first_time(sid):
        log.info("ignored a replayed inbound message")
        return None
    return handle(found, phone, body, location, channel=channel)


class AreasChanged(Exception):
    """The areas changed since this process built its directory: start again."""


def handle(
    found: Services,
    phone: str,
    body: str,
    location: Location | None = None,
    lock_wait_ms: int | None = None,
    *,
    permitted_only: bool = False,
    redact_sid: str | None = None,
    channel: ReportChannel = ReportChannel.SMS,
) -> Reply | None:
    """Store and act on one text, in one transaction; then tell the board.

    With ``permitted_only``, the answer is also checked against opt-outs in the same
    transaction (``permit_text``), and None when it may not be sent. With
    ``redact_sid``, the message's deletion at Twilio is scheduled in it too.
    """
    text = _Text(phone, body, location, lock_wait_ms, permitted_only, redact_sid, channel)
    cached = found.areas.cached()
    if cached is not None:
        with contextlib.suppress(AreasChanged):
            return _handle_once(found, text, cached)
    # The first text of this process, or the areas changed: (re)build outside any lock.
    return _handle_once(found, text, found.area_directory())


@dataclass(frozen=True)
class _Text:
    phone: str
    body: str
    location: Location | None
    lock_wait_ms: int | None
    permitted_only: bool
    redact_sid: str | None
    channel: ReportChannel


def _handle_once(found: Services, text: _Text, directory: AreaDirectory) -> Reply | None:
    database = found.database
    wait = text.lock_wait_ms
    with database.session() if wait is None else database.hurried(wait) as session:
        if found.areas.cached() is directory and not found.areas.is_current(session, directory):
            raise AreasChanged  # rolled back: nothing was done yet
        hotline = Hotline(
            session,
            found.cipher,
            found.index,
            found.limits,
            found.reporter_keys.hashes,
            intake_rules(found.settings),
            found.settings.verify_quorum,
            found.languages,
            directory,
            rights_url=f"{found.settings.public_url}/rights",
            whatsapp_alerts=whatsapp_alerts(found.settings),
        )
        outcome = hotline.handle(text.phone, text.body, text.location, text.channel)
        reply = outcome.reply
        if text.permitted_only and reply is not None:
            reply = reply if hotline.may_answer(text.phone, reply) else None
        if text.redact_sid is not None:
            due_at = utcnow() + redaction.RECEIVED_SETTLE
            redaction.schedule(session, found.cipher, text.redact_sid, due_at)
    after_commit(found, outcome)
    return reply


def store_spooled(found: Services) -> int:
    """Store the texts the spool holds, oldest first, and send each its real answer.

    Stops at the first one the database still refuses. Returns how many were stored.
    """
    stored = 0
    for name in found.spool.waiting():
        kept = found.spool.claim(name)
        if kept is None:
            continue
        location = (
            Location(kept.latitude, kept.longitude)
            if kept.latitude is not None and kept.longitude is not None
            else None
        )
        redact = kept.sid if redaction_delay(found.settings) is not None else None
        channel = ReportChannel(kept.channel)
        try:
            reply = handle(
                found, kept.phone, kept.body, location, redact_sid=redact, channel=channel
            )
        except STORAGE_DOWN:
            found.spool.release(name)
            break
        found.spool.done(name)
        stored += 1
        # A STOP was answered by the carrier's own opt-out when it came in; a WhatsApp
        # text's answer would have to go by WhatsApp, which sends only inside its window.
        by_sms = channel is ReportChannel.SMS
        if reply is not None and reply.kind is not ReplyKind.OPT_OUT_CONFIRMATION and by_sms:
            _send_late_reply(found, kept.phone, reply)
    return stored


def _send_late_reply(found: Services, phone: str, reply: Reply) -> None:
    try:
        found.sender.send_reply(phone, reply.text, reply.kind)
    except SendError as error:  # opted out, or the provider refused: the text is stored
        log.warning("a spooled text's answer was not sent (%s)", error.code or "no code")


def store_sealed_intake(found: Services, keyring: Keyring) -> int:
    """Store what arrived at this host while sealed, oldest first, with its answers
    (STOPs applied), then tell the workers waiting on it. How many texts were stored."""
    intake = SealedIntake(found.settings.spool_path, keyring.intake_public())
    if not intake.waiting():
        return 0
    to_redact: list[str] = []
    try:
        to_redact = intake.release(keyring.intake_key, found.spool)
        stored = store_spooled(found)
        while to_redact:
            _schedule_redaction(found, to_redact[0], redaction.SETTLE)
            to_redact.pop(0)
    except (OSError, *STORAGE_DOWN) as error:  # the drain's next round tries again
        log.error("texts kept while sealed not stored yet (%s)", type(error).__name__)
        for sid in to_redact:  # not lost: kept again, sealed, for the next round
            intake.keep_redaction(sid)
        return 0
    if not intake.waiting() and not found.spool.waiting():
        with contextlib.suppress(RedisError):
            key_custody.intake_stored(found.redis, intake_location(found.settings))
    log.warning("stored %d texts kept while sealed", stored)
    return stored


def intake_location(settings: Settings) -> str:
    """Names this host's sealed intake for the workers waiting on it."""
    return f"{socket.gethostname()}:{settings.spool_path}"


def start_spool_drain(found: Services, keyring: Keyring | None = None) -> threading.Event:
    """Store spooled texts every SPOOL_DRAIN_SECONDS, in a daemon thread of this process
    (with a sealed deployment's ``keyring``, what arrived while sealed first)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(SPOOL_DRAIN_SECONDS):
            try:
                if keyring is not None:
                    store_sealed_intake(found, keyring)
                if store_spooled(found):
                    log.warning("stored texts kept in the spool while the database was away")
            except Exception as error:
                log.error("spool round failed (%s)", type(error).__name__)

    threading.Thread(target=loop, name="rapidresponse-spool", daemon=True).start()
    return stop


def after_commit(found: Services, outcome: Outcome) -> None:
    """Tell the board (ids only), once what it will re-read is committed."""
    if outcome.intake is not None:
        after_intake(found, outcome.intake)
    if outcome.transition is not None:
        incident_changed(found, outcome.transition)
    elif outcome.touched is not None:
        incident_touched(found, outcome.touched)


def twilio_location(form: Mapping[str, str]) -> Location | None:
    """Twilio's Latitude/Longitude (a shared location), when both are sane numbers."""
    try:
        latitude, longitude = float(form["Latitude"]), float(form["Longitude"])
    except (KeyError, ValueError):
        return None
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):  # also rejects NaN
        return None
    return Location(latitude, longitude)


# --- status callbacks ---------------------------------------------------------------------

ERROR_CODE = re.compile(r"^[0-9]{1,6}$")


def answer_status_callback(
    found: Services,
    url: str,
    form: MultiDict[str, str],
    args: MultiDict[str, str],
    signature: str,
) -> int:
    """Twilio's status callback for a message we sent, naming its Delivery in the URL
    (``args``): the HTTP status to answer. Served by ``web.webhooks``, before Flask.

    Signed like the inbound webhook. Anything we cannot place (an unknown delivery, a
    status we do not track) is answered 200 so that Twilio does not retry it; replays and
    out-of-order callbacks change nothing (see ``broadcast.record_callback``).
    """
    if not is_signed(found.settings, url, form, signature):
        return 403
    report = read_status_report(found.settings, form, args)
    if report is None:
        return 400
    if report.redact:
        # A TwiML reply's first report: its id, which only this callback tells us.
        _schedule_redaction(found, report.sid, redaction.SETTLE)
        return 200
    if report.callback is None:
        return 200
    try:
        status_queue.record(found.redis, report.callback)  # a worker applies it, in a batch
    except (RedisError, OSError) as error:
        log.warning("status callback applied here: Redis unavailable (%s)", type(error).__name__)
        apply_status_callbacks(found, [report.callback])
    return 200


@dataclass(frozen=True)
class StatusReport:
    """What one status callback says."""

    sid: str
    # The first report of a TwiML reply whose id we asked for, to delete it at Twilio.
    redact: bool
    # None: not a send we track (an unknown delivery, a status we do not use).
    callback: StatusCallback | None


def read_status_report(
    settings: Settings, form: MultiDict[str, str], args: MultiDict[str, str]
) -> StatusReport | None:
    """The report in a status callback's fields (``args``: its URL's query), or None
    without the MessageSid and MessageStatus every callback has (a 400)."""
    sid = form.get("MessageSid") or form.get("SmsSid")
    raw_status = form.get("MessageStatus") or form.get("SmsStatus")
    if sid is None or raw_status is None or not MESSAGE_SID.match(sid):
        return None
    redact = args.get("redact") == "1" and redaction_delay(settings) is not None
    return StatusReport(sid, redact, None if redact else _callback(form, args, sid, raw_status))


def _callback(
    form: MultiDict[str, str], args: MultiDict[str, str], sid: str, raw_status: str
) -> StatusCallback | None:
    delivery_id = args.get("delivery", "")
    try:
        callback_status = CallbackStatus(raw_status.strip().lower())
    except ValueError:
        return None
    if not CALLBACK_KEY.match(delivery_id):
        return None
    code = form.get("ErrorCode", "").strip()
    to = form.get("To", "")
    return StatusCallback(
        delivery_id,
        sid,
        callback_status,
        int(code) if ERROR_CODE.match(code) else None,
        channel=("whatsapp" if to.startswith(WHATSAPP) else "sms") if to else None,
    )
