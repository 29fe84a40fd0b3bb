"""A per-client limit on the public report form, in Redis, keyed by an HMAC only.

The caller passes an opaque key (an HMAC of the client address under the daily reporter
key), never an address: nothing in Redis can tell who sent a report. If Redis is
unreachable the limit fails open, because a lost sighting is worse than a few extra ones.
"""

from __future__ import annotations

import logging

from limits import parse
from limits.errors import StorageError
from redis import Redis
from redis.exceptions import RedisError

from dispatch.limits import moving_window

log = logging.getLogger(__name__)

BUCKET = "report-form"


class RedisFormLimits:
    """A moving-window limit (``"10/hour"``, limits' syntax) on one bucket of clients."""

    def __init__(self, redis: Redis, bucket: str = BUCKET) -> None:
        self._limiter = moving_window(redis)
        self._bucket = bucket

    def hit(self, limit: str, key: str) -> bool:
        """Count one use by ``key``; False when that is over ``limit`` (nothing counted).

        Raises:
            ValueError: ``limit`` is not in limits' syntax (a configuration bug).
        """
        item = parse(limit)
        try:
            return bool(self._limiter.hit(item, self._bucket, key))
        except (StorageError, RedisError, OSError) as error:
            log.warning("form limits unavailable (%s); allowing", error.__class__.__name__)
            return True
