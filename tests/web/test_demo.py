"""``rapidresponse demo`` on embedded defaults: healthy within 60 s, and Ctrl-C leaves nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HEALTHY_WITHIN_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children start their own sessions, so walk ppids)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier}
        found |= frontier
    return found


def alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "State:\tZ" not in status.read_text()
    except OSError:
        return False


def healthz(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return int(response.status)
    except OSError:
        return None


def test_demo_comes_up_healthy_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "INSTANCE_PATH": str(tmp_path / "instance"),
    }  # no REDIS_URL, no DATABASE_URL
    log = (tmp_path / "demo.log").open("w+")
    started = time.monotonic()
    # Its own process group, so that Ctrl-C can be sent the way a terminal sends it: to
    # every process in the foreground group at once.
    demo = subprocess.Popen(
        [sys.executable, "-m", "web.cli", "demo", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        while healthz(f"http://127.0.0.1:{port}/healthz") != 200:
            assert demo.poll() is None, "the demo exited"
            assert time.monotonic() - started < HEALTHY_WITHIN_SECONDS, "not healthy in time"
            time.sleep(0.25)
        running = descendants(demo.pid)
        names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in running}
        assert "redis-server" in names
        while "password:" not in (tmp_path / "demo.log").read_text():
            assert time.monotonic() - started < HEALTHY_WITHIN_SECONDS
            time.sleep(0.1)

        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=40) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        log.close()
    output = (tmp_path / "demo.log").read_text()
    assert "coordinator@demo.rapidresponse.example" in output
    assert f"http://127.0.0.1:{port}/" in output
    assert "Traceback" not in output  # Redis outlived the processes that still used it
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in running if alive(pid)], "processes left running"
    assert not (tmp_path / "instance" / "redis" / "redis.sock").exists()
