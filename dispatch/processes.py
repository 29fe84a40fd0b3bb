"""Child processes that never outlive us: redis-server, and demo's web and worker."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

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


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid``, read from /proc (Linux; elsewhere none)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:  # the field after the state is the parent's pid
            found.append(int(stat.parent.name))
    return found


def kill_descendants(pid: int | None = None) -> list[int]:
    """SIGKILL every process descended from ``pid`` (ours by default), deepest first.
    The pids killed."""
    killed: list[int] = []
    for child in children_of(os.getpid() if pid is None else pid):
        killed += kill_descendants(child)
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
            killed.append(child)
    return killed
