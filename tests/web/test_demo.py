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

from rapidresponse.regions import demo_region_path, load_region_file
from tests.demo_process import free_port
from web.demo import DEMO_RESPONDERS, port_is_free

pytestmark = pytest.mark.slow

HEALTHY_WITHIN_SECONDS = 60


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


def process_name(pid: int) -> str | None:
    """The process's command name; None if it has ended."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


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
        # Its socket port chosen free too: the default (port + 1) may be any other
        # process's on a busy CI machine (the default is tested beside a taken port below).
        [sys.executable, "-m", "web.cli", "demo", "--port", str(port), *socket_port()],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        while healthz(f"http://127.0.0.1:{port}/healthz") != 200:
            assert demo.poll() is None, "the demo exited:\n" + (tmp_path / "demo.log").read_text()
            assert time.monotonic() - started < HEALTHY_WITHIN_SECONDS, "not healthy in time"
            time.sleep(0.25)
        running = descendants(demo.pid)
        # A job's work horse may end between the listing and the reading: skip it.
        names = {name for name in map(process_name, running) if name is not None}
        assert "redis-server" in names
        while "Press Ctrl-C" not in (tmp_path / "demo.log").read_text():
            assert time.monotonic() - started < HEALTHY_WITHIN_SECONDS
            time.sleep(0.1)
        banner = (tmp_path / "demo.log").read_text()
        saved = tmp_path / "instance" / "demo-login.txt"
        assert saved.stat().st_mode & 0o777 == 0o600  # it holds the password
        shown_again = subprocess.run(
            [sys.executable, "-m", "web.cli", "demo", "--show-login"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert password_of(banner) and password_of(banner) == password_of(shown_again)
        assert "otpauth://totp/" in shown_again

        os.killpg(demo.pid, signal.SIGINT)
        assert demo.wait(timeout=40) == 0
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        log.close()
    output = (tmp_path / "demo.log").read_text()
    assert "coordinator@demo.rapidresponse.example" in output
    for page in ("/board", "/login", "/simulator/phone", "/simulator/outbox", "/report"):
        assert f"http://127.0.0.1:{port}{page}" in output
    region = {area.slug: area.name for area in load_region_file(demo_region_path())}
    for person in DEMO_RESPONDERS:  # who to act as, with what number, for which areas
        line = next(line for line in output.splitlines() if person.name in line)
        assert person.phone in line
        assert all(region[slug] in line for slug in person.areas), line
    assert "authenticator app" in output and "otpauth://totp/" in output
    assert "Not safe against seizure" in output  # development mode keeps its keys on disk
    assert "█" in output  # the enrolment as a QR code a phone can scan from the terminal
    # Quiet by default: no INFO lines from the web server or the worker (LOG_LEVEL=info).
    assert not [line for line in output.splitlines() if " INFO " in line]
    assert "Traceback" not in output  # Redis outlived the processes that still used it
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in running) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in running if alive(pid)], "processes left running"
    assert not (tmp_path / "instance" / "redis" / "redis.sock").exists()


def socket_port() -> list[str]:
    return ["--socket-port", str(free_port())]


def password_of(banner: str) -> str | None:
    line = next((line for line in banner.splitlines() if "password:" in line), None)
    return None if line is None else line.split("password:", 1)[1].strip()


def demo_beside_a_taken_port(
    tmp_path: Path, port_from_taken: int
) -> tuple[int, subprocess.CompletedProcess[str]]:
    """``rapidresponse demo --port (taken + port_from_taken)`` while a port is taken (and
    the demo's own port, when it is another, is free)."""
    for _ in range(50):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            busy = taken.getsockname()[1]
            if port_from_taken and not port_is_free("127.0.0.1", busy + port_from_taken):
                continue
            result = subprocess.run(
                [sys.executable, "-m", "web.cli", "demo", "--port", str(busy + port_from_taken)],
                env={
                    "PATH": os.environ["PATH"],
                    "HOME": str(tmp_path),
                    "INSTANCE_PATH": str(tmp_path / "instance"),
                },
                capture_output=True,
                text=True,
                timeout=60,
            )
        return busy, result
    pytest.fail("no free port next to a taken one in 50 tries")


def make_demo_dry_run(*variables: str) -> str:
    root = Path(__file__).resolve().parents[2]
    dry_run = subprocess.run(
        ["make", "-n", "-o", ".venv/.installed", "demo", *variables],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return " ".join(dry_run.split())


def test_a_busy_port_is_explained_in_one_line(tmp_path: Path) -> None:
    port, result = demo_beside_a_taken_port(tmp_path, 0)
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"rapidresponse: port {port} is in use — try `make demo PORT=")
    assert "Connection in use" not in result.stderr and "Traceback" not in result.stderr


def test_make_demo_takes_a_port_and_a_host() -> None:
    assert "rapidresponse demo --port 5150 --host 0.0.0.0" in make_demo_dry_run(
        "PORT=5150", "HOST=0.0.0.0"
    )


def test_a_busy_socket_port_is_explained_in_one_line(tmp_path: Path) -> None:
    """The board's live updates take the next port: that one busy is said as plainly."""
    busy, result = demo_beside_a_taken_port(tmp_path, -1)
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"rapidresponse: port {busy} (the board's live updates) is in use")
    assert "--socket-port" in lines[0] and "Traceback" not in result.stderr


def test_make_demo_takes_a_socket_port() -> None:
    dry_run = make_demo_dry_run("PORT=5150", "SOCKET_PORT=6150")
    assert "rapidresponse demo --port 5150 --socket-port 6150 " in f"{dry_run} "
