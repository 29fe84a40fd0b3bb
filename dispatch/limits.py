"""Per-number abuse limits in Redis (SMS pumping, floods), keyed by blind index only."""

from __future__ import annotations

import logging

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis import Redis
from redis.exceptions import RedisError

from rapidresponse.subscribers import LimitVerdict

log = logging.getLogger(__name__)

KEY_PREFIX = "rr-limits"


def moving_window(redis: Redis) -> MovingWindowRateLimiter:
    """A moving-window limiter on our Redis, its keys under one prefix."""
    storage = RedisStorage(
        "redis://",
        connection_pool=redis.connection_pool,
        key_prefix=KEY_PREFIX,
        wrap_exceptions=True,
    )
    return MovingWindowRateLimiter(storage)


class RedisAbuseLimits:
    """Moving-window limits on inbound commands and on confirmation texts, per number.

    Over a limit, the number is told once per window (NOTIFY) and then gets silence
    (SILENT), so the limit itself cannot be used to make us send texts. If Redis is
    unreachable the limits fail open: an opt-out or a subscription must never be lost
    to a rate limiter.
    """

    def __init__(self, redis: Redis, inbound: str, confirmation: str) -> None:
        self._limiter = moving_window(redis)
        self._inbound = parse(inbound)
        self._confirmation = parse(confirmation)

    def inbound(self, key: str) -> LimitVerdict:
        return self._check(self._inbound, "inbound", key)

    def confirmation(self, key: str) -> LimitVerdict:
        return self._check(self._confirmation, "confirmation", key)

    def _check(self, item: RateLimitItem, bucket: str, key: str) -> LimitVerdict:
        try:
            if self._limiter.hit(item, bucket, key):
                return LimitVerdict.ALLOWED
            notice = parse(f"1/{item.multiples} {item.GRANULARITY.name}")
            return (
                LimitVerdict.NOTIFY
                if self._limiter.hit(notice, f"{bucket}-notice", key)
                else LimitVerdict.SILENT
            )
        except (StorageError, RedisError, OSError) as error:
            log.warning("abuse limits unavailable (%s); allowing", error.__class__.__name__)
            return LimitVerdict.ALLOWED
