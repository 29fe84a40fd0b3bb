"""The board's alert counts, kept for alerts long finished instead of counted per render.

Each board render showed every recent alert's progress by counting its deliveries
(``GROUP BY status`` over its ledger): at the tenth 20,000-recipient alert of a morning
that is 200,000 rows for every render. An alert finished more than ``SETTLE_AFTER`` ago
changes only by a late "delivered" or "failed" from the carrier, so its counts are
kept here for ``KEEP_SECONDS`` and counted again after that; alerts still sending, or
just finished, are counted on every render as before.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from rapidresponse import broadcast
from rapidresponse.models import Alert, AlertStatus, utcnow

SETTLE_AFTER = timedelta(minutes=2)
KEEP_SECONDS = 60.0
MAX_KEPT = 200  # alerts: far more than a board shows


class SettledProgress:
    def __init__(self, keep_seconds: float = KEEP_SECONDS) -> None:
        self._keep = keep_seconds
        self._lock = threading.Lock()
        self._kept: dict[int, tuple[float, broadcast.Progress]] = {}

    def of(self, session: Session, alert: Alert) -> broadcast.Progress:
        if not settled(alert, utcnow()):
            return broadcast.progress(session, alert.id)
        with self._lock:
            kept = self._kept.get(alert.id)
        if kept is not None and time.monotonic() - kept[0] < self._keep:
            return kept[1]
        counted = broadcast.progress(session, alert.id)
        with self._lock:
            self._kept[alert.id] = (time.monotonic(), counted)
            while len(self._kept) > MAX_KEPT:
                del self._kept[next(iter(self._kept))]
        return counted


def settled(alert: Alert, now: datetime) -> bool:
    """Finished long enough ago that its counts move only by late carrier reports."""
    return (
        alert.status is AlertStatus.COMPLETE
        and alert.completed_at is not None
        and alert.completed_at <= now - SETTLE_AFTER
    )
