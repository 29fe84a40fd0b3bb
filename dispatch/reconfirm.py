"""The hourly job that keeps the list alive (see ``rapidresponse.reconfirm``): pause who
did not answer, then ask "still want alerts?" — never in the quiet hours, each person
once (the question is claimed before it is sent, and given back if it could not be)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from dispatch.senders import SendError
from dispatch.services import Services, current
from rapidresponse import reconfirm
from rapidresponse.announcements import next_send_time
from rapidresponse.crypto import Purpose
from rapidresponse.messages import join_names, text
from rapidresponse.models import (
    Area,
    Subscriber,
    Subscription,
    SubscriptionStatus,
    utcnow,
)

log = logging.getLogger(__name__)


def reconfirm_job(now: datetime | None = None) -> dict[str, int]:
    services = current()
    settings = services.settings
    if settings.reconfirm_after_days == 0:  # off (the default)
        return {"paused": 0, "asked": 0}
    now = now or utcnow()
    with services.database.session() as session:
        paused = reconfirm.pause_silent(session, now, timedelta(days=settings.reconfirm_wait_days))
    zone = ZoneInfo(settings.timezone)
    if next_send_time(now, zone, settings.quiet_hours) != now:
        return {"paused": paused, "asked": 0}  # nobody is woken up to be asked this
    with services.database.session() as session:
        due = reconfirm.to_ask(session, now, timedelta(days=settings.reconfirm_after_days))
    asked = sum(ask(services, subscriber_id, now) for subscriber_id in due)
    if paused or asked:
        log.info("keeping the list alive: %d asked, %d paused", asked, paused)
    return {"paused": paused, "asked": asked}


def ask(services: Services, subscriber_id: int, now: datetime) -> bool:
    """Ask one person, at most once. True if the question left."""
    with services.database.session() as session:
        if not reconfirm.claim_question(session, subscriber_id, now):
            return False
        subscriber = session.get_one(Subscriber, subscriber_id)
        areas = session.scalars(
            select(Area.name)
            .join(Subscription, Subscription.area_id == Area.id)
            .where(
                Subscription.subscriber_id == subscriber_id,
                Subscription.status == SubscriptionStatus.CONFIRMED,
            )
            .order_by(Area.name)
        ).all()
        body = text(
            subscriber.language,
            "sms.reconfirm_ask",
            areas=join_names(list(areas)),
            days=str(services.settings.reconfirm_wait_days),
        )
        phone = services.cipher.decrypt(subscriber.phone_sealed, Purpose.SUBSCRIBER_PHONE)
    try:
        services.sender.send(phone, body)
    except SendError as error:
        if error.permanent:  # a dead number: the pause follows the silence
            return False
        with services.database.session() as session:
            reconfirm.give_back(session, subscriber_id)
        return False
    return True
