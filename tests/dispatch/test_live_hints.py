"""Hints repeated many times a second reach the boards once per window, and once more
after the last repeat, from however many processes."""

from __future__ import annotations

import time
from typing import Any

import pytest

from dispatch.live import LivePublisher

WINDOW_MS = 300


class Recording(LivePublisher):
    """A real publisher (its Redis keys are shared) that records what it would emit."""

    def __init__(self, redis_url: str) -> None:
        super().__init__(redis_url)
        self.sent: list[tuple[float, str, dict[str, Any]]] = []

    def emit(self, event: str, data: dict[str, Any], room: str | None = None) -> None:
        self.sent.append((time.monotonic(), event, data))


@pytest.fixture
def publishers(redis_url: str, redis_client: object) -> list[Recording]:
    return [Recording(redis_url), Recording(redis_url)]  # two web processes


def test_repeats_within_a_window_become_one_more_hint_at_its_end(
    publishers: list[Recording],
) -> None:
    first, second = publishers
    started = time.monotonic()
    for n in range(20):  # ten reports each, alternating between two processes
        (first if n % 2 else second).emit_coalesced(
            "incident_updated", {"incident_id": 7}, WINDOW_MS
        )
    assert [event for _, event, _ in first.sent + second.sent] == ["incident_updated"]
    time.sleep(2 * WINDOW_MS / 1000)
    sent = sorted(first.sent + second.sent)
    assert len(sent) == 2  # at once, and once after the repeats
    assert sent[1][0] - started >= WINDOW_MS / 1000 * 0.9
    assert all(data == {"incident_id": 7} for _, _, data in sent)


def test_other_incidents_are_not_held_back(publishers: list[Recording]) -> None:
    first, _ = publishers
    for incident in (1, 2, 3):
        first.emit_coalesced("incident_updated", {"incident_id": incident}, WINDOW_MS)
    assert [data["incident_id"] for _, _, data in first.sent] == [1, 2, 3]


def test_a_repeat_right_after_the_trailing_hint_waits_its_turn(
    publishers: list[Recording],
) -> None:
    first, _ = publishers
    hint = {"incident_id": 11}
    first.emit_coalesced("incident_updated", hint, WINDOW_MS)
    first.emit_coalesced("incident_updated", hint, WINDOW_MS)
    time.sleep(WINDOW_MS / 1000 * 1.5)
    assert len(first.sent) == 2
    first.emit_coalesced("incident_updated", hint, WINDOW_MS)  # within the new window
    assert len(first.sent) == 2
    time.sleep(WINDOW_MS / 1000 * 1.5)
    assert len(first.sent) == 3  # and it is sent at that window's end
    time.sleep(WINDOW_MS / 1000 * 1.5)
    first.emit_coalesced("incident_updated", hint, WINDOW_MS)  # a quiet spell later: at once
    assert len(first.sent) == 4


def test_closing_drops_the_repeats_not_sent_yet(publishers: list[Recording]) -> None:
    first, _ = publishers
    hint = {"incident_id": 12}
    first.emit_coalesced("incident_updated", hint, WINDOW_MS)
    first.emit_coalesced("incident_updated", hint, WINDOW_MS)  # to be sent at the end
    first.close()  # a process (or a test's services) going away
    time.sleep(WINDOW_MS / 1000 * 1.5)
    assert len(first.sent) == 1
