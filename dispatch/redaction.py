"""Asking Twilio to forget, from housekeeping: due deletions, and provider ids done with.

See ``rapidresponse.redaction`` for what is deleted when. Every worker's housekeeping
thread enqueues these jobs (one worker per period); a failure is retried with backoff
and counted on /healthz, never lost.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete

from dispatch.senders import SendError, TwilioSender, redaction_delay, twilio_sender
from dispatch.services import Services, current
from rapidresponse import broadcast, redaction
from rapidresponse.models import ProviderRedaction, utcnow

log = logging.getLogger(__name__)


def redact_due_job() -> dict[str, int]:
    """Delete at the provider every message whose time has come."""
    services = current()
    sender = _twilio(services)
    if sender is None:
        return {"deleted": 0, "failed": 0}
    with services.database.session() as session:
        due = [(r.id, r.sid) for r in redaction.due(session, utcnow())]
    deleted = failed = 0
    for redaction_id, sid in due:  # no transaction is held while Twilio answers
        try:
            sender.forget(sid)
        except SendError as error:
            failed += 1
            _retry_later(services, redaction_id, error)
        else:
            deleted += 1
            with services.database.session() as session:
                session.execute(
                    delete(ProviderRedaction).where(ProviderRedaction.id == redaction_id)
                )
    if failed:
        log.warning("provider redaction: %d deletions failed, retried later", failed)
    return {"deleted": deleted, "failed": failed}


def _retry_later(services: Services, redaction_id: int, error: SendError) -> None:
    with services.database.session() as session:
        row = session.get(ProviderRedaction, redaction_id)
        if row is not None:
            redaction.retry_later(row, utcnow(), f"error {error.code}" if error.code else "http")


def forget_provider_ids_job() -> int:
    """Clear the provider ids of deliveries whose callbacks are done (and redact them)."""
    services = current()
    settings = services.settings
    after = timedelta(minutes=settings.alert_validity_minutes) + redaction.SETTLE
    with services.database.session() as session:
        return broadcast.forget_provider_ids(
            session, utcnow(), after, redact=redaction_delay(settings) is not None
        )


def _twilio(services: Services) -> TwilioSender | None:
    if redaction_delay(services.settings) is None:
        return None
    return twilio_sender(services.settings)
