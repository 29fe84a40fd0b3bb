"""Pacing: two workers sharing SEND_RATE=50 segments per second, seen from the carrier.

One area with enough recipients for ``BENCH_PACING_SECONDS`` (default 60) plus a margin;
one in five reads Spanish, whose text is two segments (UCS-2, over 70 characters) so
that the pacer is seen counting segments rather than messages. Over the first
``BENCH_PACING_SECONDS`` of arrivals at the fake:

- the most segments in any one-second window, every request's arrival taken as a
  window start -- target <= 50;
- the average segments per second -- target within 5% of 50.
"""

from __future__ import annotations

import bisect
import itertools
import math
import time

from bench.fast_twilio import FastTwilio, Record
from bench.harness import (
    TEXTS,
    Workers,
    add_subscribers,
    draft_alert,
    env_int,
    heading,
    line,
    make_area,
    note,
    stack,
)
from dispatch.alerts import approve_alert
from dispatch.pacer import HEADROOM
from rapidresponse.sms import segment

RATE = 50
WORKERS = 2
SPANISH_EVERY = 5
# Two segments: 'á' makes it UCS-2, and UCS-2 fits 70 characters in one.
TWO_SEGMENTS = {
    "en": TEXTS["en"],
    "es": "ALERTA Cully: agentes de inmigración confirmados cerca de NE 42nd, 9:40am. "
    "Tiene derecho a guardar silencio. Responda DERECHOS.",
}


def run() -> None:
    seconds = env_int("BENCH_PACING_SECONDS", 60)
    per_message = {lang: segment(text).segments for lang, text in TWO_SEGMENTS.items()}
    average = (per_message["en"] * (SPANISH_EVERY - 1) + per_message["es"]) / SPANISH_EVERY
    # A margin of 10% and two seconds, so that the window is full of sending throughout.
    count = math.ceil((RATE * seconds * 1.1 + 2 * RATE) / average)
    heading(
        f"pacing: SEND_RATE={RATE}, {WORKERS} workers, {count:,} recipients "
        f"(en {per_message['en']} segment, es {per_message['es']}), first {seconds} s"
    )
    with FastTwilio() as fake, stack(fake.url, send_rate=str(RATE)) as target:
        area = make_area(target, "cully")
        add_subscribers(target, count, [area], spanish_every=SPANISH_EVERY)
        alert_id = draft_alert(target, [area], TWO_SEGMENTS)
        approve_alert(target.services, alert_id)
        with Workers(target) as workers:
            for _ in range(WORKERS):
                workers.start()
            _wait_for_window(fake, seconds)
        report(fake.records(), seconds)


def _wait_for_window(fake: FastTwilio, seconds: int) -> None:
    """Until ``seconds`` have passed since the first request (the rest is not measured)."""
    deadline = time.monotonic() + 120
    first: float | None = None
    while time.monotonic() < deadline:
        if first is None:
            records = fake.records()
            first = records[0].at if records else None
        elif time.time() > first + seconds + 0.5:
            return
        time.sleep(0.2)
    raise RuntimeError("pacing: no requests reached the fake")


def report(records: list[Record], seconds: int) -> None:
    start = records[0].at
    window = [r for r in records if r.at < start + seconds]
    times = [r.at for r in window]
    counts = [r.segments for r in window]
    running = [0]
    for n in counts:
        running.append(running[-1] + n)
    per_window = [
        running[bisect.bisect_left(times, at + 1.0)] - running[i] for i, at in enumerate(times)
    ]
    busiest = max(per_window)
    over = sum(1 for n in per_window if n > RATE)
    closest = min((b - a for a, b in itertools.pairwise(times)), default=0.0)
    total = running[-1]
    average = total / seconds
    line(
        "most segments in any 1 s window",
        f"{busiest} segments",
        f"<= {RATE}",
        busiest <= RATE,
    )
    line(
        "average segments/s",
        f"{average:.2f} /s",
        f"{RATE} +-5%",
        abs(average - RATE) <= 0.05 * RATE,
    )
    note(
        f"{len(window):,} messages, {total:,} segments in the first {seconds} s "
        f"({len(window) / seconds:.1f} messages/s); {over} windows over {RATE}"
    )
    note(
        f"closest two requests {closest * 1e3:.1f} ms apart "
        f"(the pacer spaces segments {1e3 * HEADROOM / RATE:.1f} ms apart)"
    )
