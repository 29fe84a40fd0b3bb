"""Board re-reads that cost one render however many boards ask, and never crowd out
the hotline.

Every hint makes every open board re-read its fragment. Fifty boards asking at once
used to render fifty times (every incident, every alert's counts, the map), slowing the
broadcast 5-6x and the webhooks with it. Now:

- ``SharedRender``: the fragment rendered for one board is served to every board of the
  same language until the record changes (a hint is published: ``live_version``) or
  ``MAX_AGE_SECONDS`` pass (ages on the page move on). One render at a time per
  language: the others wait for it instead of doing the same work. A board re-reading
  after a hint says which (``X-Live-Version``, the count the hint carried): any render
  made since serves it, so that reports arriving many a second do not make every
  re-read wait for a render of its own.
- ``RenderGate``: at most ``RENDERS_AT_ONCE`` renders per web process; a re-read that
  cannot get a turn within ``TURN_WAIT_SECONDS`` is answered 503 with Retry-After, and
  board.js shows "Busy, retrying…" and backs off. The webhooks' threads stay free.
- ``shape_tag``: each render's ETag, a hash of the fragment with its broadcast counts
  left out. The counts reach every board on the socket (``alert_progress``, drawn in
  place by board.js), so a board whose tag is current has the record: its re-read is
  answered 304 before Flask (``web.live_reread``). A hint that changes nothing but
  counts (a broadcast's progress, every second) then costs each board a few bytes.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from werkzeug.http import parse_etags

RENDERS_AT_ONCE = 4
TURN_WAIT_SECONDS = 2.0
MAX_AGE_SECONDS = 5.0
RETRY_AFTER_SECONDS = 2
MAX_KEYS = 16  # renders kept: a few languages, and the keys of past area changes
LIVE_CACHE_CONTROL = "no-store"  # the fragment is the record; no cache keeps it


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


# The broadcast counts in a progress bar (board/_macros.html ``progress_bar``): the
# meter, the percentage and each ``data-count`` number.
_COUNTS = (
    (re.compile(r'<progress max="\d+" value="\d+"'), '<progress max="#" value="#"'),
    (re.compile(r'data-percent="\d+">\d+%'), 'data-percent="#">#%'),
    (re.compile(r'(data-count="[a-z]+">)\d+'), r"\g<1>#"),
)


def shape_tag(html: str) -> str:
    """The fragment's ETag: what a board shows, but for the counts the socket brings.
    Unguessable without the fragment, so a 304 tells nobody anything they lack."""
    shape = html
    for numbers, placeholder in _COUNTS:
        shape = numbers.sub(placeholder, shape)
    return hashlib.sha256(shape.encode()).hexdigest()[:32]


VERSION_HEADER = "X-Live-Version"
_VERSION = re.compile(r"[1-9][0-9]{0,17}")


def heard_version(value: str | None) -> int | None:
    """The hint a board's re-read answers (``X-Live-Version``), or None: not sent, or
    not a count."""
    if value is None or not _VERSION.fullmatch(value):
        return None
    return int(value)


def sent_tag(if_none_match: str | None) -> str | None:
    """The one tag a board's If-None-Match names (board.js sends its fragment's), or None
    for anything else: no header, several tags, or "*" (which proves nothing held)."""
    sent = parse_etags(if_none_match)
    tags = sent.as_set()
    if sent.star_tag or len(tags) != 1:
        return None
    return next(iter(tags))


@dataclass(frozen=True)
class Rendered:
    """A render of the fragment, with its ETag, and when and at which version made."""

    version: int
    at: float
    html: str
    tag: str

    @classmethod
    def now(cls, version: int, html: str) -> Rendered:
        return cls(version, time.monotonic(), html, shape_tag(html))


class SharedRender:
    """The last render of each key (a language), kept while its version is current."""

    def __init__(self, gate: RenderGate, max_age: float = MAX_AGE_SECONDS) -> None:
        self._gate = gate
        self._max_age = max_age
        self._made: dict[str, Rendered] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(
        self,
        key: str,
        version: int | None,
        render: Callable[[], str],
        newest: int | None = None,
    ) -> str:
        """The html of ``rendered``."""
        return self.rendered(key, version, render, newest).html

    def rendered(
        self,
        key: str,
        version: int | None,
        render: Callable[[], str],
        newest: int | None = None,
    ) -> Rendered:
        """A render for ``key`` made at ``version`` or later (None: unknown, so render
        afresh). A new render is kept as made at ``newest``, the version read before it
        began (by default ``version``)."""
        if version is None:
            with self._gate.turn():
                return Rendered.now(0, render())
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
            made = Rendered.now(version if newest is None else max(newest, version), html)
            with self._guard:
                self._made[key] = made
                while len(self._made) > MAX_KEYS:  # keys a past area change left behind
                    del self._made[next(iter(self._made))]
            return made
        finally:
            lock.release()

    def unchanged(self, tag: str, version: int) -> bool:
        """Whether the render made at ``version`` or later has the ETag ``tag``: the
        board that holds it needs nothing more than what its socket brings.

        Right after a hint every board asks at once, and the first one's request renders
        anew: the others wait here for that render (as they would in the app, but
        without its cost), then compare. None rendering: False, and the app renders."""
        with self._guard:
            keys = [key for key, made in self._made.items() if made.tag == tag]
        for key in keys:
            if self._current(key, tag, version):
                return True
            lock = self._lock_of(key)
            if lock.locked() and lock.acquire(timeout=TURN_WAIT_SECONDS):
                lock.release()  # that render is made (or failed): look again
                if self._current(key, tag, version):
                    return True
        return False

    def _current(self, key: str, tag: str, version: int) -> bool:
        made = self._fresh(key, version)
        return made is not None and made.tag == tag

    def _fresh(self, key: str, version: int) -> Rendered | None:
        """The kept render of ``key``, if made at ``version`` or later and young enough."""
        made = self._made.get(key)
        if made is None or made.version < version:
            return None
        return made if time.monotonic() - made.at < self._max_age else None

    def _lock_of(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())
