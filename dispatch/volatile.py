"""The volatile store: a Redis that keeps nothing on disk, for what links a reporter's texts.

A reporter's number is never stored. Still, recognising "more detail for my report",
counting independent reporters and rate-limiting a number all need something that links
two texts of one person for a while. That link lives here, and only here: a Redis with
no append-only file and no snapshots, so that nothing of it reaches a disk that could be
copied or seized later. Everything in it expires within its window.

It is a second redis-server beside the embedded transport one (``instance/redis-volatile``),
or ``VOLATILE_REDIS_URL`` in production. Without that setting, REDIS_URL's server serves
if it keeps nothing on disk itself; production refuses to start otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError, ResponseError

from dispatch.redis_conn import EmbeddedRedis, RedisUnavailable, connect
from rapidresponse.config import Settings
from rapidresponse.models import Language

log = logging.getLogger(__name__)

VOLATILE_DIRECTORY = "redis-volatile"
SEEN_PREFIX = "rr:seen:"
LANGUAGE_PREFIX = "rr:language:"


def keeps_data_on_disk(client: Redis) -> bool | None:
    """Whether that server writes its data to disk (AOF or snapshots); None if it won't say.

    Managed Redis services often refuse CONFIG: then nobody here can know.
    """
    try:
        appendonly = client.config_get("appendonly").get("appendonly")
        save = client.config_get("save").get("save")
    except ResponseError:
        return None
    return appendonly == "yes" or bool((save or "").strip())


@dataclass
class VolatileStore:
    url: str
    embedded: EmbeddedRedis | None = None

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()


def open_volatile(settings: Settings, durable_url: str | None) -> VolatileStore:
    """Find (or start) the volatile Redis for these settings.

    Args:
        settings: VOLATILE_REDIS_URL, the instance folder and the mode.
        durable_url: REDIS_URL as set, or None when the transport is the embedded one.

    Raises:
        RedisUnavailable: in production, no Redis that is known to keep nothing on disk
            (the message says what to set).
    """
    if settings.volatile_redis_url is not None:
        _check_volatile(settings, settings.volatile_redis_url, named=True)
        return VolatileStore(settings.volatile_redis_url)
    if durable_url is not None and _check_volatile(settings, durable_url, named=False):
        return VolatileStore(durable_url)  # that server keeps nothing on disk: share it
    embedded = EmbeddedRedis(settings.instance_path / VOLATILE_DIRECTORY, persistent=False)
    url = embedded.start()
    return VolatileStore(url, embedded if embedded.owned else None)


def _check_volatile(settings: Settings, url: str, *, named: bool) -> bool:
    """True when ``url``'s server is known to keep nothing on disk."""
    client = connect(url)
    try:
        on_disk = keeps_data_on_disk(client)
    except (RedisError, OSError) as error:
        raise RedisUnavailable(
            f"cannot reach the volatile Redis ({error.__class__.__name__})"
        ) from None
    finally:
        client.close()
    if on_disk is False:
        return True
    if named and on_disk is None:
        log.warning(
            "VOLATILE_REDIS_URL: the server does not say whether it persists; "
            "make sure it runs with --save '' --appendonly no"
        )
        return True
    if settings.is_production:
        raise RedisUnavailable(
            "VOLATILE_REDIS_URL must name a Redis that keeps nothing on disk (run one with "
            "--save '' --appendonly no): reporter links must never reach a disk"
            + ("" if named else "; REDIS_URL's server persists or will not say")
        )
    if named:
        log.warning("VOLATILE_REDIS_URL's server writes to disk: reporter links may reach it")
        return True
    return False


# --- what lives there ----------------------------------------------------------------------


class SeenMessages:
    """Inbound message ids already handled, for one window: a replay changes nothing.

    Kept as a digest with a time to live, never in the database: an id ties a report to
    the provider's copy of the message (sender and text), so it must not outlive its use.
    Unreachable, it fails open: a duplicate sighting is better than a lost one.
    """

    def __init__(self, volatile: Redis, window_seconds: int) -> None:
        self.volatile = volatile
        self.window_seconds = window_seconds

    def first_time(self, message_id: str) -> bool:
        digest = hashlib.sha256(message_id.encode()).hexdigest()
        try:
            return bool(self.volatile.set(SEEN_PREFIX + digest, 1, nx=True, ex=self.window_seconds))
        except (RedisError, OSError) as error:
            log.warning("replay guard unavailable (%s); accepting", error.__class__.__name__)
            return True


class RememberedLanguages:
    """A language chosen by someone who is not a subscriber, for one window only.

    Keyed by the reporter hash (an HMAC under the rotating reporter key), so that a
    LANG ES leaves no durable row and no lasting link to the number.
    """

    def __init__(self, volatile: Redis, window_seconds: int) -> None:
        self.volatile = volatile
        self.window_seconds = window_seconds

    def language(self, keys: Sequence[str]) -> Language | None:
        """The language remembered under the first of ``keys`` (the reporter hashes,
        current first) that has one: all read in one round trip."""
        if not keys:
            return None
        try:
            values = self.volatile.mget([LANGUAGE_PREFIX + key for key in keys])
        except (RedisError, OSError):
            return None
        for value in values:
            if isinstance(value, bytes):
                with contextlib.suppress(ValueError):
                    return Language(value.decode())
        return None

    def remember(self, key: str, language: Language) -> None:
        try:
            self.volatile.set(LANGUAGE_PREFIX + key, language.value, ex=self.window_seconds)
        except (RedisError, OSError) as error:
            log.warning("language not remembered (%s)", error.__class__.__name__)


# --- for commands that start child processes -----------------------------------------------


@dataclass
class RedisForChildren:
    """The Redis URLs a command's child processes are to use, and what to stop after them."""

    environment: dict[str, str]
    started: list[EmbeddedRedis]

    def stop(self) -> None:
        for server in reversed(self.started):
            server.stop()


def redis_for_children(settings: Settings) -> RedisForChildren:
    """Start the embedded servers the settings leave unnamed (transport, volatile), so that
    every child process shares them instead of starting its own.

    Raises:
        RedisUnavailable: no embedded Redis here, or (production) no volatile Redis.
    """
    environment: dict[str, str] = {}
    started: list[EmbeddedRedis] = []
    if settings.redis_url is None:
        transport = EmbeddedRedis(settings.instance_path / "redis")
        environment["REDIS_URL"] = transport.start()
        started += [transport] if transport.owned else []
    store = open_volatile(settings, settings.redis_url)
    environment["VOLATILE_REDIS_URL"] = store.url
    started += [store.embedded] if store.embedded is not None else []
    return RedisForChildren(environment, started)
