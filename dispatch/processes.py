"""Child processes that never outlive us: redis-server, and demo's web and worker."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # If our process is killed outright (kill -9), the kernel sends the child SIGTERM,
    # so nothing is left holding a socket, a port or an append-only file.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` for Popen that ties the child's life to ours (Linux only)."""
    return _die_with_parent if sys.platform.startswith("linux") else None


def stop_process(process: subprocess.Popen[bytes], name: str, timeout: float = 10.0) -> None:
    """SIGTERM (a clean shutdown), then SIGKILL if it is still there after ``timeout``."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s ignored SIGTERM for %.0fs; killing it", name, timeout)
        process.kill()
        process.wait()
