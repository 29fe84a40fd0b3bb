"""Corrections from the board (merge, split, reopen, unplace): the domain's rules in one
transaction (``rapidresponse.corrections``), then what follows them, after the commit:
the board's hint, a decided state's consequences, responders for what needs them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from sqlalchemy.orm import Session

from dispatch.incidents import (
    dispatch_incident,
    incident_changed,
    incident_opened,
    incident_touched,
    quietly,
    verification_deadline,
)
from dispatch.queues import QueueName, enqueue, enqueue_in
from dispatch.services import Services
from rapidresponse import corrections
from rapidresponse.corrections import Corrected


def _corrected(
    services: Services, touched: tuple[int, ...], act: Callable[[Session], Corrected]
) -> int:
    with services.database.session() as session:
        done = act(session)
    for incident_id in {*touched, done.incident_id}:
        incident_touched(services, incident_id)
    if done.opened:
        incident_opened(services, done.incident_id)
    if done.transition is not None:
        incident_changed(services, done.transition)
    if done.verify_again:
        quietly(
            lambda: enqueue_in(
                services.redis,
                QueueName.REPLIES,
                timedelta(seconds=services.settings.verify_deadline_seconds),
                verification_deadline,
                done.incident_id,
            ),
            done.incident_id,
        )
    if done.dispatch_again:
        quietly(
            lambda: enqueue(services.redis, QueueName.REPLIES, dispatch_incident, done.incident_id),
            done.incident_id,
        )
    return done.incident_id


def merge(services: Services, kept_id: int, absorbed_id: int, staff_id: int) -> int:
    """Raises ``CorrectionRefused``; returns the incident kept."""
    return _corrected(
        services,
        (kept_id, absorbed_id),
        lambda session: corrections.merge(
            session,
            services.cipher,
            kept_id,
            absorbed_id,
            staff_id,
            services.settings.verify_quorum,
        ),
    )


def split(services: Services, incident_id: int, report_code: str, staff_id: int) -> int:
    """Raises ``CorrectionRefused``; returns the new incident."""
    return _corrected(
        services,
        (incident_id,),
        lambda session: corrections.split(
            session, services.cipher, incident_id, report_code, staff_id
        ),
    )


def reopen(services: Services, incident_id: int, staff_id: int) -> int:
    retention = timedelta(days=services.settings.report_retention_days)
    return _corrected(
        services,
        (incident_id,),
        lambda session: corrections.reopen(session, incident_id, staff_id, retention),
    )


def unplace(services: Services, incident_id: int, staff_id: int) -> int:
    return _corrected(
        services,
        (incident_id,),
        lambda session: corrections.unplace(session, incident_id, staff_id),
    )
