"""Asking Twilio to forget, from housekeeping: due deletions, and provider ids done with.

See ``rapidresponse.redaction`` for what is deleted when. Every worker's housekeeping
thread enqueues these jobs (one worker per period); a failure is retried with backoff
and counted on /healthz, never lost.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import delete

from dispatch.senders import SendError, TwilioSender, redaction_delay, twilio_sender
from dispatch.services import Services, current
from rapidresponse import broadcast, redaction
from rapidresponse.db import Database
from rapidresponse.models import ProviderRedaction, utcnow
from rapidresponse.shredding import ShreddingCipher

log = logging.getLogger(__name__)


def redact_due_job() -> dict[str, int]:
    """Delete at the provider every message whose time has come; then destroy the keys
    of hours with nothing left to delete."""
    services = current()
    return redact_due(services.database, services.cipher, _twilio(services), utcnow())


def redact_due(
    database: Database, cipher: ShreddingCipher, sender: TwilioSender | None, now: datetime
) -> dict[str, int]:
    """Delete what is due by ``now`` (none without a sender), then destroy spent keys."""
    deleted = failed = 0
    if sender is not None:
        with database.session() as session:
            due = [(r.id, redaction.sid_of(r, cipher)) for r in redaction.due(session, now)]
        for redaction_id, sid in due:  # no transaction is held while Twilio answers
            try:
                if sid is not None:  # None: its key is gone, and with it any way to name it
                    sender.forget(sid)
            except SendError as error:
                failed += 1
                _retry_later(database, redaction_id, error, now)
            else:
                deleted += 1
                with database.session() as session:
                    session.execute(
                        delete(ProviderRedaction).where(ProviderRedaction.id == redaction_id)
                    )
        if failed:
            log.warning("provider redaction: %d deletions failed, retried later", failed)
    with database.session() as session:
        redaction.destroy_spent_keys(session, cipher.shred_keys, now)
    return {"deleted": deleted, "failed": failed}


def _retry_later(database: Database, redaction_id: int, error: SendError, now: datetime) -> None:
    with database.session() as session:
        row = session.get(ProviderRedaction, redaction_id)
        if row is not None:
            redaction.retry_later(row, now, f"error {error.code}" if error.code else "http")


def forget_provider_ids_job() -> int:
    """Clear the provider ids of deliveries whose callbacks are done (and redact them)."""
    services = current()
    settings = services.settings
    after = timedelta(minutes=settings.alert_validity_minutes) + redaction.SETTLE
    with services.database.session() as session:
        return broadcast.forget_provider_ids(
            session,
            utcnow(),
            after,
            redact=services.cipher if redaction_delay(settings) is not None else None,
        )


def _twilio(services: Services) -> TwilioSender | None:
    if redaction_delay(services.settings) is None:
        return None
    return twilio_sender(services.settings)
