"""The rotating reporter keys: a follow-up across a window's end is still linked, and a
key past its afterlife is neither used nor asked for again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis import Redis

from dispatch.redis_conn import connect
from dispatch.reporter_keys import ReporterKeys


class Counting(Redis):
    """A Redis client that counts the commands it sends."""

    sent: list[str]

    def execute_command(self, *args, **options):  # type: ignore[no-untyped-def]
        self.sent.append(str(args[0]))
        return super().execute_command(*args, **options)


def test_the_previous_key_is_read_during_its_afterlife_only(volatile_redis_url: str) -> None:
    volatile = Counting(connection_pool=connect(volatile_redis_url).connection_pool)
    volatile.sent = []
    keys = ReporterKeys(volatile, timedelta(hours=1), timedelta(minutes=30))
    # Two windows from now: no process has made their keys yet.
    window = keys._window(datetime.now(UTC).timestamp()) + 2
    start = datetime.fromtimestamp(window * keys.window_seconds, UTC)
    before = keys.hashes("+15035550101", start - timedelta(minutes=1))
    after = keys.hashes("+15035550101", start + timedelta(minutes=10))
    assert len(before) == 1 and len(after) == 2  # the previous window's key, still alive
    assert after[1] == before[0]  # so a follow-up across the boundary is linked

    past_afterlife = start + timedelta(minutes=31)
    assert keys.hashes("+15035550101", past_afterlife) == after[:1]
    volatile.sent.clear()
    for minute in range(32, 40):
        keys.hashes("+15035550101", start + timedelta(minutes=minute))
    assert volatile.sent == []  # the current key is known; the dead one is not asked for
