"""Alerts from approval to completion: approving, follow-ups, and the reaper.

Approval commits the ledger first and enqueues afterwards. If Redis is unreachable at
that moment the alert is not lost: its rows sit pending in the database, and the
reaper (a scheduled job on the alerts queue) enqueues any batch that has pending rows
and no job waiting for it, and takes back rows whose worker died holding them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta

from redis.exceptions import RedisError

from dispatch.broadcast import enqueue_batches, job_timeout, publish_progress, queued_batches
from dispatch.services import Services, current
from rapidresponse import broadcast
from rapidresponse.models import utcnow

log = logging.getLogger(__name__)


def approve_alert(
    services: Services, alert_id: int, *, staff_id: int | None = None
) -> broadcast.Approval:
    """Approve a draft: write its ledger, commit, then enqueue its batches.

    Raises:
        AlertNotApprovable: it was not a draft (already approved, or cancelled).
    """
    settings = services.settings
    with services.database.session() as session:
        approval = broadcast.approve(
            session,
            alert_id,
            now=utcnow(),
            validity=timedelta(minutes=settings.alert_validity_minutes),
            batch=broadcast.batch_size(settings.send_rate),
            approved_by_id=staff_id,
        )
    try:
        enqueue_batches(services.redis, alert_id, range(approval.batches), job_timeout(services))
    except (RedisError, OSError) as error:
        log.warning(
            "alert %s: batches not enqueued (%s); the reaper will enqueue them",
            alert_id,
            error.__class__.__name__,
        )
    publish_progress(services, alert_id)
    return approval


def reap_deliveries() -> dict[str, int]:
    """Scheduled: expire, take back and re-enqueue whatever a broadcast has left behind."""
    services = current()
    now = utcnow()
    idle_since = now - timedelta(seconds=services.settings.reaper_seconds)
    with services.database.session() as session:
        expired = broadcast.expire_overdue(session, now)
        released = broadcast.release_expired_leases(session, now)
        given_up = broadcast.give_up_exhausted(session, now)
        waiting = broadcast.waiting_batches(session, idle_since)
        open_alerts = broadcast.open_alert_ids(session)
    # A batch whose lease expired lost its worker; a waiting one may just be queued.
    orphans = released | (waiting - queued_batches(services.redis))
    by_alert: dict[int, list[int]] = defaultdict(list)
    for alert_id, batch in sorted(orphans):
        by_alert[alert_id].append(batch)
    for alert_id, batches in by_alert.items():
        enqueue_batches(services.redis, alert_id, batches, job_timeout(services))
        log.info("alert %s: re-enqueued %d batches", alert_id, len(batches))
    for alert_id in open_alerts:
        publish_progress(services, alert_id, final=True)
    return {
        "expired": expired,
        "released_batches": len(released),
        "given_up": given_up,
        "reenqueued_batches": len(orphans),
    }
