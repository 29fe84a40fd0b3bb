"""The simulator's outbox, as the retention schedule sees it (development only)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.orm import Session

from rapidresponse.models import OutboxMessage


def purge_outbox(session: Session, before: datetime) -> int:
    """Delete the simulated conversations older than ``before`` (their day's shred key
    is destroyed with the others, which is what erases them). Returns how many went."""
    result = session.execute(delete(OutboxMessage).where(OutboxMessage.created_at < before))
    return int(result.rowcount)  # type: ignore[attr-defined]
