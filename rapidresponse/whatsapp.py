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
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from rapidresponse.models import (
    AlertKind,
    Channel,
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
# A refusal that another channel may still overcome.
FALLBACK_CODES = UNREACHABLE_CODES | {OUTSIDE_WINDOW}

# What a template's numbered variables can be filled with.
VARIABLES = {"text": "the alert's message, as approved (with the drill mark for a drill)"}
CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")


def address(phone: str) -> str:
    """The provider's address of ``phone`` (E.164) on WhatsApp."""
    return ADDRESS_PREFIX + phone


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
    return set(
        session.scalars(
            select(WhatsAppTemplate.language).where(
                WhatsAppTemplate.kind == kind, WhatsAppTemplate.status == TemplateStatus.APPROVED
            )
        )
    )


def approved_templates(session: Session, kind: AlertKind) -> dict[str, WhatsAppTemplate]:
    """Language value -> approved template, for one kind of alert."""
    rows = session.scalars(
        select(WhatsAppTemplate).where(
            WhatsAppTemplate.kind == kind, WhatsAppTemplate.status == TemplateStatus.APPROVED
        )
    )
    return {row.language.value: row for row in rows}


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
    row = session.scalar(
        select(WhatsAppTemplate).where(
            WhatsAppTemplate.kind == kind, WhatsAppTemplate.language == language
        )
    )
    if row is None:
        row = WhatsAppTemplate(kind=kind, language=language)
        session.add(row)
    row.content_sid, row.variables, row.status = content_sid, list(variables), status
    row.updated_by_id = staff_id
    session.flush()
    return row
