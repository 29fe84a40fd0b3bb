"""Moving incidents along: paging responders, acknowledgement timeouts, the verification
deadline, and the hooks that run after a commit (never before: a job must find what it
is about). Jobs carry incident and dispatch ids only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from redis.exceptions import RedisError
from rq import Retry
from sqlalchemy import func, select

from dispatch.alerts import incident_confirmed
from dispatch.queues import QueueName, enqueue, enqueue_in
from dispatch.senders import SendError
from dispatch.services import Services, current
from dispatch.welcome import enqueue_welcome, not_yet_welcomed
from rapidresponse import drills
from rapidresponse.crypto import Purpose
from rapidresponse.messages import text
from rapidresponse.models import (
    Dispatch,
    DispatchState,
    Incident,
    IncidentState,
    Responder,
    Verdict,
    utcnow,
)
from rapidresponse.reports import Intake
from rapidresponse.verification import (
    OPEN_DISPATCH_STATES,
    PAGEABLE_STATES,
    Transition,
    close_incident,
    decisive_verdicts,
    escalate,
    expire_verification,
    lock_incident,
    open_dispatches,
    page_summary,
    responders_to_page,
    time_out_dispatch,
)

log = logging.getLogger(__name__)

# A page that could not be sent for a moment (429, 5xx) is retried, not forgotten.
PAGE_RETRY = Retry(max=3, interval=[5, 15, 45])
DECIDED_STATES = (IncidentState.CONFIRMED, IncidentState.FALSE_ALARM, IncidentState.UNVERIFIED)
# The sweep leaves the scheduler this long to do its own work first.
SWEEP_GRACE_SECONDS = 60


# --- hooks, called after a commit ------------------------------------------------------


def incident_opened(services: Services, incident_id: int) -> None:
    """A new incident: tell the board, find responders, and start the verification clock.

    If Redis is unreachable this logs and returns: the incident is committed, and the
    sweep (``sweep_incidents``) dispatches it and enforces its deadline later.
    """
    try:
        services.live.emit("incident_opened", {"incident_id": incident_id})
        enqueue(services.redis, QueueName.REPLIES, dispatch_incident, incident_id)
        enqueue_in(
            services.redis,
            QueueName.REPLIES,
            timedelta(seconds=services.settings.verify_deadline_seconds),
            verification_deadline,
            incident_id,
        )
    except (RedisError, OSError) as error:
        log.warning(
            "incident %s: could not reach Redis (%s); the sweep will dispatch it",
            incident_id,
            error.__class__.__name__,
        )


def after_intake(services: Services, intake: Intake) -> None:
    """After a report is committed: dispatch what it opened or placed, flag floods."""
    if intake.new_incident:
        incident_opened(services, intake.incident_id)
    else:
        # Many reports a second on a raid morning: one hint per half second suffices.
        quietly(
            lambda: services.live.emit_coalesced(
                "incident_updated", {"incident_id": intake.incident_id}
            ),
            intake.incident_id,
        )
        if intake.placed_now:  # an unplaced incident now has a place: find responders
            quietly(
                lambda: enqueue(
                    services.redis, QueueName.REPLIES, dispatch_incident, intake.incident_id
                ),
                intake.incident_id,
            )
    if intake.flagged_flood:
        quietly(
            lambda: services.live.emit("incident_flagged", {"incident_id": intake.incident_id}),
            intake.incident_id,
        )


def incident_touched(services: Services, incident_id: int) -> None:
    """A report added or a responder's answer: a hint for the board, nothing more."""
    quietly(
        lambda: services.live.emit("incident_updated", {"incident_id": incident_id}),
        incident_id,
    )


def quietly(action: Callable[[], object], incident_id: int) -> None:
    try:
        action()
    except (RedisError, OSError) as error:  # the sweep and the board's re-sync catch up
        log.warning(
            "incident %s: could not reach Redis (%s)", incident_id, error.__class__.__name__
        )


def incident_changed(services: Services, transition: Transition) -> None:
    """A decided incident: a confirmed one gets its alert drafted (and, by policy, sent)."""
    payload = {"incident_id": transition.incident_id, "state": transition.state.value}
    if transition.state is IncidentState.CONFIRMED:
        incident_confirmed(services, transition.incident_id)
    try:
        services.live.emit("incident_changed", payload)
        if transition.state is IncidentState.CONFIRMED:
            services.live.emit("incident_confirmed", payload)
    except (RedisError, OSError) as error:  # the board re-reads the record on reconnect
        log.warning(
            "incident %s: live event not sent (%s)",
            transition.incident_id,
            error.__class__.__name__,
        )


# --- jobs ---------------------------------------------------------------------------------


def dispatch_incident(incident_id: int) -> str:
    """Page enough on-shift responders to reach the quorum; escalate when there is nobody."""
    services = current()
    with services.database.session() as session:
        incident = lock_incident(session, incident_id)  # one dispatcher at a time
        if incident is None or incident.state not in PAGEABLE_STATES:
            return "closed"
        active = (
            session.scalar(
                select(func.count())
                .select_from(Dispatch)
                .where(
                    Dispatch.incident_id == incident_id, Dispatch.state.in_(OPEN_DISPATCH_STATES)
                )
            )
            or 0
        )
        # Responders still out, or whose decisive verdict is already in, count towards
        # the quorum; an UNCLEAR verdict does not, so someone else is paged.
        tally = decisive_verdicts(session, incident_id)
        decided = max(tally.get(Verdict.CONFIRM, 0), tally.get(Verdict.FALSE, 0))
        wanted = services.settings.verify_quorum - active - decided
        dispatches = open_dispatches(
            session, incident, responders_to_page(session, incident, wanted)
        )
        escalated = not dispatches and active == 0 and escalate(session, incident)
        dispatch_ids = [d.id for d in dispatches]
    send_pages(services, dispatch_ids)
    if escalated:
        services.live.emit("incident_escalated", {"incident_id": incident_id})
    return f"paged {len(dispatch_ids)}" if dispatch_ids else "nobody to page"


def send_pages(services: Services, dispatch_ids: list[int]) -> None:
    """Page each dispatched responder and start the clock on their GO."""
    for dispatch_id in dispatch_ids:
        enqueue(services.redis, QueueName.REPLIES, page_responder, dispatch_id, retry=PAGE_RETRY)
        enqueue_in(
            services.redis,
            QueueName.REPLIES,
            timedelta(seconds=services.settings.ack_timeout_seconds),
            check_acknowledgement,
            dispatch_id,
        )


def page_responder(dispatch_id: int) -> str:
    """Text one responder the incident's code, place and what was seen."""
    services = current()
    with services.database.session() as session:
        dispatch = session.get_one(Dispatch, dispatch_id)
        incident = session.get_one(Incident, dispatch.incident_id)
        # Answered, timed out, or closed meanwhile (a decision closes the pages open
        # then, so a page a dispatcher asked for after it still goes out): no late page.
        if dispatch.state is not DispatchState.PAGED or incident.state is IncidentState.CLOSED:
            return "skipped"
        responder = session.get_one(Responder, dispatch.responder_id)
        body = text(
            responder.language,
            "sms.page",
            code=incident.code,
            area=incident.area.name if incident.area else "?",
            what=page_summary(session, services.cipher, incident),
        )
        if incident.drill_id is not None:
            body = drills.mark(body, responder.language)
        phone = services.cipher.decrypt(responder.phone_sealed, Purpose.RESPONDER_PHONE)
    try:
        services.sender.send(phone, body)
    except SendError as error:
        if not error.permanent:
            raise  # RQ retries with backoff; the failure stays visible in its registry
        log.warning("dispatch %s: responder unreachable (error %s)", dispatch_id, error.code)
        return check_acknowledgement(dispatch_id)  # page the next one now
    return "paged"


def check_acknowledgement(dispatch_id: int) -> str:
    """No GO in time: mark the page timed out and page the next responder."""
    services = current()
    with services.database.session() as session:
        dispatch = time_out_dispatch(session, dispatch_id)
        incident_id = dispatch.incident_id if dispatch else None
    if incident_id is None:
        return "answered"
    services.live.emit("incident_changed", {"incident_id": incident_id})
    enqueue(services.redis, QueueName.REPLIES, dispatch_incident, incident_id)
    return "timed out"


def verification_deadline(incident_id: int) -> str:
    services = current()
    with services.database.session() as session:
        transition = expire_verification(session, incident_id)
    if transition is None:
        return "already decided"
    incident_changed(services, transition)
    return "unverified"


def sweep_incidents() -> dict[str, int]:
    """Recover work whose jobs were lost, and move incidents along, from the database.

    Runs every minute. It dispatches placed incidents with nobody out (a lost job, a
    report placed by a follow-up, an UNCLEAR verdict, a responder back on shift), times
    out pages nobody answered, expires incidents past their deadline, closes decided
    incidents after INCIDENT_AUTO_CLOSE_HOURS (which starts their retention clock), and
    welcomes responders whose welcome never went.
    """
    services = current()
    settings = services.settings
    now = utcnow()
    grace = timedelta(seconds=SWEEP_GRACE_SECONDS)
    with services.database.session() as session:
        out = select(Dispatch.incident_id).where(Dispatch.state.in_(OPEN_DISPATCH_STATES))
        to_dispatch = session.scalars(
            select(Incident.id).where(
                Incident.state.in_(PAGEABLE_STATES),
                Incident.opened_at < now - grace,
                Incident.id.not_in(out),
                Incident.area_id.is_not(None) | Incident.escalated_at.is_(None),
            )
        ).all()
        unanswered = session.scalars(
            select(Dispatch.id).where(
                Dispatch.state == DispatchState.PAGED,
                Dispatch.paged_at < now - timedelta(seconds=settings.ack_timeout_seconds) - grace,
            )
        ).all()
        # The deadline runs from the opening, or from a reopening (or an undone place).
        deadline = now - timedelta(seconds=settings.verify_deadline_seconds) - grace
        overdue = session.scalars(
            select(Incident.id).where(
                Incident.state.in_(PAGEABLE_STATES),
                Incident.opened_at < deadline,
                Incident.state_changed_at < deadline,
            )
        ).all()
        stale = session.scalars(
            select(Incident.id).where(
                Incident.state.in_(DECIDED_STATES),
                Incident.state_changed_at
                < now - timedelta(hours=settings.incident_auto_close_hours),
            )
        ).all()
    for incident_id in to_dispatch:
        enqueue(services.redis, QueueName.REPLIES, dispatch_incident, incident_id)
    for dispatch_id in unanswered:
        check_acknowledgement(dispatch_id)
    for incident_id in overdue:
        verification_deadline(incident_id)
    for incident_id in stale:
        _auto_close(services, incident_id)
    with services.database.session() as session:
        unwelcomed = not_yet_welcomed(session)
    for responder_id in unwelcomed:
        enqueue_welcome(services.redis, responder_id)
    return {
        "dispatched": len(to_dispatch),
        "timed_out": len(unanswered),
        "expired": len(overdue),
        "closed": len(stale),
        "welcomed": len(unwelcomed),
    }


def _auto_close(services: Services, incident_id: int) -> None:
    with services.database.session() as session:
        incident = lock_incident(session, incident_id)
        if incident is None or incident.state not in DECIDED_STATES:
            return
        transition = close_incident(session, incident, "system")
    incident_changed(services, transition)
