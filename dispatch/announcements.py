"""Sending an announcement: written, approved and sent in one step by a coordinator,
on the bulk queue, after the quiet hours.

An announcement approved during the quiet hours has its ledger written at once (who gets
it is decided then, with the weekly cap as it stands) and waits: nothing is queued until
its time, when the reaper — which already re-enqueues any batch left waiting — enqueues
its batches. A job sitting in Redis overnight could be lost; the ledger cannot.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError

from dispatch.broadcast import enqueue_batches, job_timeout, publish_progress, whatsapp_batch
from dispatch.ledger import first_rows, start_streaming
from dispatch.queues import QueueName
from dispatch.services import Services
from rapidresponse import announcements, broadcast
from rapidresponse.composer import signatures
from rapidresponse.models import Alert, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sent:
    alert_id: int
    recipients: int
    send_after: datetime  # now, or the end of the quiet hours


def send_announcement(
    services: Services,
    *,
    bodies: Mapping[str, str],
    area_ids: Sequence[int],
    asks_rsvp: bool,
    staff_id: int,
    now: datetime | None = None,
) -> Sent:
    """Draft, approve and (unless it is the quiet hours) enqueue an announcement.

    Raises:
        AnnouncementRefused: no English text, or a text too long.
    """
    settings = services.settings
    now = now or utcnow()
    send_after = announcements.next_send_time(
        now, ZoneInfo(settings.timezone), settings.quiet_hours
    )
    with services.database.session() as session:
        alert = announcements.draft(
            session,
            bodies=bodies,
            area_ids=area_ids,
            asks_rsvp=asks_rsvp,
            signatures=signatures(settings.org_name, settings.org_name_es),
            staff_id=staff_id,
        )
        alert.send_after = send_after
        session.flush()
        approval = broadcast.approve(
            session,
            alert.id,
            now=now,
            validity=send_after - now + announcements.VALIDITY,
            batch=broadcast.batch_size(settings.send_rate),
            whatsapp_batch=whatsapp_batch(settings),
            whatsapp_daily_limit=settings.whatsapp_daily_limit,
            approved_by_id=staff_id,
            per_week=settings.announcements_per_week,
            first_rows=first_rows(settings),
        )
    if send_after <= now:
        _enqueue(services, approval)
    start_streaming(services, approval, QueueName.BULK)
    publish_progress(services, approval.alert_id)
    return Sent(approval.alert_id, _audience(services, approval), send_after)


def _audience(services: Services, approval: broadcast.Approval) -> int:
    """How many it goes to: written with the approval, or (a large audience, whose
    ledger the workers are still writing) counted now that the first ones are on their
    way."""
    if approval.ledger_done:
        return approval.recipients
    with services.database.reading() as session:
        alert = session.get_one(Alert, approval.alert_id)
        return broadcast.audience_size(
            session, alert, per_week=services.settings.announcements_per_week
        )


def _enqueue(services: Services, approval: broadcast.Approval) -> None:
    try:
        enqueue_batches(
            services.redis,
            approval.alert_id,
            approval.enqueue_now,
            job_timeout(services),
            QueueName.BULK,
        )
    except (RedisError, OSError) as error:
        log.warning(
            "announcement %s: batches not enqueued (%s); the reaper will enqueue them",
            approval.alert_id,
            error.__class__.__name__,
        )
