"""Periodic jobs (reaper, sweeps, retention purges, forgetting), enqueued by every worker.

Each worker runs a small thread that, once per period, tries to take that period's slot
in Redis (SET NX): exactly one worker enqueues each run, however many are running, and a
worker that dies takes nothing with it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from dispatch import status_queue
from dispatch.alerts import reap_deliveries
from dispatch.incidents import sweep_incidents
from dispatch.queues import QueueName, enqueue
from dispatch.reconfirm import reconfirm_job
from dispatch.redaction import forget_provider_ids_job, redact_due_job
from dispatch.services import current
from rapidresponse import audit, drills
from rapidresponse.config import Settings
from rapidresponse.models import utcnow
from rapidresponse.reports import expired_incidents, forget_reporter_links, purge_report_texts
from rapidresponse.shredding import shred_expired_keys
from rapidresponse.simulator import purge_outbox

log = logging.getLogger(__name__)

SLOT_PREFIX = "rr:housekeeping:"
AUDIT_SEAL_SECONDS = 10
STATUS_DRAIN_SECONDS = 10


def purge_report_texts_job() -> int:
    """Erase report texts past their retention (see ``rapidresponse.reports``): clear the
    columns, then destroy the shred keys that make their old bytes readable."""
    services = current()
    retention = timedelta(days=services.settings.report_retention_days)
    now = utcnow()
    with services.database.session() as session:
        purged = purge_report_texts(session, retention)
        expired = expired_incidents(session, retention, now)
        purge_outbox(session, now - retention)
    shred_expired_keys(services.cipher.shred_keys, expired, (now - retention).date())
    return purged


def forget_reporter_links_job() -> int:
    """Clear reporter hashes and exact times once their window is over."""
    services = current()
    with services.database.session() as session:
        return forget_reporter_links(session, utcnow(), services.reporter_keys.lifetime)


def end_stale_drills_job() -> int:
    """End the drills left running past their lifetime (their report cards frozen)."""
    services = current()
    with services.database.session() as session:
        return drills.end_stale(session, services.cipher, utcnow())


def seal_audit_job() -> int:
    """Chain the audit events recorded since the last run (see ``rapidresponse.audit``)."""
    with current().database.session() as session:
        return audit.seal(session)


@dataclass(frozen=True)
class Periodic:
    name: str
    every: timedelta
    job: Callable[..., Any]
    queue: QueueName = QueueName.BULK


def periodic_tasks(settings: Settings) -> tuple[Periodic, ...]:
    return (
        # On the alerts queue: it runs between broadcast batches, not after them all.
        Periodic(
            "reap-deliveries",
            timedelta(seconds=settings.reaper_seconds),
            reap_deliveries,
            QueueName.ALERTS,
        ),
        Periodic("sweep-incidents", timedelta(minutes=1), sweep_incidents),
        # Until it is sealed an event could be changed without a trace: keep that short.
        Periodic("seal-audit", timedelta(seconds=AUDIT_SEAL_SECONDS), seal_audit_job),
        # Status callbacks wake a drain themselves; this finds any a lost worker left.
        Periodic(
            "status-callbacks",
            timedelta(seconds=STATUS_DRAIN_SECONDS),
            status_queue.drain_job,
            QueueName.ALERTS,
        ),
        Periodic("purge-report-texts", timedelta(hours=1), purge_report_texts_job),
        # Often enough that no link outlives its window by more than a few minutes.
        Periodic("forget-reporter-links", timedelta(minutes=5), forget_reporter_links_job),
        Periodic("forget-provider-ids", timedelta(minutes=5), forget_provider_ids_job),
        Periodic("redact-at-provider", timedelta(minutes=1), redact_due_job),
        # Off unless RECONFIRM_AFTER_DAYS is set; hourly, so that the quiet hours hold.
        Periodic("reconfirm-subscribers", timedelta(hours=1), reconfirm_job),
        Periodic("end-stale-drills", timedelta(hours=1), end_stale_drills_job),
    )


def enqueue_due(redis: Redis, tasks: tuple[Periodic, ...], now: float | None = None) -> list[str]:
    """Enqueue each task whose current slot no other worker has taken yet."""
    now = time.time() if now is None else now
    enqueued = []
    for task in tasks:
        period = int(task.every.total_seconds())
        slot = f"{SLOT_PREFIX}{task.name}:{int(now // period)}"
        if redis.set(slot, 1, nx=True, ex=period * 2):
            enqueue(redis, task.queue, task.job)
            enqueued.append(task.name)
    return enqueued


def start(redis: Redis, tasks: tuple[Periodic, ...]) -> threading.Event:
    """Run ``enqueue_due`` in a daemon thread, often enough for the shortest period."""
    stop = threading.Event()
    interval = max(1.0, min(task.every.total_seconds() for task in tasks) / 2)

    def loop() -> None:
        while not stop.is_set():
            try:
                enqueue_due(redis, tasks)
            except (RedisError, OSError) as error:
                log.warning("housekeeping skipped a round (%s)", error.__class__.__name__)
            stop.wait(interval)

    threading.Thread(target=loop, name="rapidresponse-housekeeping", daemon=True).start()
    return stop
