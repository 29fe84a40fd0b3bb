"""One send rate per sender number, shared by every worker, kept in Redis.

Carriers count segments per second against a sender. Each worker asks the pacer for
slots before sending: a Lua script (atomic across workers) hands out start times one
segment-interval apart, using Redis's own clock so that workers on several machines
agree. It is a GCRA with no burst: any one-second window holds at most the rate, which
a token bucket (that lets a full bucket go at once) would not promise.

The interval is stretched by ``HEADROOM`` so that scheduling jitter between the slot
and the request reaching the carrier cannot squeeze one window over the limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from redis import Redis

from rapidresponse.config import Settings

# Why 4%: a two-segment message counts both segments the moment it starts, and a send
# may leave up to a quarter interval late (see dispatch.broadcast); at 50/s, 49 gaps of
# 20.8 ms still span more than a second with 19 ms to spare, and the average stays
# within 4% of the rate.
HEADROOM = 1.04
KEY_PREFIX = "rr:pacer:"

# KEYS[1]: the sender's pacer; ARGV[1]: microseconds per segment; ARGV[2..]: segments of
# each message. Returns each message's wait in microseconds, from Redis's clock.
_RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local interval = tonumber(ARGV[1])
local waits = {}
for i = 2, #ARGV do
  waits[#waits + 1] = tat - now
  tat = tat + tonumber(ARGV[i]) * interval
end
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', math.floor((tat - now) / 1000) + 60000)
return waits
"""


# KEYS[1]: the sender's pacer; ARGV[1]: microseconds from now before the next slot.
_HOLD = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local hold = tonumber(ARGV[1])
if tat < now + hold then
  local ttl = math.floor(hold / 1000) + 60000
  redis.call('SET', KEYS[1], string.format('%d', now + hold), 'PX', ttl)
end
return 1
"""


class Pacer:
    """Hands out send times at ``rate`` segments per second for one sender."""

    def __init__(self, redis: Redis, rate: float, sender_id: str) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.key = KEY_PREFIX + sender_id
        self.interval_us = int(1_000_000 * HEADROOM / rate)
        self.interval = self.interval_us / 1_000_000  # seconds between segments
        self._script = redis.register_script(_RESERVE)
        self._hold = redis.register_script(_HOLD)

    def hold(self, seconds: float) -> None:
        """Hand out no slot for ``seconds`` (the provider said we went too fast)."""
        self._hold(keys=[self.key], args=[int(seconds * 1_000_000)])

    def reserve(self, segments: Sequence[int]) -> list[float]:
        """Reserve one slot per message; return each one's wait in seconds from now."""
        if not segments:
            return []
        waits = self._script(keys=[self.key], args=[self.interval_us, *segments])
        return [int(w) / 1_000_000 for w in waits]


def make_pacer(redis: Redis, settings: Settings) -> Pacer | None:
    """The pacer for the configured sender, or None when SEND_RATE is unlimited."""
    if settings.send_rate is None:
        return None
    # Keyed by a digest: our own number is no secret, but keys hold no numbers at all.
    sender = settings.twilio_from if settings.sms_backend == "twilio" else "simulator"
    digest = hashlib.sha256((sender or "").encode()).hexdigest()[:16]
    return Pacer(redis, settings.send_rate, digest)


def make_whatsapp_pacer(redis: Redis, settings: Settings) -> Pacer:
    """The WhatsApp sender's own pace (WHATSAPP_SEND_RATE), apart from the SMS number's:
    one channel's limit never slows the other."""
    sender = settings.whatsapp_from if settings.sms_backend == "twilio" else "simulator"
    digest = hashlib.sha256(f"whatsapp:{sender}".encode()).hexdigest()[:16]
    return Pacer(redis, settings.whatsapp_send_rate, digest)
