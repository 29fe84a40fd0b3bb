"""Queues: priority order, our serializer and TTLs, and ids-only job arguments."""

from __future__ import annotations

import json
import zlib

import pytest
from redis import Redis
from rq.serializers import JSONSerializer

from dispatch import incidents
from dispatch.broadcast import enqueue_batches, queued_batches
from dispatch.queues import (
    FAILURE_TTL_SECONDS,
    RESULT_TTL_SECONDS,
    NotAnId,
    QueueName,
    all_queues,
    check_job_arguments,
    enqueue,
)


def test_alerts_come_before_replies_before_bulk(redis_client: Redis) -> None:
    assert [q.name for q in all_queues(redis_client)] == ["alerts", "replies", "bulk"]


def test_jobs_use_json_and_short_ttls(redis_client: Redis) -> None:
    job = enqueue(redis_client, QueueName.ALERTS, incidents.page_responder, 17)
    assert job.serializer is JSONSerializer or job.serializer == JSONSerializer
    assert job.result_ttl == RESULT_TTL_SECONDS
    assert job.failure_ttl == FAILURE_TTL_SECONDS
    assert list(job.args) == [17]
    # The stored payload is (zlib-compressed) JSON: no pickled objects, ids only.
    raw = redis_client.hget(job.key, "data")
    assert raw is not None
    assert json.loads(zlib.decompress(raw)) == [
        "dispatch.incidents.page_responder",
        None,
        [17],
        {},
    ]


@pytest.mark.parametrize(
    "value",
    [
        "+15035550123",
        "5035550123",
        "503 555 0123",
        "ICE at Lombard and Denver",
        3.5,
        None,
        ["id"],
        {"id": 1},
        True,
    ],
)
def test_anything_but_an_id_is_refused(value: object) -> None:
    with pytest.raises(NotAnId) as caught:
        check_job_arguments((value,))
    assert str(value) not in str(caught.value) or value in (None, True)


@pytest.mark.parametrize(
    "value", [1, 42, "0f" * 16, "A7K3", "alert-12", "81def0b9e5914a84a87f941656677a53", "1" * 32]
)
def test_ids_are_accepted(value: object) -> None:
    check_job_arguments((value,))


def test_a_refused_argument_never_reaches_redis(redis_client: Redis) -> None:
    with pytest.raises(NotAnId):
        enqueue(redis_client, QueueName.REPLIES, incidents.page_responder, "+15035550123")
    assert all(q.count == 0 for q in all_queues(redis_client))


def test_broadcast_batches_are_enqueued_in_one_pipeline_with_ids_only(redis_client: Redis) -> None:
    assert enqueue_batches(redis_client, 7, range(3), timeout=600) == 3
    alerts = all_queues(redis_client)[0]
    jobs = [alerts.fetch_job(job_id) for job_id in alerts.get_job_ids()]
    assert sorted(tuple(job.args) for job in jobs if job) == [(7, 0), (7, 1), (7, 2)]
    assert all(
        job and job.timeout == 600 and job.failure_ttl == FAILURE_TTL_SECONDS for job in jobs
    )
    assert queued_batches(redis_client) == {(7, 0), (7, 1), (7, 2)}
