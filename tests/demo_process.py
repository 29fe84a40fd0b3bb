"""`rapidresponse demo` as a newcomer runs it, in a subprocess, for the tests that need the
whole system: started on a free port in its own process group, ready once its banner
says so."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

READY_WITHIN_SECONDS = 90


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class DemoProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running_demo(folder: Path, **environment: str) -> Iterator[DemoProcess]:
    """The demo with INSTANCE_PATH under ``folder`` (plus ``environment``), until exit,
    when its whole process group gets SIGINT (SIGKILL if it lingers)."""
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(folder),
        "PYTHONUNBUFFERED": "1",
        "INSTANCE_PATH": str(folder / "instance"),
        **environment,
    }
    log = folder / "demo.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "web.cli",
                "demo",
                "--port",
                str(port),
                "--socket-port",
                str(free_port()),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    demo = DemoProcess(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + READY_WITHIN_SECONDS
        while "Press Ctrl-C" not in demo.output():
            assert process.poll() is None, demo.output()
            assert time.monotonic() < deadline, "the demo did not start"
            time.sleep(0.2)
        yield demo
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
