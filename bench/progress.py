"""Progress of a large alert: read from the kept counters, beside counting its deliveries.

For one alert to ``BENCH_PROGRESS_N`` (default 1,000,000) recipients, on SQLite and on
PostgreSQL: the ledger written by ``approve()`` (the database's triggers move the
counters as the rows go in), a tenth of the rows marked sent 50 at a time in their own
transactions as a worker does, then the alert's progress read from the counters
(``broadcast.progress``, target < 5 ms) and counted from the deliveries as it was before
(``GROUP BY status``). The two must agree. Last, what the triggers cost: the same marks
and the same ledger with the triggers dropped, in the same run. On PostgreSQL also the
disk a delivery takes (its row and its indexes) right after the ledger.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy import select, text, update

from bench.harness import (
    Stack,
    add_subscribers,
    approve_timed,
    draft_alert,
    env_int,
    heading,
    line,
    make_area,
    note,
    postgres_url,
    stack,
)
from rapidresponse import broadcast
from rapidresponse.models import Delivery, DeliveryStatus

READ_TARGET = 0.005  # seconds
READS = 200
CHUNK = 50  # rows a worker marks per statement


def run() -> None:
    count = env_int("BENCH_PROGRESS_N", 1_000_000)
    heading(f"progress: one alert to {count:,} recipients")
    measure(stack("http://127.0.0.1:9", send_rate="unlimited"), count)
    url, why = postgres_url()
    if url is None:
        note(f"PostgreSQL: skipped ({why})")
        return
    measure(stack("http://127.0.0.1:9", send_rate="unlimited", database_url=url), count)


def measure(context: AbstractContextManager[Stack], count: int) -> None:
    with context as target:
        dialect = target.dialect
        area = make_area(target, "everyone")
        add_subscribers(target, count, [area])
        alert_id = draft_alert(target, [area])
        approval, ledger_seconds = approve_timed(target, alert_id)
        line(f"approve() {approval.recipients:,} rows, {dialect}", f"{ledger_seconds:.2f} s")
        if dialect == "postgresql":
            line("disk per delivery (table + indexes), postgresql", disk_per_row(target, count))
        marks = mark_sent(target, alert_id, count // 10)
        with target.services.database.reading() as session:
            reads = timed(lambda: broadcast.progress(session, alert_id), READS)
            kept = broadcast.progress(session, alert_id)
            counting = timed(lambda: broadcast.counted_progress(session, alert_id), 3)
            counted = broadcast.counted_progress(session, alert_id)
        p50, p95 = statistics.median(reads), percentile(reads, 0.95)
        line(
            f"progress read, {dialect}: p50 / p95",
            f"{p50 * 1e3:.2f} / {p95 * 1e3:.2f} ms",
            f"< {READ_TARGET * 1e3:g} ms",
            p95 < READ_TARGET,
        )
        line(
            f"counting the deliveries instead, {dialect}",
            f"{statistics.median(counting) * 1e3:,.0f} ms",
        )
        line("kept counts equal the deliveries counted", "yes" if kept == counted else "NO")
        drop_triggers(target)
        bare_marks = mark_sent(target, alert_id, count // 10)
        _, bare_seconds = approve_timed(target, draft_alert(target, [area]))
        line(
            f"a {CHUNK}-row mark, {dialect}: triggers vs none",
            f"{statistics.median(marks) * 1e3:.2f} vs {statistics.median(bare_marks) * 1e3:.2f} ms",
        )
        line(
            f"the ledger, {dialect}: triggers vs none",
            f"{ledger_seconds:.2f} vs {bare_seconds:.2f} s ({ledger_seconds / bare_seconds:.2f}x)",
        )


def mark_sent(target: Stack, alert_id: int, rows: int) -> list[float]:
    """Mark ``rows`` pending deliveries sent, CHUNK per transaction; each one's seconds."""
    database = target.services.database
    seconds = []
    for _ in range(rows // CHUNK):
        started = time.perf_counter()
        with database.session() as session:
            chunk = (
                select(Delivery.id)
                .where(Delivery.alert_id == alert_id, Delivery.status == DeliveryStatus.PENDING)
                .limit(CHUNK)
            )
            session.execute(
                update(Delivery)
                .where(Delivery.id.in_(chunk.scalar_subquery()))
                .values(status=DeliveryStatus.SENT)
                .execution_options(synchronize_session=False)
            )
        seconds.append(time.perf_counter() - started)
    return seconds


def disk_per_row(target: Stack, count: int) -> str:
    """Bytes of the deliveries table and its indexes per row, right after the ledger,
    and each one's share."""
    with target.services.database.session() as session:
        size = int(session.scalar(text("SELECT pg_total_relation_size('deliveries')")) or 0)
        parts = session.execute(
            text(
                "SELECT 'table', pg_relation_size('deliveries') UNION ALL "
                "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) "
                "FROM pg_index WHERE indrelid = 'deliveries'::regclass ORDER BY 2 DESC"
            )
        ).all()
    shares = ", ".join(f"{name} {int(bytes_) / count:,.0f}" for name, bytes_ in parts)
    return f"{size / count:,.0f} bytes ({size / 2**20:,.0f} MiB): {shares}"


def drop_triggers(target: Stack) -> None:
    """Only at the end of a run, on its own throw-away database: the counters stop."""
    on_table = " ON deliveries" if target.dialect == "postgresql" else ""
    with target.services.database.session() as session:
        for event in ("insert", "update", "delete"):
            session.execute(text(f"DROP TRIGGER deliveries_progress_{event}{on_table}"))


def timed(read: Callable[[], object], times: int) -> list[float]:
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        read()
        seconds.append(time.perf_counter() - started)
    return seconds


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
