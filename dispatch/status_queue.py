"""Twilio's status callbacks: recorded by the web in a fraction of a millisecond, applied
to the ledger by a worker, in batches.

Applied in the web process, each callback cost about 7 ms of its CPU: two callbacks per
message (sent, delivered) saturated it above 70-90 messages per second, below one 10DLC
campaign's rate, and texts to the hotline queued behind them. Now the web checks the
signature, pushes the callback (ids and a status, never a number or a text) onto a Redis
list and answers 200; the first push after a quiet spell enqueues ``drain_job``, which
applies everything waiting, 500 at a time, one transaction each.

Applying is idempotent and statuses only move forward (``broadcast.record_callback``),
so a batch applied twice (a worker killed between its commit and trimming the list)
changes nothing the second time. Redis keeps the list in its append-only file; if Redis
cannot take a callback, the web applies it at once, the old way, rather than lose it.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis import Redis
from redis.commands.core import Script
from redis.exceptions import LockError, RedisError
from sqlalchemy.exc import SQLAlchemyError

from dispatch.queues import QueueName, enqueue
from rapidresponse.broadcast import CallbackStatus

if TYPE_CHECKING:
    from dispatch.services import Services

log = logging.getLogger(__name__)

# One hash tag: the script below touches both keys, which a Redis Cluster wants in one slot.
QUEUE_KEY = "{rr:status-callbacks}"
# Set while a drain job is enqueued or running: the pushes meanwhile enqueue nothing.
WAKE_KEY = "{rr:status-callbacks}:wake"
WAKE_SECONDS = 60  # a drain job lost with its worker: the next push after this wakes one
LOCK_KEY = "rr:status-callbacks:lock"  # one drain at a time: each trims what it applied
LOCK_SECONDS = 120
# A drain woken while the last one finishes waits for it, briefly: the one holding the
# queue takes every callback anyway, and a drain waiting long (housekeeping starts one
# every 10 s) would keep an alerts worker from sending.
LOCK_WAIT_SECONDS = 1
BATCH = 500


@dataclass(frozen=True)
class StatusCallback:
    delivery_id: str
    message_sid: str
    status: CallbackStatus
    error_code: int | None
    # "sms" or "whatsapp", from the callback's own To: a WhatsApp message's callback is
    # never taken for the SMS the same row went as afterwards. None: not said.
    channel: str | None = None

    def pack(self) -> str:
        return json.dumps(
            [self.delivery_id, self.message_sid, self.status.value, self.error_code, self.channel]
        )

    @classmethod
    def unpack(cls, raw: bytes | str) -> StatusCallback | None:
        try:
            delivery_id, sid, status, code, *rest = json.loads(raw)
            channel = str(rest[0]) if rest and rest[0] is not None else None
            return cls(str(delivery_id), str(sid), CallbackStatus(status), code, channel)
        except (ValueError, TypeError):
            return None  # not one of ours: dropped, never retried forever


# Push, and say whether a drain must be woken: one round trip (a pipeline costs the web
# more CPU than the command).
_PUSH = """
redis.call('RPUSH', KEYS[1], ARGV[1])
return redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2])
"""


def record(redis: Redis, callback: StatusCallback) -> None:
    """Queue ``callback`` for a worker, waking a drain if none is due.

    Raises RedisError (or OSError) when Redis cannot take it: then apply it directly."""
    woke = _push_script(redis)(keys=[QUEUE_KEY, WAKE_KEY], args=[callback.pack(), WAKE_SECONDS])
    if woke:
        enqueue(redis, QueueName.ALERTS, drain_job)


@functools.cache
def _push_script(redis: Redis) -> Script:
    return redis.register_script(_PUSH)


def drain(services: Services) -> int:
    """Apply every queued callback, BATCH per transaction; return how many."""
    from dispatch.broadcast import apply_status_callbacks

    redis = services.redis
    applied = 0
    lock = redis.lock(LOCK_KEY, timeout=LOCK_SECONDS, blocking_timeout=LOCK_WAIT_SECONDS)
    try:
        with lock:
            while True:
                lock.extend(LOCK_SECONDS, replace_ttl=True)  # a long backlog takes a while
                raw = redis.lrange(QUEUE_KEY, 0, BATCH - 1)
                if not raw:
                    # From here on a push wakes another drain; one that came just before
                    # this is still ours to take.
                    redis.delete(WAKE_KEY)
                    if not redis.llen(QUEUE_KEY):
                        return applied
                    continue
                batch = [c for c in (StatusCallback.unpack(r) for r in raw) if c is not None]
                apply_status_callbacks(services, batch)
                redis.ltrim(QUEUE_KEY, len(raw), -1)  # after the commit: never lost
                applied += len(batch)
    except LockError:
        log.info("status callbacks: another drain holds the queue; it takes ours too")
        return applied


def drain_job() -> int:
    """The drain as a job. With the database or Redis away it says so and ends: the
    callbacks stay queued, and housekeeping's next drain (10 s) tries again; a failed
    job every 10 s for the length of an outage would fill RQ's failed-job registry."""
    from dispatch.services import current

    try:
        return drain(current())
    except (SQLAlchemyError, RedisError, OSError) as error:
        log.warning("status callbacks kept for the next drain (%s)", type(error).__name__)
        return 0


def waiting(redis: Redis) -> int | None:
    """Callbacks waiting for a worker (None: Redis cannot say), for /healthz."""
    try:
        return int(redis.llen(QUEUE_KEY))
    except (RedisError, OSError):
        return None
