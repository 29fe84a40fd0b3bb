"""Writing the rest of a streamed ledger: one segment per job.

Approval writes the first segment of an alert's ledger and enqueues it (see
``broadcast.approve``); when the audience is larger, a ``write_ledger_segment`` job
writes the next segment in one transaction, commits, enqueues that segment's batches,
then enqueues the next ledger job behind them, so sending and writing take turns on a
single worker and run side by side on several. A job killed mid-segment leaves the last
committed segment and its cursor; the reaper enqueues a new job for a cursor left idle
(``broadcast.ledger_orphans``). Two jobs for one alert take turns on the cursor's row
lock: each writes the segment after the other's, never the same one.
"""

from __future__ import annotations

import logging
import secrets

from redis import Redis
from redis.exceptions import RedisError

from dispatch.broadcast import (
    enqueue_batches,
    finish_alert_if_done,
    job_timeout,
    progress_hint,
    waiting_job_ids,
    whatsapp_batch,
)
from dispatch.queues import QueueName, enqueue
from dispatch.services import Services, current
from rapidresponse import broadcast
from rapidresponse.config import Settings
from rapidresponse.models import Alert, AlertKind, utcnow

log = logging.getLogger(__name__)

JOB_ID_PREFIX = "ledger-"


def enqueue_ledger(redis: Redis, alert_id: int, lane: QueueName) -> None:
    """Enqueue the job that writes an alert's next ledger segment (ids only)."""
    enqueue(
        redis,
        lane,
        write_ledger_segment,
        alert_id,
        job_id=f"{JOB_ID_PREFIX}{alert_id}-{secrets.token_hex(4)}",
    )


def start_streaming(services: Services, approval: broadcast.Approval, lane: QueueName) -> None:
    """After an approval that wrote only the first segment: start the ledger jobs. If
    Redis is away the reaper starts them (the cursor waits in the database)."""
    if approval.ledger_done:
        return
    try:
        enqueue_ledger(services.redis, approval.alert_id, lane)
    except (RedisError, OSError) as error:
        log.warning(
            "alert %s: ledger job not enqueued (%s); the reaper will",
            approval.alert_id,
            error.__class__.__name__,
        )


def queued_ledgers(redis: Redis, job_ids: list[str] | None = None) -> set[int]:
    """Alerts with a ledger job waiting in a queue or scheduled (among ``job_ids``, when
    the caller has read them already)."""
    return {
        int(job_id[len(JOB_ID_PREFIX) :].split("-", 1)[0])
        for job_id in (waiting_job_ids(redis) if job_ids is None else job_ids)
        if job_id.startswith(JOB_ID_PREFIX)
    }


def first_rows(settings: Settings) -> int:
    """Recipients written with the approval itself (the rest: ledger jobs)."""
    return min(broadcast.FIRST_SEGMENT_ROWS, settings.ledger_segment_rows)


def ledger_plan(services: Services) -> broadcast.LedgerPlan:
    """This network's batch sizes and limits, as ``alerts.write_ledger`` approves with."""
    settings = services.settings
    return broadcast.LedgerPlan.of(
        broadcast.batch_size(settings.send_rate),
        whatsapp_batch(settings),
        settings.whatsapp_daily_limit,
        settings.announcements_per_week,
    )


def write_ledger_segment(alert_id: int) -> dict[str, int]:
    """Write the next segment of an alert's ledger, enqueue its batches and the next
    ledger job. Returns counts, for RQ's record."""
    services = current()
    now = utcnow()
    with services.database.session() as session:
        segment = broadcast.write_segment(
            session,
            alert_id,
            ledger_plan(services),
            now=now,
            rows=services.settings.ledger_segment_rows,
        )
        if segment is None:  # written whole already (a second job), or the alert is gone
            return {"rows": 0, "batches": 0}
        alert = session.get_one(Alert, alert_id)
        lane = QueueName.BULK if alert.kind is AlertKind.ANNOUNCEMENT else QueueName.ALERTS
        # An announcement before its time (quiet hours) is enqueued by the reaper then.
        send_now = alert.send_after is None or alert.send_after <= now
    if send_now:
        enqueue_batches(services.redis, alert_id, segment.to_send, job_timeout(services), lane)
    if segment.done:
        finish_alert_if_done(services, alert_id)  # releases what waited on the own area
    else:
        enqueue_ledger(services.redis, alert_id, lane)
        progress_hint(services, alert_id)
    return {"rows": segment.rows, "batches": len(segment.batches)}
