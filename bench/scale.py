"""Scale: the ledger write for 100,000 recipients, and worker memory that stays flat.

- ``approve()`` (the transaction that writes one Delivery row per recipient, commit
  included) for one area of ``BENCH_SCALE_N`` (default 100,000) confirmed subscribers,
  on SQLite and on PostgreSQL -- target < 10 s each.
- Worker memory: a broadcast to a tenth of them, then to all of them, each sent by one
  ``worker --burst`` (SEND_RATE=unlimited, to the fast fake) in a process of its own
  (``bench.maxrss``), so that each peak RSS (worker and work horses) is its own. Flat
  means the ratio stays near 1.0x: a job holds one batch, never the whole audience.
"""

from __future__ import annotations

import sys
import time

from bench.fast_twilio import FastTwilio
from bench.harness import (
    Stack,
    Workers,
    add_subscribers,
    approve_timed,
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
)
from dispatch.alerts import approve_alert
from dispatch.broadcast import enqueue_batches, job_timeout
from rapidresponse.models import DeliveryStatus

APPROVE_TARGET = 10.0
FLAT_TARGET = 1.10


def run() -> None:
    count = env_int("BENCH_SCALE_N", 100_000)
    small = max(1, count // 10)
    heading(f"scale: {count:,} confirmed subscribers in one area")
    url, why = postgres_url()
    with FastTwilio() as fake:
        with stack(fake.url, send_rate="unlimited") as target:
            big_area, small_area = make_area(target, "everyone"), make_area(target, "tenth")
            ids = add_subscribers(target, count, [big_area])
            subscribe(target, (ids[0], ids[0] + small - 1), [small_area])

            small_alert = draft_alert(target, [small_area])
            approve_alert(target.services, small_alert)
            small_rss = send_measured(target, small_alert, small)

            big_alert = draft_alert(target, [big_area])
            approval, seconds = approve_timed(target, big_alert)
            report_approve(target, approval.recipients, seconds)
            enqueue_batches(
                target.services.redis,
                big_alert,
                range(approval.batches),
                job_timeout(target.services),
            )
            big_rss = send_measured(target, big_alert, count)
        ratio = big_rss / small_rss
        line(f"worker peak RSS, {small:,} recipients", f"{small_rss / 1024:.1f} MiB")
        line(f"worker peak RSS, {count:,} recipients", f"{big_rss / 1024:.1f} MiB")
        line("ratio (flat = 1.0x)", f"{ratio:.2f}x", f"<= {FLAT_TARGET:.2f}x", ratio <= FLAT_TARGET)
    if url is None:
        note(f"PostgreSQL: skipped ({why})")
        return
    with stack("http://127.0.0.1:9", send_rate="unlimited", database_url=url) as target:
        area = make_area(target, "everyone")
        add_subscribers(target, count, [area])
        approval, seconds = approve_timed(target, draft_alert(target, [area]))
        report_approve(target, approval.recipients, seconds)


def report_approve(target: Stack, recipients: int, seconds: float) -> None:
    line(
        f"approve() {recipients:,} rows, {target.dialect}",
        f"{seconds:.2f} s",
        f"< {APPROVE_TARGET:g} s",
        seconds < APPROVE_TARGET,
    )


def send_measured(target: Stack, alert_id: int, count: int) -> int:
    """Send the alert with one burst worker in a process of its own; its peak RSS in KiB."""
    with Workers(target) as workers:
        started = time.perf_counter()
        workers.start([sys.executable, "-m", "bench.maxrss", *worker_command()])
        code = workers.wait(timeout=900)[0]
        wall = time.perf_counter() - started
        last = workers.log_tail(1).splitlines()[-1].split()
    sent = delivery_statuses(target, alert_id).get(DeliveryStatus.SENT, 0)
    if code or sent != count:
        note(f"worker exit code {code}, {sent:,}/{count:,} sent\n{workers.log_tail()}")
    rss, cpu = int(last[0]), float(last[1])
    note(
        f"{count:,} recipients: one burst worker, {wall:.1f} s, {count / wall:,.0f} messages/s, "
        f"{cpu / count * 1e3:.3f} ms CPU per message, {sent:,} sent"
    )
    return rss
