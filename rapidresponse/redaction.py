"""Asking the provider to forget: which messages to delete at Twilio, and when.

Twilio keeps every message (sender, recipient, text) until it is deleted through its
Messages API. With PROVIDER_REDACTION on, each message we receive is deleted once it is
stored, and each message we send once it can no longer change (its validity over, its
status final): a subpoena to Twilio then finds billing records, not conversations.

A redaction is a row holding the provider's id until the deletion succeeded; failures
are retried with backoff by housekeeping, and counted on /healthz. The id links a
report to its sender at the provider, so it is never stored readable: it is sealed
under the shred key of the hour it was scheduled in (``redaction-<hour>``), and that key
is destroyed once no row of its hour is left and the next hour is over too (a row of
the hour may still be on its way to the database when the hour ends).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rapidresponse.crypto import DecryptionError, FieldCipher, Purpose
from rapidresponse.models import ProviderRedaction, utcnow
from rapidresponse.shredding import ShreddingCipher, ShredKeys

# Twilio refuses to delete a message it is still processing (error 20009: "wait at least
# 1 minute"). A received message is deleted after a minute; a sent one may still change
# for a while (queued at the carrier, status callbacks on their way), so it is deleted
# only after this settling time (past its validity, for an alert).
RECEIVED_SETTLE = timedelta(minutes=1)
SETTLE = timedelta(minutes=10)
RETRY_BASE = timedelta(minutes=1)
RETRY_MAX = timedelta(hours=6)
FAILING_AFTER = 3  # attempts after which /healthz reports a redaction as failing


KEY_KIND = "redaction"
# A key outlives its hour by this much before it may go: a row sealed under it in the
# hour's last moment may still be committing when the hour ends.
KEY_GRACE = timedelta(hours=1)


def redaction_key(moment: datetime) -> str:
    """The shred key sealing the ids scheduled in ``moment``'s hour."""
    return f"{KEY_KIND}-{moment:%Y-%m-%dT%H}"


def schedule(
    session: Session,
    cipher: ShreddingCipher,
    sid: str,
    due_at: datetime,
    now: datetime | None = None,
) -> None:
    """Delete ``sid`` at the provider from ``due_at`` on (once, however often asked)."""
    key_name = redaction_key(now or utcnow())
    key = cipher.shred_keys.key(key_name)  # read once: this runs on the webhook's path
    digest = hmac.new(key, sid.encode(), hashlib.sha256).hexdigest()
    exists = select(ProviderRedaction.id).where(ProviderRedaction.sid_digest == digest)
    if session.scalar(exists) is not None:
        return
    row = ProviderRedaction(
        sid_sealed=FieldCipher([key]).encrypt(sid, Purpose.PROVIDER_SID),
        sid_digest=digest,
        key_name=key_name,
        due_at=due_at,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        pass  # scheduled by another request at the same moment


def sid_of(row: ProviderRedaction, cipher: ShreddingCipher) -> str | None:
    """The id to delete; None if its key is gone (nobody can name that message now)."""
    if row.sid is not None:
        return row.sid  # scheduled before ids were sealed
    if row.sid_sealed is None:
        return None
    try:
        return cipher.decrypt(row.sid_sealed, Purpose.PROVIDER_SID)
    except DecryptionError:
        return None


def destroy_spent_keys(session: Session, keys: ShredKeys, now: datetime) -> list[str]:
    """Destroy the keys of hours that are over (past ``KEY_GRACE``) and have no row left.
    Returns the names destroyed."""
    in_use = set(session.scalars(select(ProviderRedaction.key_name).distinct()))
    recent = {redaction_key(now), redaction_key(now - KEY_GRACE)}
    spent = [
        name
        for name in keys.names()
        if name.startswith(f"{KEY_KIND}-") and name not in recent and name not in in_use
    ]
    return [name for name in spent if keys.destroy(name)]


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
