"""The rotating key that links a reporter's texts, kept only in the volatile Redis.

A reporter's number is never stored. To recognise "more detail for my report", to count
independent reporters and to rate-limit, we keep an HMAC of the number under a key that
lives only in the volatile Redis (see ``dispatch.volatile``: it never touches a disk) for
one window (REPORTER_WINDOW_MINUTES) plus the follow-up minutes, and then expires.
After that, nobody (not us, not someone holding every file of the server) can tell
whose report it was, even by trying every number; the hashes left in the database are
cleared by housekeeping when their window ends (``rapidresponse.reports``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from datetime import UTC, datetime, timedelta

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

KEY_PREFIX = "rr:reporter-key:"


class ReporterKeys:
    """One random key per window; a window's key dies ``afterlife`` after the window ends.

    Args:
        volatile: the Redis that keeps nothing on disk.
        window: how long one key is the current one.
        afterlife: how long it is still read after that (follow-ups across the boundary).
    """

    def __init__(self, volatile: Redis, window: timedelta, afterlife: timedelta) -> None:
        if window <= timedelta(0):
            raise ValueError("window: must be positive")
        self.volatile = volatile
        self.window_seconds = int(window.total_seconds())
        self.afterlife_seconds = int(afterlife.total_seconds())
        # Keys already read, by window, until their expiry: every text needs them, and
        # a window's key never changes once made. In this process's memory only, and
        # dropped when the key dies in Redis.
        self._known: dict[int, bytes | None] = {}

    @property
    def lifetime(self) -> timedelta:
        """The longest any link made with these keys can last."""
        return timedelta(seconds=self.window_seconds + self.afterlife_seconds)

    def hashes(self, value: str, now: datetime | None = None) -> tuple[str, ...]:
        """The current window's hash of ``value`` first, then the previous window's.

        Empty when the volatile Redis is unreachable: the report is still taken, just
        not linked.
        """
        timestamp = (now or datetime.now(UTC)).timestamp()
        current = self._window(timestamp)
        self._forget_dead_keys(timestamp)
        try:
            keys = [self._known_key(current, create=True)]
            # The previous window's key is read only while it lives: once its afterlife
            # is over, Redis has destroyed it, and asking again for every text costs a
            # round trip for nothing.
            if self.expiry(current - 1) > timestamp:
                keys.append(self._known_key(current - 1, create=False))
        except (RedisError, OSError) as error:
            log.warning("reporter keys unavailable (%s)", error.__class__.__name__)
            return ()
        return tuple(
            hmac.new(key, value.encode(), hashlib.sha256).hexdigest()
            for key in keys
            if key is not None
        )

    def _window(self, timestamp: float) -> int:
        return int(timestamp // self.window_seconds)

    def expiry(self, window: int) -> int:
        """When ``window``'s key is destroyed (Unix time)."""
        return (window + 1) * self.window_seconds + self.afterlife_seconds

    def _known_key(self, window: int, *, create: bool) -> bytes | None:
        if window in self._known:
            return self._known[window]
        key = self._key(window, create=create)
        if key is not None or not create:
            # A past window's missing key is never made later: remember that too.
            self._known[window] = key
        return key

    def _forget_dead_keys(self, timestamp: float) -> None:
        for window in [w for w in self._known if self.expiry(w) <= timestamp]:
            self._known.pop(window, None)

    def _key(self, window: int, *, create: bool) -> bytes | None:
        name = f"{KEY_PREFIX}{window}"
        if create:
            # The first process to need this window's key makes it; the others read it.
            self.volatile.set(name, os.urandom(32), nx=True, exat=self.expiry(window))
        value = self.volatile.get(name)
        return value if isinstance(value, bytes) else None
