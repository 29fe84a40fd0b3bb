"""Responders: who gets paged for an incident, and how their verdicts decide its state.

Only verdicts from dispatched responders count. ``quorum`` confirmations make an incident
``confirmed`` (the only state that can lead to a public alert); ``quorum`` false-alarm
verdicts make it ``false_alarm``; nothing conclusive by the deadline makes it
``unverified``. Every transition is written to the audit trail, with ids, never numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import CompoundSelect, func, select, update
from sqlalchemy.orm import Session

from rapidresponse import audit, drills
from rapidresponse.areas import adjacent_area_ids
from rapidresponse.crypto import FieldCipher, Purpose
from rapidresponse.display import visible_text
from rapidresponse.models import (
    Dispatch,
    DispatchState,
    Incident,
    IncidentState,
    Report,
    Responder,
    Verdict,
    responder_areas,
    utcnow,
)
from rapidresponse.shredding import ShreddingCipher, incident_key

PAGEABLE_STATES = (IncidentState.REPORTED, IncidentState.DISPATCHED)
OPEN_DISPATCH_STATES = (DispatchState.PAGED, DispatchState.GOING)
PAGE_TEXT_CHARS = 60  # of the first report, in the page


@dataclass(frozen=True)
class Transition:
    incident_id: int
    state: IncidentState


def actor(responder: Responder) -> str:
    return f"responder:{responder.id}"


def set_state(session: Session, incident: Incident, state: IncidentState, by: str) -> Transition:
    """Change state (the caller holds the incident's lock), audited; decided incidents
    close their open dispatches, so no late page goes out and no stale GO lingers."""
    previous = incident.state
    incident.state, incident.state_changed_at = state, utcnow()
    audit.record(
        session,
        actor=by,
        action=f"incident.{state.value}",
        subject=f"incident:{incident.id}",
        details={"from": previous.value},
    )
    if state not in PAGEABLE_STATES:
        session.execute(
            update(Dispatch)
            .where(Dispatch.incident_id == incident.id, Dispatch.state.in_(OPEN_DISPATCH_STATES))
            .values(state=DispatchState.DONE)
            .execution_options(synchronize_session="fetch")
        )
    return Transition(incident.id, state)


def lock_incident(session: Session, incident_id: int) -> Incident | None:
    """The incident, re-read under a row lock. Lock order: incident first, then dispatch."""
    return session.get(Incident, incident_id, with_for_update=True, populate_existing=True)


def lock_dispatch(session: Session, dispatch_id: int) -> Dispatch | None:
    return session.get(Dispatch, dispatch_id, with_for_update=True, populate_existing=True)


def decisive_verdicts(session: Session, incident_id: int) -> dict[Verdict | None, int]:
    rows = session.execute(
        select(Dispatch.verdict, func.count())
        .where(Dispatch.incident_id == incident_id, Dispatch.verdict.is_not(None))
        .group_by(Dispatch.verdict)
    )
    return {verdict: count for verdict, count in rows}


def responders_to_page(session: Session, incident: Incident, wanted: int) -> list[Responder]:
    """On-shift responders not yet paged for it: its own area's first, then adjacent areas'."""
    if incident.area_id is None or wanted <= 0:
        return []
    # Not anyone paged for this one before, nor anyone out on another incident right now.
    out_on = select(Dispatch.responder_id).where(Dispatch.state == DispatchState.GOING)
    if incident.drill_id is None:
        # Someone out on a drill is free for the real thing (and is paged for it).
        out_on = out_on.join(Incident, Incident.id == Dispatch.incident_id).where(
            Incident.drill_id.is_(None)
        )
    already = select(Dispatch.responder_id).where(Dispatch.incident_id == incident.id).union(out_on)
    if incident.drill_id is not None:
        return _drill_responders(session, incident.drill_id, already, wanted)
    chosen: list[Responder] = []
    for area_ids in ([incident.area_id], adjacent_area_ids(session, incident.area_id)):
        candidates = session.scalars(
            select(Responder)
            .join(responder_areas)
            .where(
                responder_areas.c.area_id.in_(area_ids),
                Responder.on_shift,
                Responder.active,
                Responder.id.not_in(already),
                Responder.id.not_in([r.id for r in chosen]),
            )
            .order_by(Responder.last_seen_at.desc().nulls_last(), Responder.id)
            .distinct()
        ).all()
        chosen.extend(candidates[: wanted - len(chosen)])
        if len(chosen) >= wanted:
            break
    return chosen


def _drill_responders(
    session: Session, drill_id: int, already: CompoundSelect[int], wanted: int
) -> list[Responder]:
    """A drill pages its own responders only, on shift or not (they came to practise),
    and never one who is out on an incident (a real one above all)."""
    return list(
        session.scalars(
            select(Responder)
            .where(
                Responder.id.in_(drills.responder_ids(drill_id)),
                Responder.active,
                Responder.id.not_in(already),
            )
            .order_by(Responder.last_seen_at.desc().nulls_last(), Responder.id)
            .limit(wanted)
        )
    )


def open_dispatches(
    session: Session, incident: Incident, responders: Sequence[Responder]
) -> list[Dispatch]:
    dispatches = [Dispatch(incident_id=incident.id, responder_id=r.id) for r in responders]
    session.add_all(dispatches)
    session.flush()
    for dispatch in dispatches:
        audit.record(
            session,
            actor="system",
            action="dispatch.paged",
            subject=f"incident:{incident.id}",
            details={"responder": dispatch.responder_id},
        )
    if dispatches and incident.state is IncidentState.REPORTED:
        set_state(session, incident, IncidentState.DISPATCHED, "system")
    return dispatches


def escalate(session: Session, incident: Incident) -> bool:
    """Nobody to page: flag it for the dispatchers (once). True if newly flagged."""
    if incident.escalated_at is not None:
        return False
    incident.escalated_at = utcnow()
    audit.record(
        session,
        actor="system",
        action="incident.escalated",
        subject=f"incident:{incident.id}",
        details={"placed": incident.area_id is not None},
    )
    return True


def page_summary(session: Session, cipher: FieldCipher, incident: Incident) -> str:
    """What was seen, from the first report, short enough for one SMS page."""
    first = session.scalar(
        select(Report).where(Report.incident_id == incident.id).order_by(Report.id).limit(1)
    )
    if first is None or first.text_sealed is None:
        return ""
    text = " ".join(visible_text(cipher.decrypt(first.text_sealed, Purpose.REPORT_TEXT)).split())
    # "..." not "…": the ellipsis character is not GSM-7 and would double the cost.
    return text if len(text) <= PAGE_TEXT_CHARS else text[: PAGE_TEXT_CHARS - 3] + "..."


MAX_MERGE_HOPS = 8  # a code merged into one merged into another...


def incident_for_code(session: Session, code: str) -> int | None:
    """The incident a code names now: its own, or the one it was merged into."""
    row = session.execute(
        select(Incident.id, Incident.merged_into_id).where(Incident.code == code.upper())
    ).first()
    for _hop in range(MAX_MERGE_HOPS):
        if row is None or row.merged_into_id is None:
            break
        row = session.execute(
            select(Incident.id, Incident.merged_into_id).where(Incident.id == row.merged_into_id)
        ).first()
    return row.id if row is not None else None


def find_dispatch(session: Session, responder: Responder, code: str | None) -> list[Dispatch]:
    """The responder's open dispatch for ``code`` (the code they were paged with, even if
    that incident was merged since), or all open ones when no code is given."""
    query = (
        select(Dispatch)
        .where(Dispatch.responder_id == responder.id, Dispatch.state.in_(OPEN_DISPATCH_STATES))
        .order_by(Dispatch.paged_at.desc())
    )
    if code is not None:
        query = query.where(Dispatch.incident_id == incident_for_code(session, code))
    return list(session.scalars(query))


def acknowledge(session: Session, dispatch_id: int) -> bool:
    """GO: the page is taken. False if the dispatch closed meanwhile (timed out, decided)."""
    dispatch = lock_dispatch(session, dispatch_id)
    if dispatch is None or dispatch.state not in OPEN_DISPATCH_STATES:
        return False
    if dispatch.state is DispatchState.PAGED:
        dispatch.state, dispatch.acknowledged_at = DispatchState.GOING, utcnow()
        audit.record(
            session,
            actor=f"responder:{dispatch.responder_id}",
            action="dispatch.going",
            subject=f"incident:{dispatch.incident_id}",
        )
    return True


class StaleDispatch(Exception):
    """The dispatch closed before the verdict arrived (timed out, or the incident decided)."""


def record_verdict(
    session: Session,
    cipher: ShreddingCipher,
    incident_id: int,
    dispatch_id: int,
    verdict: Verdict,
    note: str,
    quorum: int,
) -> Transition | None:
    """Store a responder's verdict; return the incident's transition if it decided one.

    Raises:
        StaleDispatch: the dispatch is no longer open; nothing was recorded.
    """
    incident = lock_incident(session, incident_id)
    dispatch = lock_dispatch(session, dispatch_id)
    if incident is None or dispatch is None or dispatch.state not in OPEN_DISPATCH_STATES:
        raise StaleDispatch
    dispatch.verdict, dispatch.verdict_at = verdict, utcnow()
    dispatch.acknowledged_at = dispatch.acknowledged_at or dispatch.verdict_at
    dispatch.state = DispatchState.DONE
    dispatch.note_sealed = (
        cipher.seal(incident_key(incident.id), note, Purpose.DISPATCH_NOTE) if note else None
    )
    by = f"responder:{dispatch.responder_id}"
    audit.record(
        session, actor=by, action=f"verdict.{verdict.value}", subject=f"incident:{incident.id}"
    )
    session.flush()
    return decide_by_verdicts(session, incident, quorum, by)


def decide_by_verdicts(
    session: Session, incident: Incident, quorum: int, by: str
) -> Transition | None:
    """Confirmed or false alarm once ``quorum`` verdicts agree, while it is being
    verified (a verdict after a decision is recorded, and decides nothing)."""
    if incident.state not in PAGEABLE_STATES:
        return None
    tally = decisive_verdicts(session, incident.id)
    if tally.get(Verdict.CONFIRM, 0) >= quorum:
        return set_state(session, incident, IncidentState.CONFIRMED, by)
    if tally.get(Verdict.FALSE, 0) >= quorum:
        return set_state(session, incident, IncidentState.FALSE_ALARM, by)
    return None


def time_out_dispatch(session: Session, dispatch_id: int) -> Dispatch | None:
    """Mark a page that was never acknowledged; the dispatch, if it did time out."""
    dispatch = lock_dispatch(session, dispatch_id)
    if dispatch is None or dispatch.state is not DispatchState.PAGED:
        return None
    dispatch.state = DispatchState.TIMED_OUT
    audit.record(
        session,
        actor="system",
        action="dispatch.timed_out",
        subject=f"incident:{dispatch.incident_id}",
        details={"responder": dispatch.responder_id},
    )
    return dispatch


def expire_verification(session: Session, incident_id: int) -> Transition | None:
    """Past the deadline with nothing conclusive: unverified (no public alert)."""
    incident = lock_incident(session, incident_id)
    if incident is None or incident.state not in PAGEABLE_STATES:
        return None
    return set_state(session, incident, IncidentState.UNVERIFIED, "system")


def set_shift(session: Session, responder: Responder, on_shift: bool) -> None:
    responder.on_shift, responder.last_seen_at = on_shift, utcnow()
    audit.record(
        session,
        actor=actor(responder),
        action="responder.on_shift" if on_shift else "responder.off_shift",
    )


def close_incident(session: Session, incident: Incident, by: str) -> Transition:
    """Close a decided (or abandoned) incident; its report text is purged after retention."""
    incident.closed_at = utcnow()
    return set_state(session, incident, IncidentState.CLOSED, by)
