"""Latency: from a dispatcher's approval to the first request reaching Twilio.

One ``rapidresponse worker --no-scheduler`` (not burst: waiting on its queues, as in
production, with its housekeeping thread) is started and left to go idle. Then,
``REPEATS`` times: a one-recipient alert is drafted, and the time runs from just before
``approve_alert`` is called to the arrival of its request at the fake (both
``time.time()`` on this machine) -- target < 1 s. SEND_RATE=50, so the pacer is in the
path. The worker is stopped with SIGTERM (RQ's warm shutdown) at the end.
"""

from __future__ import annotations

import time

from rq import Worker

from bench.fast_twilio import FastTwilio
from bench.harness import (
    Stack,
    Workers,
    add_subscribers,
    delivery_statuses,
    draft_alert,
    heading,
    line,
    make_area,
    median_max,
    note,
    stack,
    worker_command,
)
from dispatch.alerts import approve_alert
from rapidresponse.models import DeliveryStatus

REPEATS = 5
TARGET = 1.0
TIMEOUT = 30.0


def run() -> None:
    heading(f"latency: approve_alert to first request at Twilio, idle worker, {REPEATS} runs")
    with FastTwilio() as fake, stack(fake.url, send_rate="50") as target:
        area = make_area(target, "cully")
        add_subscribers(target, 1, [area])
        with Workers(target) as workers:
            worker = workers.start(worker_command(burst=False))
            wait_idle(target, settle=2.0)
            latencies, approvals = [], []
            for _ in range(REPEATS):
                alert_id = draft_alert(target, [area])
                seen = fake.count()
                started = time.time()
                approve_alert(target.services, alert_id)
                approvals.append(time.time() - started)
                latencies.append(first_arrival(fake, seen) - started)
                _wait_sent(target, alert_id)
                wait_idle(target, settle=0.2)
            stopping = time.perf_counter()
            code = workers.stop(worker)
            stopped = time.perf_counter() - stopping
        median, worst = median_max(latencies)
        line("median", f"{median * 1e3:.0f} ms", f"< {TARGET * 1e3:.0f} ms", median < TARGET)
        line("max", f"{worst * 1e3:.0f} ms", f"< {TARGET * 1e3:.0f} ms", worst < TARGET)
        note(
            "each run (ms): "
            + ", ".join(f"{x * 1e3:.0f}" for x in latencies)
            + f"; approve_alert itself: {median_max(approvals)[0] * 1e3:.0f} ms median"
        )
        note(f"worker stopped by SIGTERM in {stopped:.2f} s, exit code {code}")
        if code:
            note(workers.log_tail())


def wait_idle(target: Stack, settle: float) -> None:
    """Until the worker is registered, idle and its queues are empty, for ``settle`` s."""
    deadline = time.monotonic() + TIMEOUT
    quiet_since: float | None = None
    redis = target.services.redis
    while time.monotonic() < deadline:
        workers = Worker.all(connection=redis)
        idle = bool(workers) and all(w.get_state() == "idle" for w in workers)
        busy = any(redis.llen(f"rq:queue:{name}") for name in ("alerts", "replies", "bulk"))
        if idle and not busy:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle:
                return
        else:
            quiet_since = None
        time.sleep(0.05)
    raise RuntimeError("latency: the worker never went idle")


def first_arrival(fake: FastTwilio, seen: int) -> float:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        records = fake.records(seen)
        if records:
            return records[0].at
        time.sleep(0.005)
    raise RuntimeError("latency: no request reached the fake")


def _wait_sent(target: Stack, alert_id: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if delivery_statuses(target, alert_id).get(DeliveryStatus.SENT):
            return
        time.sleep(0.05)
    raise RuntimeError("latency: the delivery was not recorded as sent")
