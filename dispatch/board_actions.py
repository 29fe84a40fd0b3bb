"""What a dispatcher does from the board: place, page more, close. Each commits, then
tells the workers and the other boards (ids only), the same way the SMS path does."""

from __future__ import annotations

from sqlalchemy.orm import Session

from dispatch.incidents import dispatch_incident, incident_touched, send_pages
from dispatch.queues import QueueName, enqueue
from dispatch.services import Services
from rapidresponse import audit
from rapidresponse.models import Area, Incident, IncidentState
from rapidresponse.refusals import N_, Refused
from rapidresponse.verification import (
    PAGEABLE_STATES,
    close_incident,
    lock_incident,
    open_dispatches,
    responders_to_page,
)

MAX_EXTRA_PAGES = 5  # per click: paging a whole city at once helps nobody


class NotPossible(Refused):
    """The incident is not in a state that allows this; the message says why."""


def _locked(session: Session, incident_id: int) -> Incident:
    incident = lock_incident(session, incident_id)
    if incident is None:
        raise NotPossible(N_("There is no such incident."))
    return incident


def place_incident(services: Services, incident_id: int, area_id: int, staff_id: int) -> None:
    """Give an unplaced incident its area, then find responders there.

    Raises:
        NotPossible: no such area, or the incident already has a place or is decided.
    """
    with services.database.session() as session:
        incident = _locked(session, incident_id)
        area = session.get(Area, area_id)
        if area is None:
            raise NotPossible(N_("There is no such area."))
        if incident.area_id is not None or incident.state not in PAGEABLE_STATES:
            raise NotPossible(N_("Only an open incident without a place can be placed."))
        incident.area_id = area.id
        incident.escalated_at = None  # it was escalated for want of a place: look again
        audit.record(
            session,
            actor=f"staff:{staff_id}",
            action="incident.placed",
            subject=f"incident:{incident_id}",
            details={"area": area.slug},
        )
    enqueue(services.redis, QueueName.REPLIES, dispatch_incident, incident_id)
    incident_touched(services, incident_id)


def page_more(services: Services, incident_id: int, how_many: int, staff_id: int) -> int:
    """Page up to ``how_many`` more on-shift responders. Returns how many were paged.

    A decided incident too, while it is open: a dispatcher may want eyes on a confirmed
    raid, or a second look at a false alarm (their verdicts are recorded and shown; only
    the ones given while it is being verified decide its state).

    Raises:
        NotPossible: the incident is closed or has no place yet.
    """
    how_many = max(1, min(how_many, MAX_EXTRA_PAGES))
    with services.database.session() as session:
        incident = _locked(session, incident_id)
        if incident.state is IncidentState.CLOSED or incident.area_id is None:
            raise NotPossible(N_("Only an open, placed incident can have more responders paged."))
        dispatches = open_dispatches(
            session, incident, responders_to_page(session, incident, how_many)
        )
        audit.record(
            session,
            actor=f"staff:{staff_id}",
            action="incident.paged_more",
            subject=f"incident:{incident_id}",
            details={"asked": how_many, "paged": len(dispatches)},
        )
        dispatch_ids = [d.id for d in dispatches]
    send_pages(services, dispatch_ids)
    incident_touched(services, incident_id)
    return len(dispatch_ids)


def close_from_board(services: Services, incident_id: int, staff_id: int) -> None:
    """Close an incident (its report text is then purged after the retention period).

    Raises:
        NotPossible: it is closed already.
    """
    with services.database.session() as session:
        incident = _locked(session, incident_id)
        if incident.state is IncidentState.CLOSED:
            raise NotPossible(N_("This incident is closed already."))
        close_incident(session, incident, f"staff:{staff_id}")
    incident_touched(services, incident_id)
