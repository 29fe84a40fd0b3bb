"""Before approval: how many people, in which language, how long the send takes at the
configured rate, and how many the alert would not reach before its validity runs out.

Carriers pace a sender by segments per second (SEND_RATE). At the old default of one a
second, anyone past about the 1,800th recipient of a 30-minute alert was dropped without
a word; the approval screen now says so, in numbers, before anyone approves.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from rapidresponse.sms import segment


@dataclass(frozen=True)
class Capacity:
    by_language: dict[str, int]  # language value -> recipients
    segments: dict[str, int]  # language value -> segments of its text
    send_rate: float | None  # segments per second; None: as fast as the provider takes them
    validity_seconds: float

    @property
    def recipients(self) -> int:
        return sum(self.by_language.values())

    @property
    def total_segments(self) -> int:
        return sum(n * self.segments.get(lang, 1) for lang, n in self.by_language.items())

    @property
    def seconds(self) -> float:
        """How long handing everything to the provider takes at the rate (0: no limit)."""
        if not self.send_rate:
            return 0.0
        return self.total_segments / self.send_rate

    @property
    def dropped(self) -> int:
        """Recipients the validity would run out on (an estimate at an even pace)."""
        if self.seconds <= self.validity_seconds or self.recipients == 0:
            return 0
        # The first leaves at once; then one every (send time / recipients).
        reached = math.floor(self.recipients * self.validity_seconds / self.seconds) + 1
        return max(0, self.recipients - reached)

    @property
    def minutes(self) -> int:
        """The send time, rounded up to whole minutes (at least 1 when there is any)."""
        return math.ceil(self.seconds / 60) if self.recipients else 0


def capacity(
    by_language: Mapping[str, int],
    texts: Mapping[str, str],
    send_rate: float | None,
    validity_minutes: int,
) -> Capacity:
    return Capacity(
        by_language=dict(by_language),
        segments={lang: segment(body).segments for lang, body in texts.items()},
        send_rate=send_rate,
        validity_seconds=validity_minutes * 60.0,
    )
