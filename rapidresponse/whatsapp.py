"""WhatsApp as a channel of its own: consent per channel, templates, and what its
provider errors mean.

Twilio carries WhatsApp through the same Messages API as SMS, with ``whatsapp:+E164``
addresses. Two rules shape everything here:

- each channel has its own consent and its own STOP (WhatsApp has no carrier opt-out:
  honouring its STOP is ours alone), so a person's SMS and WhatsApp standing are kept
  apart (``Subscriber.status`` and ``Subscriber.whatsapp_status``);
- outside the 24 hours after a person's last message WhatsApp takes only pre-approved
  templates (a ``ContentSid`` with ``ContentVariables``). An alert kind and language
  without an approved template goes by SMS to those who consented to SMS.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rapidresponse import audit
from rapidresponse.models import (
    AlertKind,
    Channel,
    Delivery,
    DeliveryStatus,
    Language,
    Subscriber,
    SubscriberStatus,
    TemplateStatus,
    WhatsAppTemplate,
)

ADDRESS_PREFIX = "whatsapp:"

# Twilio's WhatsApp error codes (2025-2026 documentation).
OUTSIDE_WINDOW = 63016  # free text outside the 24 h window: a template was needed
RATE_LIMITED = 63018  # the sender's WhatsApp rate was exceeded: slow the lane down
# Not deliverable to that person on WhatsApp (no account, blocked, ecosystem rules):
# WhatsApp is marked unusable for them, and SMS takes over if they consented to it.
UNREACHABLE_CODES = frozenset({63003, 63014, 63024, 63032})


def refused_for_good(code: int | None) -> bool:
    """Whether WhatsApp's error code means this message will never go on WhatsApp as it
    is (outside the window, not on WhatsApp, a template it will not take...): another
    channel may still carry it. Twilio's own 20xxx codes (authentication, 429, 5xx) and
    WhatsApp's rate limit are for trying again, not for giving up."""
    return code is not None and code >= FIRST_MESSAGE_CODE and code != RATE_LIMITED


FIRST_MESSAGE_CODE = 21000  # below: Twilio's account and HTTP-level codes

# What a template's numbered variables can be filled with.
VARIABLES = {"text": "the alert's message, as approved (with the drill mark for a drill)"}
CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
# A business-scoped user id: how WhatsApp names someone who hides their number behind a
# username (a country code, a dot, up to 128 letters and digits).
USER_ID = re.compile(r"[A-Z]{2}\.[A-Za-z0-9]{1,128}")


def is_user_id(address: str) -> bool:
    return USER_ID.fullmatch(address) is not None


def status_on(subscriber: Subscriber, channel: Channel) -> SubscriberStatus:
    return subscriber.whatsapp_status if channel is Channel.WHATSAPP else subscriber.status


def set_status_on(
    subscriber: Subscriber, channel: Channel, status: SubscriberStatus, now: datetime
) -> None:
    """Change one channel's standing; the other channel's is untouched."""
    if channel is Channel.WHATSAPP:
        subscriber.whatsapp_status = status
        if status is SubscriberStatus.OPTED_OUT:
            subscriber.whatsapp_opted_out_at = now
        elif status is SubscriberStatus.ACTIVE:
            subscriber.whatsapp_opted_out_at = None
        return
    subscriber.status = status
    if status is SubscriberStatus.OPTED_OUT:
        subscriber.opted_out_at = now
    elif status is SubscriberStatus.ACTIVE:
        subscriber.opted_out_at = subscriber.opt_out_confirmed_at = None


def other(channel: Channel) -> Channel:
    return Channel.SMS if channel is Channel.WHATSAPP else Channel.WHATSAPP


# --- templates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Content:
    """What replaces ``Body`` in a templated WhatsApp message."""

    sid: str
    variables: str  # JSON, as the Messages API's ContentVariables takes it


class TemplateError(ValueError):
    """A template entry that cannot be used as given (said to the coordinator)."""


def approved_languages(session: Session, kind: AlertKind) -> set[Language]:
    """The languages with an approved template for this kind of alert."""
    return {Language(language) for language in approved_templates(session, kind)}


def approved_templates(session: Session, kind: AlertKind) -> dict[str, WhatsAppTemplate]:
    """Language value -> approved template, for one kind of alert."""
    rows = session.scalars(
        select(WhatsAppTemplate).where(
            WhatsAppTemplate.kind == kind, WhatsAppTemplate.status == TemplateStatus.APPROVED
        )
    )
    return {row.language.value: row for row in rows}


def _template_row(session: Session, kind: AlertKind, language: Language) -> WhatsAppTemplate:
    """The row of (kind, language), made if there is none; two coordinators saving the
    same one at once both end on the one row (the loser of the insert reads it)."""
    wanted = select(WhatsAppTemplate).where(
        WhatsAppTemplate.kind == kind, WhatsAppTemplate.language == language
    )
    row = session.scalar(wanted)
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = WhatsAppTemplate(kind=kind, language=language, content_sid="", variables=[])
            session.add(row)
    except IntegrityError:
        row = session.scalars(wanted).one()
    return row


def content(template: WhatsAppTemplate, text: str) -> Content:
    """The ContentSid and ContentVariables that say ``text`` through ``template``."""
    values = {"text": text}
    filled = {str(n): values[name] for n, name in enumerate(template.variables, start=1)}
    return Content(template.content_sid, json.dumps(filled, ensure_ascii=False))


def save_template(
    session: Session,
    *,
    kind: AlertKind,
    language: Language,
    content_sid: str,
    variables: list[str],
    status: TemplateStatus,
    staff_id: int | None,
) -> WhatsAppTemplate:
    """Enter (or change) the template of one kind and language.

    Raises:
        TemplateError: the sid is not a Content API sid, or a variable is unknown.
    """
    content_sid = content_sid.strip()
    if not CONTENT_SID.fullmatch(content_sid):
        raise TemplateError("content_sid")
    if not variables or any(name not in VARIABLES for name in variables):
        raise TemplateError("variables")
    row = _template_row(session, kind, language)
    row.content_sid, row.variables, row.status = content_sid, list(variables), status
    row.updated_by_id = staff_id
    session.flush()
    audit.record(
        session,
        actor="system" if staff_id is None else f"staff:{staff_id}",
        action="whatsapp.template_saved",
        subject=f"whatsapp_template:{row.id}",
        details={"kind": kind.value, "language": language.value, "status": status.value},
    )
    return row


# --- the portfolio's daily tier -----------------------------------------------------------

LIMIT_REASON = "wa-daily-limit"  # the error code a delivery over the tier is failed with


def keep_within_daily_limit(session: Session, alert_id: int, now: datetime, limit: int) -> int:
    """Hold an alert's WhatsApp rows to the portfolio's tier: ``limit`` unique people per
    rolling 24 h (WHATSAPP_DAILY_LIMIT). Someone already messaged within the 24 h costs
    nothing more. Past the tier, people who consented to SMS get it by SMS; the rest are
    failed with LIMIT_REASON, before anything is sent, rather than sent into refusals
    that lower the number's quality rating. The own area's rows (lower batches) are kept
    first, then the longest subscribed. Returns how many rows were moved or failed.
    """
    mine = (
        select(Delivery.id, Delivery.subscriber_id)
        .where(Delivery.alert_id == alert_id, Delivery.channel == Channel.WHATSAPP)
        .order_by(Delivery.batch, Delivery.subscriber_id)
    )
    rows = session.execute(mine).all()
    if not rows:
        return 0
    recent = set(
        session.scalars(
            select(Delivery.subscriber_id)
            .where(
                Delivery.alert_id != alert_id,
                Delivery.channel == Channel.WHATSAPP,
                or_(
                    Delivery.sent_at > now - DAILY_WINDOW,
                    Delivery.status.in_((DeliveryStatus.PENDING, DeliveryStatus.CLAIMED)),
                ),
            )
            .distinct()
        )
    )
    room = max(0, limit - len(recent))
    over: list[int] = []
    for delivery_id, subscriber_id in rows:
        if subscriber_id in recent:
            continue
        if room > 0:
            room -= 1
        else:
            over.append(delivery_id)
    if not over:
        return 0
    on_sms = select(Subscriber.id).where(Subscriber.status == SubscriberStatus.ACTIVE)
    # Pending only: with a streamed ledger this runs again after each segment, when the
    # earlier segments' rows may be on their way.
    over_by_id = and_(Delivery.id.in_(over), Delivery.status == DeliveryStatus.PENDING)
    session.execute(
        update(Delivery)
        .where(over_by_id, Delivery.subscriber_id.in_(on_sms))
        .values(channel=Channel.SMS)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Delivery)
        .where(over_by_id, Delivery.channel == Channel.WHATSAPP)
        .values(status=DeliveryStatus.FAILED, error_code=LIMIT_REASON, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return len(over)


DAILY_WINDOW = timedelta(hours=24)


# --- what a dispatcher sees before sending -----------------------------------------------


@dataclass(frozen=True)
class ChannelCounts:
    """How an alert's audience would be reached, for the alert page."""

    sms: int = 0  # SMS is their channel
    by_template: int = 0  # WhatsApp, with the approved template of their language
    sms_for_lack_of_template: int = 0  # on WhatsApp too, but no template: SMS instead
    free_text: int = 0  # WhatsApp only, no template: reaches them only inside 24 h

    @property
    def whatsapp(self) -> int:
        return self.by_template + self.free_text


def channel_counts(
    standing: Iterable[tuple[SubscriberStatus, SubscriberStatus, Language, int]],
    templated: set[Language],
    whatsapp_on: bool,
) -> ChannelCounts:
    """Counts per channel from (SMS status, WhatsApp status, language, people) groups,
    by the same rule the ledger follows (``broadcast._ledger_channel``)."""
    sms = by_template = for_lack = free_text = 0
    for sms_status, wa_status, language, people in standing:
        on_sms = sms_status is SubscriberStatus.ACTIVE
        on_whatsapp = whatsapp_on and wa_status is SubscriberStatus.ACTIVE
        if on_whatsapp and language in templated:
            by_template += people
        elif on_whatsapp and not on_sms:
            free_text += people
        elif on_sms:
            sms += people
            for_lack += people if on_whatsapp else 0
    return ChannelCounts(sms, by_template, for_lack, free_text)


# --- what to submit to Meta ---------------------------------------------------------------

# The body of each utility template, per kind and language: a fixed frame around {{1}}
# (the alert's own text), never a variable at the start or the end, as Meta requires.
SUGGESTED_BODIES: dict[tuple[AlertKind, Language], str] = {
    (AlertKind.ALERT, Language.EN): "Rapid response alert for your area: {{1}} "
    "Reply STOP to end WhatsApp alerts.",
    (AlertKind.ALERT, Language.ES): "Alerta de respuesta rapida para su zona: {{1}} "
    "Responda BAJA para dejar las alertas por WhatsApp.",
    (AlertKind.UPDATE, Language.EN): "Update to a rapid response alert you got: {{1}} "
    "Reply STOP to end WhatsApp alerts.",
    (AlertKind.UPDATE, Language.ES): "Novedad sobre una alerta que recibio: {{1}} "
    "Responda BAJA para dejar las alertas por WhatsApp.",
    (AlertKind.ALL_CLEAR, Language.EN): "All clear for a rapid response alert you got: {{1}} "
    "Reply STOP to end WhatsApp alerts.",
    (AlertKind.ALL_CLEAR, Language.ES): "Fin de una alerta que recibio: {{1}} "
    "Responda BAJA para dejar las alertas por WhatsApp.",
    (AlertKind.CORRECTION, Language.EN): "Correction to a rapid response alert you got: {{1}} "
    "Reply STOP to end WhatsApp alerts.",
    (AlertKind.CORRECTION, Language.ES): "Correccion de una alerta que recibio: {{1}} "
    "Responda BAJA para dejar las alertas por WhatsApp.",
    (AlertKind.ANNOUNCEMENT, Language.EN): "News you asked for from your rapid response "
    "network: {{1}} Reply NEWS STOP to end these.",
    (AlertKind.ANNOUNCEMENT, Language.ES): "Noticias que pidio de su red de respuesta "
    "rapida: {{1}} Responda BAJA NOTICIAS para dejarlas.",
}


def templates_by_key(session: Session) -> dict[tuple[AlertKind, Language], WhatsAppTemplate]:
    """Every template entered, by (kind, language)."""
    return {(row.kind, row.language): row for row in session.scalars(select(WhatsAppTemplate))}


def readers(session: Session) -> dict[Language, tuple[int, int]]:
    """People active on WhatsApp, per language: (all of them, those also on SMS)."""
    on_sms = func.sum(case((Subscriber.status == SubscriberStatus.ACTIVE, 1), else_=0))
    rows = session.execute(
        select(Subscriber.language, func.count(), on_sms)
        .where(Subscriber.whatsapp_status == SubscriberStatus.ACTIVE)
        .group_by(Subscriber.language)
    ).all()
    return {language: (int(total), int(sms or 0)) for language, total, sms in rows}
