"""Throughput: how fast two burst workers hand a broadcast over to Twilio, and at what CPU.

SEND_RATE=unlimited, one area of ``BENCH_N`` recipients (default 20,000; one in five
Spanish), approved with ``approve_alert``; then two ``rapidresponse worker --burst``
processes at once. Figures:

- worker CPU per message: user + system of the workers and their forked work horses
  (``RUSAGE_CHILDREN`` around them), start-up included -- target <= 1 ms; also shown
  less the start-up of a burst worker that finds nothing to do (measured first);
- messages per second handed over: N / (last - first arrival at the fake) -- target
  >= 1,000;
- wall time from starting the workers to both exiting; the fake's own CPU per request.

Checks that every delivery got exactly one request and that every row is ``sent``.
"""

from __future__ import annotations

import time
from collections import Counter

from bench.fast_twilio import FastTwilio
from bench.harness import (
    Stack,
    Workers,
    add_subscribers,
    children_cpu,
    delivery_ids,
    delivery_statuses,
    draft_alert,
    env_int,
    heading,
    line,
    make_area,
    note,
    postgres_url,
    row_versions,
    stack,
)
from dispatch.alerts import approve_alert
from rapidresponse.models import DeliveryStatus

WORKERS = 2
CPU_TARGET_MS = 1.0
RATE_TARGET = 1_000.0
VERSIONS_TARGET = 3  # issue 19: created, in flight, final


def run() -> None:
    count = env_int("BENCH_N", 20_000)
    heading(f"throughput: {count:,} recipients, SEND_RATE=unlimited, {WORKERS} burst workers")
    url, why = postgres_url()
    with FastTwilio() as fake:
        with stack(fake.url, send_rate="unlimited") as target:
            measure(target, fake, count)
        if url is None:
            note(f"PostgreSQL: skipped ({why})")
            return
        with stack(fake.url, send_rate="unlimited", database_url=url) as target:
            measure(target, fake, count)


def measure(target: Stack, fake: FastTwilio, count: int) -> None:
    note(f"[{target.dialect}]")
    area = make_area(target, "cully")
    add_subscribers(target, count, [area], spanish_every=5)
    alert_id = draft_alert(target, [area])
    startup = idle_worker_cpu(target)
    offset, fake_cpu = fake.stats()
    versions_before = row_versions(target)

    started = time.perf_counter()
    approval = approve_alert(target.services, alert_id)
    approve_seconds = time.perf_counter() - started
    with Workers(target) as workers:
        cpu_before, started = children_cpu(), time.perf_counter()
        for _ in range(WORKERS):
            workers.start()
        codes = workers.wait(timeout=600)
        wall = time.perf_counter() - started
        cpu = children_cpu() - cpu_before
        if any(codes):
            note(f"worker exit codes {codes}\n{workers.log_tail()}")

    records = fake.records(offset)
    fake_ms = (fake.stats()[1] - fake_cpu) / max(1, len(records)) * 1e3
    per_message_ms = cpu / count * 1e3
    steady_ms = (cpu - WORKERS * startup) / count * 1e3
    span = records[-1].at - records[0].at if len(records) > 1 else 0.0
    rate = len(records) / span if span else 0.0
    line("approve_alert (ledger + enqueue)", f"{approve_seconds:.2f} s, {approval.batches} jobs")
    line(
        "worker CPU per message",
        f"{per_message_ms:.3f} ms",
        f"<= {CPU_TARGET_MS:g} ms",
        per_message_ms <= CPU_TARGET_MS,
    )
    line(f"  less start-up ({WORKERS} x {startup:.2f} s, idle worker)", f"{steady_ms:.3f} ms")
    line(
        "messages/s handed over (first..last request)",
        f"{rate:,.0f} /s",
        f">= {RATE_TARGET:,.0f}/s",
        rate >= RATE_TARGET,
    )
    line("wall time, worker start to exit", f"{wall:.1f} s ({count / wall:,.0f}/s)")
    line("fake Twilio CPU per request (for comparison)", f"{fake_ms:.3f} ms")
    check(target, alert_id, count, [r.delivery for r in records])
    versions_after = row_versions(target)
    if versions_before is not None and versions_after is not None:
        per_row = (versions_after - versions_before) / count
        line(
            "row versions per delivery (ledger to sent)",
            f"{per_row:.2f}",
            f"<= {VERSIONS_TARGET}",
            per_row <= VERSIONS_TARGET,
        )


def idle_worker_cpu(target: Stack) -> float:
    """CPU seconds of one burst worker that finds nothing to do: its fixed start-up cost."""
    with Workers(target) as workers:
        before = children_cpu()
        workers.start()
        workers.wait(timeout=120)
        return children_cpu() - before


def check(target: Stack, alert_id: int, count: int, requested: list[str]) -> None:
    expected = delivery_ids(target, alert_id)
    seen = Counter(requested)
    twice = sum(1 for n in seen.values() if n > 1)
    missing = len(expected - seen.keys())
    stray = len(seen.keys() - expected)
    statuses = delivery_statuses(target, alert_id)
    sent = statuses.get(DeliveryStatus.SENT, 0)
    ok = twice == 0 and missing == 0 and stray == 0 and sent == count == len(expected)
    others = {s.value: n for s, n in statuses.items() if s is not DeliveryStatus.SENT}
    line(
        "every delivery requested exactly once, all sent",
        f"{sent:,}/{count:,} sent",
        "",
        ok,
    )
    if not ok:
        note(f"requested twice {twice}, never {missing}, unknown {stray}; other rows {others}")
