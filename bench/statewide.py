"""A statewide alert: from approval to the first request at Twilio, at 100,000 and at
1,000,000 recipients.

``BENCH_STATEWIDE_N`` (default 1,000,000) confirmed subscribers in one area, a tenth of
them also in a second; on SQLite and on PostgreSQL. Two ``rapidresponse worker`` (not
burst, idle on their queues as in production) wait; an alert to the tenth, then one to
everyone, is approved with ``approve_alert`` and the time runs from just before the call
to the arrival of the first request at the fake (both ``time.time()``) -- target < 1 s
each. The approval writes the first segment only (``broadcast.FIRST_SEGMENT_ROWS``);
ledger jobs write the rest behind the batches they enqueue. Then the workers are
stopped, and the rest of the big ledger is written in this process, timed, for the
rate a ledger job writes at (rows per second, segments of LEDGER_SEGMENT_ROWS).
"""

from __future__ import annotations

import sys
import time

from bench.fast_twilio import FastTwilio
from bench.harness import (
    Stack,
    Workers,
    add_subscribers,
    delivery_statuses,
    draft_alert,
    env_int,
    heading,
    line,
    make_area,
    note,
    postgres_url,
    stack,
    subscribe,
    worker_command,
    write_rest_of_ledger,
)
from bench.latency import first_arrival, wait_idle
from bench.scale import FLAT_TARGET, send_measured
from dispatch.alerts import approve_alert
from dispatch.ledger import enqueue_ledger
from dispatch.queues import QueueName
from rapidresponse.models import Alert, DeliveryStatus

TARGET = 1.0  # seconds from approval to the first request at the provider
SMALL = 10_000  # the small alert of the memory comparison
MEMORY_SECONDS = 60  # the worker's time on the big alert


def run() -> None:
    count = env_int("BENCH_STATEWIDE_N", 1_000_000)
    heading(f"statewide: approval to first request at {count // 10:,} and {count:,} recipients")
    with FastTwilio() as fake:
        with stack(fake.url, send_rate="unlimited") as target:
            measure(target, fake, count)
        url, why = postgres_url()
        if url is None:
            note(f"PostgreSQL: skipped ({why})")
            return
        with stack(fake.url, send_rate="unlimited", database_url=url) as target:
            measure(target, fake, count)


def measure(target: Stack, fake: FastTwilio, count: int) -> None:
    everyone, tenth = make_area(target, "everyone"), make_area(target, "tenth")
    ids = add_subscribers(target, count, [everyone])
    subscribe(target, (ids[0], ids[0] + count // 10 - 1), [tenth])
    big = 0
    with Workers(target) as workers:
        for _ in range(2):
            workers.start(worker_command(burst=False))
        for area, recipients in ((tenth, count // 10), (everyone, count)):
            wait_idle(target, settle=1.0)
            alert_id = draft_alert(target, [area])
            seen = fake.count()
            started = time.time()
            approval = approve_alert(target.services, alert_id)
            approved = time.time() - started
            first = first_arrival(fake, seen) - started
            line(
                f"approval -> first request, {recipients:,} recipients, {target.dialect}",
                f"{first * 1e3:.0f} ms",
                f"< {TARGET * 1e3:.0f} ms",
                first < TARGET,
            )
            note(
                f"approve_alert itself {approved * 1e3:.0f} ms, "
                f"{approval.recipients:,} rows written with it"
            )
            big = alert_id
            _cancel_rest(target)
    worker_memory(target, big, ids)
    started = time.perf_counter()
    rows, _ = write_rest_of_ledger(target, big)
    seconds = time.perf_counter() - started
    if rows:
        line(f"ledger jobs' write rate, {target.dialect}", f"{rows / seconds:,.0f} rows/s")
        note(f"the other {rows:,} rows of the big ledger in {seconds:.1f} s")


def _cancel_rest(target: Stack) -> None:
    """Empty the queues: the next measurement starts with idle workers."""
    redis = target.services.redis
    for name in ("alerts", "bulk"):
        redis.delete(f"rq:queue:{name}")


def worker_memory(target: Stack, big: int, ids: tuple[int, int]) -> None:
    """Peak RSS of one worker (and its work horses): sending a 10,000-recipient alert
    whole, then writing and sending the million-recipient one for MEMORY_SECONDS."""
    small_area = make_area(target, "small")
    subscribe(target, (ids[0], ids[0] + SMALL - 1), [small_area])
    small = draft_alert(target, [small_area])
    approve_alert(target.services, small)
    small_rss = send_measured(target, small, SMALL)
    enqueue_ledger(target.services.redis, big, QueueName.ALERTS)
    with Workers(target) as workers:
        worker = workers.start([sys.executable, "-m", "bench.maxrss", *worker_command()])
        time.sleep(MEMORY_SECONDS)
        workers.stop(worker, timeout=60)
        big_rss = int(workers.log_tail(1).splitlines()[-1].split()[0])
    with target.services.database.session() as session:
        written = session.get_one(Alert, big).recipient_count
    sent = delivery_statuses(target, big).get(DeliveryStatus.SENT, 0)
    ratio = big_rss / small_rss
    line(f"worker peak RSS, {SMALL:,} recipients, {target.dialect}", f"{small_rss / 1024:.1f} MiB")
    line(
        f"worker peak RSS, the {ids[1] - ids[0] + 1:,}-recipient alert, {target.dialect}",
        f"{big_rss / 1024:.1f} MiB",
    )
    note(f"in {MEMORY_SECONDS} s it wrote the ledger to {written:,} rows and sent {sent:,}")
    line("ratio (flat = 1.0x)", f"{ratio:.2f}x", f"<= {FLAT_TARGET:.2f}x", ratio <= FLAT_TARGET)
