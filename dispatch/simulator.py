"""The simulator's phones: the status callbacks Twilio would send, and each conversation.

Used only with SMS_BACKEND=simulator. A delivery report goes through the same code as a
real status callback (``broadcast.apply_status_callback``), so the board's 'sent' and
'delivered' counts move in the demo exactly as they would with Twilio — including
WhatsApp's refusal of free text outside its 24-hour window (63016), for trainings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.broadcast import apply_status_callback
from dispatch.services import Services, current
from rapidresponse import whatsapp
from rapidresponse.broadcast import CallbackStatus, delivery_for_callback
from rapidresponse.crypto import DecryptionError, Purpose
from rapidresponse.models import Alert, OutboxMessage

# A number ending in this digit plays an unreachable phone: its alerts end 'undelivered'
# (Twilio's 30003, "unreachable destination handset"), to show failures in the demo.
UNREACHABLE_LAST_DIGIT = "9"
UNREACHABLE_ERROR = 30003
CONVERSATION_LENGTH = 200


def report_delivery(outbox_id: int, delivery_id: str, stage: str) -> None:
    """Job: one simulated status callback for a message the simulator 'sent'.

    Args:
        outbox_id: the simulator's row for the message (its sid and number).
        delivery_id: the Delivery named in the message's StatusCallback URL.
        stage: "sent", or "final" for delivered / undelivered.
    """
    services = current()
    with services.database.session() as session:
        row = session.get(OutboxMessage, outbox_id)
        if row is None:
            return  # the outbox was emptied since
        sid, sent_at, channel = row.sid, row.created_at, row.channel
        try:
            phone = services.cipher.decrypt(row.to_sealed, Purpose.OUTBOX_TO)
        except DecryptionError:
            return  # its day's key was destroyed: nothing left to report on
        refused = (
            channel == "whatsapp"
            and stage == "final"
            and not _templated(session, delivery_id)
            and _window_closed(session, row.to_index, sent_at)
        )
    status, error = (
        (CallbackStatus.FAILED, whatsapp.OUTSIDE_WINDOW) if refused else _outcome(phone, stage)
    )
    apply_status_callback(services, delivery_id, message_sid=sid, status=status, error_code=error)


def _templated(session: Session, delivery_id: str) -> bool:
    """Whether the delivery went with its kind and language's approved template."""
    delivery = delivery_for_callback(session, delivery_id)
    if delivery is None:
        return False
    kind = session.scalar(select(Alert.kind).where(Alert.id == delivery.alert_id))
    return kind is not None and delivery.language in whatsapp.approved_languages(session, kind)


def _window_closed(session: Session, to_index: str, sent_at: datetime) -> bool:
    """WhatsApp's rule: free text only within 24 h of the person's last message."""
    last = session.scalar(
        select(func.max(OutboxMessage.created_at)).where(
            OutboxMessage.to_index == to_index,
            OutboxMessage.channel == "whatsapp",
            OutboxMessage.inbound.is_(True),
            OutboxMessage.created_at <= sent_at,
        )
    )
    return last is None or sent_at - last > WHATSAPP_WINDOW


def _outcome(phone: str, stage: str) -> tuple[CallbackStatus, int | None]:
    if stage == "sent":
        return CallbackStatus.SENT, None
    if phone.endswith(UNREACHABLE_LAST_DIGIT):
        return CallbackStatus.UNDELIVERED, UNREACHABLE_ERROR
    return CallbackStatus.DELIVERED, None


@dataclass(frozen=True)
class PhoneMessage:
    """One bubble of a simulated phone's conversation."""

    body: str
    inbound: bool  # True: the phone texted the hotline; False: the hotline texted the phone
    at: datetime


def conversation(services: Services, phone: str, channel: str = "sms") -> list[PhoneMessage]:
    """The last messages between ``phone`` and the hotline on ``channel``, oldest first
    (as a phone shows them: SMS and WhatsApp are two conversations)."""
    digest = services.index.digest(phone, Purpose.PHONE_INDEX)
    with services.database.session() as session:
        rows = session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.to_index == digest, OutboxMessage.channel == channel)
            .order_by(OutboxMessage.id.desc())
            .limit(CONVERSATION_LENGTH)
        ).all()
        return [
            PhoneMessage(
                body=services.cipher.decrypt(row.body_sealed, Purpose.OUTBOX_BODY),
                inbound=row.inbound,
                at=row.created_at,
            )
            for row in reversed(rows)
        ]


# WhatsApp lets a business answer freely for 24 hours after the person's last message;
# after that only with templates Meta approved.
WHATSAPP_WINDOW = timedelta(hours=24)


def whatsapp_window_ends(messages: list[PhoneMessage]) -> datetime | None:
    """When free answers stop being possible in this WhatsApp conversation (None: the
    person never wrote)."""
    last = max((m.at for m in messages if m.inbound), default=None)
    return last + WHATSAPP_WINDOW if last is not None else None
