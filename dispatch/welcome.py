"""A new responder's welcome text: what the service is, ON/OFF, how to answer a page, and
the rule that keeps them and their neighbours safe (watch from a distance; never follow,
block or touch agents).

Sent once. The row is claimed (``welcomed_at`` set) before the text leaves, so a retry or
a second job finds it taken: at most once. A send that fails for a moment gives the claim
back and is retried; one the carrier refuses for good is left (the coordinator sees the
number is wrong when pages fail too). The sweep enqueues a welcome for anyone added while
Redis was down.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from redis import Redis
from rq import Retry
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatch.queues import QueueName, enqueue
from dispatch.senders import SendError
from dispatch.services import current
from rapidresponse.crypto import Purpose
from rapidresponse.messages import text
from rapidresponse.models import Responder, utcnow

log = logging.getLogger(__name__)

WELCOME_RETRY = Retry(max=3, interval=[30, 120, 600])
# The job enqueued when a responder is added runs well within this; after it, the sweep.
SWEEP_AFTER = timedelta(minutes=2)


def enqueue_welcome(redis: Redis, responder_id: int) -> None:
    enqueue(redis, QueueName.REPLIES, welcome_responder, responder_id, retry=WELCOME_RETRY)


def welcome_responder(responder_id: int) -> str:
    services = current()
    with services.database.session() as session:
        claim = session.execute(
            update(Responder)
            .where(
                Responder.id == responder_id,
                Responder.welcomed_at.is_(None),
                Responder.active,
            )
            .values(welcomed_at=utcnow())
        )
        if not claim.rowcount:  # type: ignore[attr-defined]
            return "already welcomed"
        responder = session.get_one(Responder, responder_id)
        body = text(responder.language, "sms.responder_welcome", name=responder.name)
        phone = services.cipher.decrypt(responder.phone_sealed, Purpose.RESPONDER_PHONE)
    try:
        services.sender.send(phone, body)
    except SendError as error:
        if error.permanent:
            log.warning("responder %s: welcome refused (error %s)", responder_id, error.code)
            return "refused"
        with services.database.session() as session:  # give the claim back, then retry
            session.execute(
                update(Responder).where(Responder.id == responder_id).values(welcomed_at=None)
            )
        raise
    return "welcomed"


def not_yet_welcomed(session: Session) -> list[int]:
    """Active responders added a while ago whose welcome never went (Redis was down)."""
    return list(
        session.scalars(
            select(Responder.id).where(
                Responder.welcomed_at.is_(None),
                Responder.active,
                Responder.created_at < utcnow() - SWEEP_AFTER,
            )
        )
    )
