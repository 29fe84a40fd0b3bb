"""RQ queues, in priority order, and the one way we enqueue.

Alerts go before replies, replies before bulk (announcements, purges): a worker takes
from the first non-empty queue in ``PRIORITY``. Jobs carry ids only: RQ keeps job
arguments in Redis (and in the failed-job registry, and in the AOF on disk), so a phone
number or a report text there would outlive every retention rule we have.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from enum import Enum
from typing import Any

from redis import Redis
from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer


class QueueName(str, Enum):
    ALERTS = "alerts"
    REPLIES = "replies"
    BULK = "bulk"


PRIORITY = (QueueName.ALERTS, QueueName.REPLIES, QueueName.BULK)

RESULT_TTL_SECONDS = 60  # we never read results; the database is the record
FAILURE_TTL_SECONDS = 3 * 24 * 3600  # long enough for a person to look, then gone
JOB_TIMEOUT_SECONDS = 300

# An id is an int, a uuid's 32 hex digits (longer than any phone number), or a short
# code of letters, digits, '-' and '_' with no run of digits long enough to be a number.
_UUID_HEX = re.compile(r"^[0-9a-f]{32}$")
_ID_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_LONG_DIGIT_RUN = re.compile(r"\d{7,}")


class NotAnId(ValueError):
    """A job argument that is not an id: refused before it can reach Redis."""


def check_job_arguments(args: tuple[Any, ...]) -> None:
    """Refuse anything but ids, so no phone number or text can become a job argument.

    Raises:
        NotAnId: an argument is not an int or a short id token (the message names its
            position and type, never its value).
    """
    for position, value in enumerate(args):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise NotAnId(f"argument {position}: {type(value).__name__} is not an id")
        if isinstance(value, str) and not _is_id_string(value):
            raise NotAnId(f"argument {position}: a string that is not an id token")


def _is_id_string(value: str) -> bool:
    if _UUID_HEX.match(value):
        return True
    return bool(_ID_TOKEN.match(value)) and not _LONG_DIGIT_RUN.search(value)


def queue(name: QueueName, connection: Redis) -> Queue:
    return Queue(
        name.value,
        connection=connection,
        serializer=JSONSerializer,
        default_timeout=JOB_TIMEOUT_SECONDS,
    )


def all_queues(connection: Redis) -> list[Queue]:
    return [queue(name, connection) for name in PRIORITY]


def enqueue(
    connection: Redis,
    name: QueueName,
    func: Callable[..., Any],
    *ids: int | str,
    retry: Retry | None = None,
    job_id: str | None = None,
) -> Job:
    """Enqueue ``func(*ids)`` on queue ``name`` with our TTLs. Call after the commit.

    Args:
        connection: the Redis client.
        name: which queue (sets the priority).
        func: a module-level job function.
        ids: its arguments, ids only.
        retry: RQ retry policy for transient failures.
        job_id: a deterministic id, so that enqueueing twice does not run twice.
    """
    check_job_arguments(ids)
    return queue(name, connection).enqueue_call(
        func,
        args=ids,
        result_ttl=RESULT_TTL_SECONDS,
        failure_ttl=FAILURE_TTL_SECONDS,
        retry=retry,
        job_id=job_id,
    )


def enqueue_in(
    connection: Redis,
    name: QueueName,
    delay: timedelta,
    func: Callable[..., Any] | str,
    *ids: int | str,
) -> Job:
    """Like ``enqueue``, run by the scheduler after ``delay`` (timeouts, deadlines).

    ``func`` may be a dotted name, for a module that cannot import the job's own.
    """
    check_job_arguments(ids)
    # RQ takes either form; its type variable cannot be given a union.
    return queue(name, connection).enqueue_in(  # type: ignore[type-var]
        delay, func, *ids, result_ttl=RESULT_TTL_SECONDS, failure_ttl=FAILURE_TTL_SECONDS
    )
