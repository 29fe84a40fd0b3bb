"""The daily key that links a reporter's follow-up texts, kept only in Redis and then lost.

A reporter's number is never stored. To recognise "more detail for my report" within 30
minutes, and to count independent reporters, we keep an HMAC of the number under a key
that lives in Redis for about a day and expires: after that, nobody (not us, not someone
holding the database) can tell whose report it was, even by trying every number.
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
# A day's key dies one hour after its day ends (UTC): long enough for the 30-minute
# follow-ups that cross midnight, no longer.
AFTERLIFE = timedelta(hours=1)


def expiry(day: datetime) -> int:
    """When ``day``'s key is destroyed (Unix time)."""
    end_of_day = datetime.combine(day.date() + timedelta(days=1), datetime.min.time(), UTC)
    return int((end_of_day + AFTERLIFE).timestamp())


class DailyReporterKeys:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    def hashes(self, phone: str, now: datetime | None = None) -> tuple[str, ...]:
        """Today's hash of ``phone`` first, then yesterday's (for follow-ups across midnight).

        Empty when Redis is unreachable: the report is still taken, just not linked.
        """
        now = now or datetime.now(UTC)
        try:
            keys = [self._key(day) for day in (now, now - timedelta(days=1))]
        except (RedisError, OSError) as error:
            log.warning("reporter keys unavailable (%s)", error.__class__.__name__)
            return ()
        return tuple(
            hmac.new(key, phone.encode(), hashlib.sha256).hexdigest()
            for key in keys
            if key is not None
        )

    def _key(self, day: datetime) -> bytes | None:
        name = KEY_PREFIX + day.strftime("%Y-%m-%d")
        if day.date() == datetime.now(UTC).date():
            # First process to need today's key makes it; everyone else reads that one.
            self.redis.set(name, os.urandom(32), nx=True, exat=expiry(day))
        value = self.redis.get(name)
        return value if isinstance(value, bytes) else None
