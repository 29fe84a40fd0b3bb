"""Asking the provider to forget: which messages to delete at Twilio, and when.

Twilio keeps every message (sender, recipient, text) until it is deleted through its
Messages API. With PROVIDER_REDACTION on, each message we receive is deleted once it is
stored, and each message we send once it can no longer change (its validity over, its
status final): a subpoena to Twilio then finds billing records, not conversations.

A redaction is a row holding the provider's id until the deletion succeeded; failures
are retried with backoff by housekeeping, and counted on /healthz.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rapidresponse.models import ProviderRedaction

# Twilio refuses to delete a message it is still processing (error 20009: "wait at least
# 1 minute"). A received message is deleted after a minute; a sent one may still change
# for a while (queued at the carrier, status callbacks on their way), so it is deleted
# only after this settling time (past its validity, for an alert).
RECEIVED_SETTLE = timedelta(minutes=1)
SETTLE = timedelta(minutes=10)
RETRY_BASE = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=6)
FAILING_AFTER = 3  # attempts after which /healthz reports a redaction as failing


def schedule(session: Session, sid: str, due_at: datetime) -> None:
    """Delete ``sid`` at the provider from ``due_at`` on (once, however often asked)."""
    exists = select(ProviderRedaction.id).where(ProviderRedaction.sid == sid)
    if session.scalar(exists) is not None:
        return
    try:
        with session.begin_nested():
            session.add(ProviderRedaction(sid=sid, due_at=due_at))
    except IntegrityError:
        pass  # scheduled by another request at the same moment


def due(session: Session, now: datetime, limit: int = 500) -> list[ProviderRedaction]:
    return list(
        session.scalars(
            select(ProviderRedaction)
            .where(ProviderRedaction.due_at <= now)
            .order_by(ProviderRedaction.due_at)
            .limit(limit)
        )
    )


def retry_later(redaction: ProviderRedaction, now: datetime, error: str) -> None:
    """Back off exponentially (1 min, 2, 4 … at most 6 h) after a failed deletion."""
    redaction.attempts += 1
    redaction.last_error = error[:16]
    wait = min(RETRY_BASE * 2 ** (redaction.attempts - 1), RETRY_MAX)
    redaction.due_at = now + wait


@dataclass(frozen=True)
class RedactionCounts:
    waiting: int  # scheduled, not yet done (most are simply not due yet)
    failing: int  # tried FAILING_AFTER times or more without success

    def as_dict(self) -> dict[str, int]:
        return {"waiting": self.waiting, "failing": self.failing}


def counts(session: Session) -> RedactionCounts:
    waiting = session.scalar(select(func.count()).select_from(ProviderRedaction)) or 0
    failing = (
        session.scalar(
            select(func.count())
            .select_from(ProviderRedaction)
            .where(ProviderRedaction.attempts >= FAILING_AFTER)
        )
        or 0
    )
    return RedactionCounts(waiting, failing)
