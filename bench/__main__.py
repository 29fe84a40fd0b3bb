"""``make bench`` (``python -m bench [crypto|latency|throughput|pacing|nearest|scale|...]``).

Figures for the broadcast engine and the hotline (``inbound``), each against its target
(PASS/MISS; nothing is asserted). Real ``rapidresponse worker`` processes, embedded Redis,
SQLite and (when reachable, see ``bench.harness``) PostgreSQL, and ``bench.fast_twilio``
standing in for Twilio. Run on a noisy 2-core machine: compare figures within one run.

Knobs: BENCH_N (throughput recipients, 20,000), BENCH_PACING_SECONDS (60),
BENCH_NEAREST_N (5,000), BENCH_SCALE_N (100,000), BENCH_PROGRESS_N (1,000,000),
BENCH_STATEWIDE_N (1,000,000), BENCH_INBOUND_REQUESTS (1,500 per run),
BENCH_DATABASE_URL (a PostgreSQL database whose name contains "bench", or "none").
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

from bench import (
    crypto,
    inbound,
    latency,
    nearest,
    pacing,
    progress,
    scale,
    statewide,
    throughput,
    webtier,
)
from bench.harness import machine

BENCHMARKS: dict[str, Callable[[], None]] = {
    "crypto": crypto.run,
    "latency": latency.run,
    "throughput": throughput.run,
    "pacing": pacing.run,
    "nearest": nearest.run,
    "scale": scale.run,
    "progress": progress.run,
    "statewide": statewide.run,
    "inbound": inbound.run,
    "webtier": webtier.run,
}


def _terminated(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwind, so every worker, fake and temp folder is cleaned up


def main(argv: list[str]) -> int:
    names = argv or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"usage: python -m bench [{'|'.join(BENCHMARKS)} ...] (unknown: {unknown[0]})")
        return 2
    signal.signal(signal.SIGTERM, _terminated)
    print(machine(), flush=True)
    started = time.perf_counter()
    try:
        for name in names:
            BENCHMARKS[name]()
    except KeyboardInterrupt:
        print("\ninterrupted; everything started was stopped", flush=True)
        return 130
    print(f"\ntotal {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
