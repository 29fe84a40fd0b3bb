"""``python -m bench.maxrss CMD...``: run CMD, then print its and its descendants' peak RSS.

``ru_maxrss`` of ``RUSAGE_CHILDREN`` is a maximum over every child ever waited for, so
each measurement needs a process of its own: this one. A worker's forked work horses are
waited for by the worker, so their peaks count too. Prints ``maxrss_kib cpu_seconds`` on
the last line of stdout and exits with the command's status. SIGTERM is passed on.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from types import FrameType


def main(command: list[str]) -> int:
    child = subprocess.Popen(command)

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = child.wait()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"{usage.ru_maxrss} {usage.ru_utime + usage.ru_stime:.3f}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
