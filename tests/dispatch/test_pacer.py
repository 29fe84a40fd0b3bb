"""The shared send-rate pacer (a GCRA in Redis) that every worker takes slots from."""

from __future__ import annotations

import itertools
import time
import uuid

import pytest
from redis import Redis

from dispatch.pacer import HEADROOM, Pacer
from dispatch.senders import OptOutGuard, SimulatorSender
from dispatch.services import Services


def unique(name: str) -> str:
    # Pacer keys outlive a test by a minute; a rerun on the same Redis must not meet them.
    return f"{name}-{uuid.uuid4().hex[:8]}"


def test_slots_are_one_interval_apart_per_segment(redis_client: Redis) -> None:
    pacer = Pacer(redis_client, rate=10, sender_id=unique("t1"))
    waits = pacer.reserve([1, 2, 1, 1])
    step = HEADROOM / 10
    # The second message takes two segments, so the third waits two intervals after it.
    assert waits[0] == pytest.approx(0, abs=0.01)
    assert [round(b - a, 3) for a, b in itertools.pairwise(waits)] == [
        round(step, 3),
        round(2 * step, 3),
        round(step, 3),
    ]


def test_workers_share_one_rate(redis_client: Redis) -> None:
    sender = unique("t2")
    first, second = (Pacer(redis_client, rate=50, sender_id=sender) for _ in range(2))
    a = first.reserve([1] * 25)
    b = second.reserve([1] * 25)
    assert b[0] == pytest.approx(a[-1] + HEADROOM / 50, abs=0.01)  # queued behind the first


def test_any_one_second_window_stays_within_the_rate(redis_client: Redis) -> None:
    rate = 50
    waits = Pacer(redis_client, rate=rate, sender_id=unique("t3")).reserve([1] * 500)
    for start in waits:
        in_window = sum(1 for w in waits if start <= w < start + 1.0)
        assert in_window <= rate


def test_senders_have_their_own_rates(redis_client: Redis) -> None:
    Pacer(redis_client, rate=1, sender_id=unique("t4")).reserve([1] * 10)
    assert Pacer(redis_client, rate=1, sender_id=unique("t5")).reserve([1])[0] == pytest.approx(
        0, abs=0.01
    )


def test_a_rate_must_be_positive(redis_client: Redis) -> None:
    with pytest.raises(ValueError, match="positive"):
        Pacer(redis_client, rate=0, sender_id=unique("t6"))


def test_pages_and_replies_take_slots_from_the_same_rate(
    services: Services, redis_client: Redis
) -> None:
    pacer = Pacer(redis_client, rate=5, sender_id=unique("t7"))
    guard = OptOutGuard(
        SimulatorSender(services.database, services.cipher, services.index),
        services.database,
        services.cipher,
        services.index,
        pacer,
    )
    started = time.monotonic()
    for _ in range(3):
        guard.send("+15035550177", "a page")
    assert time.monotonic() - started >= 2 * 0.2
