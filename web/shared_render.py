"""Board re-reads that cost one render however many boards ask, and never crowd out
the hotline.

Every hint makes every open board re-read its fragment. Fifty boards asking at once
used to render fifty times (every incident, every alert's counts, the map), slowing the
broadcast 5-6x and the webhooks with it. Now:

- ``SharedRender``: the fragment rendered for one board is served to every board of the
  same language until the record changes (a hint is published: ``live_version``) or
  ``MAX_AGE_SECONDS`` pass (ages on the page move on). One render at a time per
  language: the others wait for it instead of doing the same work.
- ``RenderGate``: at most ``RENDERS_AT_ONCE`` renders per web process; a re-read that
  cannot get a turn within ``TURN_WAIT_SECONDS`` is answered 503 with Retry-After, and
  board.js shows "Busy, retrying…" and backs off. The webhooks' threads stay free.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

RENDERS_AT_ONCE = 4
TURN_WAIT_SECONDS = 2.0
MAX_AGE_SECONDS = 5.0
RETRY_AFTER_SECONDS = 2
MAX_KEYS = 16  # renders kept: a few languages, and the keys of past area changes


class Busy(Exception):
    """No turn to render came in time: come back later."""


class RenderGate:
    """At most ``at_once`` board renders at a time in this process."""

    def __init__(self, at_once: int = RENDERS_AT_ONCE, wait: float = TURN_WAIT_SECONDS) -> None:
        self._turns = threading.BoundedSemaphore(at_once)
        self._wait = wait

    @contextmanager
    def turn(self) -> Iterator[None]:
        if not self._turns.acquire(timeout=self._wait):
            raise Busy
        try:
            yield
        finally:
            self._turns.release()


@dataclass(frozen=True)
class _Made:
    version: int
    at: float
    html: str


class SharedRender:
    """The last render of each key (a language), kept while its version is current."""

    def __init__(self, gate: RenderGate, max_age: float = MAX_AGE_SECONDS) -> None:
        self._gate = gate
        self._max_age = max_age
        self._made: dict[str, _Made] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: str, version: int | None, render: Callable[[], str]) -> str:
        """The render for ``key`` at ``version`` (None: unknown, so render afresh)."""
        if version is None:
            with self._gate.turn():
                return render()
        found = self._fresh(key, version)
        if found is not None:
            return found
        lock = self._lock_of(key)
        if not lock.acquire(timeout=TURN_WAIT_SECONDS):
            raise Busy
        try:
            found = self._fresh(key, version)  # made while we waited
            if found is not None:
                return found
            with self._gate.turn():
                html = render()
            with self._guard:
                self._made[key] = _Made(version, time.monotonic(), html)
                while len(self._made) > MAX_KEYS:  # keys a past area change left behind
                    del self._made[next(iter(self._made))]
            return html
        finally:
            lock.release()

    def _fresh(self, key: str, version: int) -> str | None:
        made = self._made.get(key)
        if made is None or made.version != version:
            return None
        return made.html if time.monotonic() - made.at < self._max_age else None

    def _lock_of(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())
