"""``rapidresponse web`` starts the boards' socket server as a child and keeps it running."""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

from dispatch.processes import die_with_parent_hook, stop_process

log = logging.getLogger(__name__)

RESTART_PAUSE_SECONDS = 1.0  # then twice as long each time it dies again, up to a minute
MAX_RESTART_PAUSE_SECONDS = 60.0


def socket_origin(public_url: str, port: int) -> str:
    """Where browsers reach a socket server on ``port`` of the host they know us by."""
    parts = urlsplit(public_url)
    host = parts.hostname or "127.0.0.1"
    return f"{parts.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


class SocketServerChild:
    """``rapidresponse sockets`` as our child: restarted if it dies, stopped with us."""

    def __init__(self, host: str, port: int) -> None:
        self.arguments = ["--host", host, "--port", str(port)]
        self.owner = os.getpid()  # gunicorn forks web processes: only we stop the child
        self.stopping = threading.Event()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = self._spawn()
        threading.Thread(target=self._keep_running, name="sockets-child", daemon=True).start()
        atexit.register(self.stop)

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "web.cli", "sockets", *self.arguments],
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent_hook(),
        )

    def _keep_running(self) -> None:
        pause = RESTART_PAUSE_SECONDS
        while not self.stopping.is_set():
            assert self.process is not None
            started = time.monotonic()
            status = self.process.wait()
            if time.monotonic() - started > MAX_RESTART_PAUSE_SECONDS:
                pause = RESTART_PAUSE_SECONDS  # it had been running well: a fresh failure
            if self.stopping.wait(pause):
                return
            log.error("the socket server exited (status %s); starting it again", status)
            pause = min(2 * pause, MAX_RESTART_PAUSE_SECONDS)
            self.process = self._spawn()

    def stop(self) -> None:
        if os.getpid() != self.owner or self.process is None:
            return
        self.stopping.set()
        stop_process(self.process, "sockets", timeout=10.0)
