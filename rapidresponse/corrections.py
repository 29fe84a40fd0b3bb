"""Correcting the record: merge, split, reopen, unplace.

A raid morning leaves a messy record: two incidents that were one, a report that was about
something else, an incident closed too soon, a place chosen wrong. Each correction keeps
the invariants the rest relies on, or is refused with the reason:

- what was said stays readable and erasable together: a report, note or comment that moves
  to another incident is re-sealed under that incident's shred key;
- an alert that went out stays tied to what it was about: an incident whose alert was
  approved is never merged away or unplaced;
- every code anyone was given keeps working: a merged incident's code leads to the one it
  was merged into (on the board and in responders' texts).

Each is audited (ids only) and leaves the jobs to the caller (``dispatch.corrections``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from rapidresponse import audit
from rapidresponse.codes import new_code
from rapidresponse.crypto import DecryptionError, Purpose
from rapidresponse.models import (
    Alert,
    AlertStatus,
    AuditEvent,
    Dispatch,
    DispatchState,
    Incident,
    IncidentComment,
    IncidentState,
    Report,
    utcnow,
)
from rapidresponse.refusals import N_, Refused
from rapidresponse.shredding import ShreddingCipher, incident_key
from rapidresponse.verification import (
    OPEN_DISPATCH_STATES,
    PAGEABLE_STATES,
    Transition,
    decide_by_verdicts,
    lock_incident,
    set_state,
)


class CorrectionRefused(Refused):
    """The correction would break the record; the message says why."""


@dataclass(frozen=True)
class Corrected:
    """What a correction did, for the jobs that follow it."""

    incident_id: int  # the incident the dispatcher should look at now
    transition: Transition | None = None  # a state it decided (a merge reaching quorum)
    dispatch_again: bool = False  # it is being verified and may need responders
    opened: bool = False  # a new incident (a split): dispatch it like any other
    verify_again: bool = False  # reopened while being verified: a new verification deadline


def _reseal(
    cipher: ShreddingCipher, token: bytes | None, purpose: str, incident_id: int
) -> bytes | None:
    """``token`` sealed again under ``incident_id``'s shred key (None if unreadable)."""
    if token is None:
        return None
    try:
        plaintext = cipher.decrypt(token, purpose)
    except DecryptionError:  # erased already: nothing to carry over
        return None
    return cipher.seal(incident_key(incident_id), plaintext, purpose)


def _incident(session: Session, incident_id: int) -> Incident:
    incident = lock_incident(session, incident_id)
    if incident is None:
        raise CorrectionRefused(N_("There is no such incident."))
    return incident


def _alerted(session: Session, incident_id: int) -> bool:
    """Whether an alert about it was approved (it went, or is going, out)."""
    return (
        session.scalar(
            select(func.count())
            .select_from(Alert)
            .where(
                Alert.incident_id == incident_id,
                Alert.status.in_((AlertStatus.APPROVED, AlertStatus.COMPLETE)),
            )
        )
        or 0
    ) > 0


def _pending_drafts(session: Session, incident_id: int) -> bool:
    return (
        session.scalar(
            select(func.count())
            .select_from(Alert)
            .where(Alert.incident_id == incident_id, Alert.status == AlertStatus.DRAFT)
        )
        or 0
    ) > 0


# --- merge --------------------------------------------------------------------------------


def merge(
    session: Session,
    cipher: ShreddingCipher,
    kept_id: int,
    absorbed_id: int,
    staff_id: int,
    quorum: int,
) -> Corrected:
    """Move everything of ``absorbed_id`` into ``kept_id`` and close it as merged.

    Raises:
        CorrectionRefused: the same incident, a closed one, or ``absorbed_id`` has an
            alert approved or drafted (merge the other way, or cancel the draft first).
    """
    if kept_id == absorbed_id:
        raise CorrectionRefused(N_("An incident cannot be merged into itself."))
    # Lock both, always the lower id first, so two opposite merges cannot deadlock.
    first, second = sorted((kept_id, absorbed_id))
    locked = {first: _incident(session, first), second: _incident(session, second)}
    kept, absorbed = locked[kept_id], locked[absorbed_id]
    if IncidentState.CLOSED in (kept.state, absorbed.state):
        raise CorrectionRefused(N_("Only open incidents can be merged."))
    if kept.drill_id != absorbed.drill_id:
        # A drill's verdicts must never decide a real incident, nor a drill swallow one.
        raise CorrectionRefused(N_("A drill's incident and a real one cannot be merged."))
    if _alerted(session, absorbed.id):
        raise CorrectionRefused(
            N_("Its alert went out: merge the other incident into this one instead.")
        )
    if _pending_drafts(session, absorbed.id):
        raise CorrectionRefused(N_("It has an alert waiting for approval: cancel it first."))
    _move_reports(session, cipher, absorbed, kept)
    _move_dispatches(session, cipher, absorbed, kept)
    _move_comments(session, cipher, absorbed, kept)
    if kept.area_id is None and absorbed.area_id is not None:
        kept.area_id = absorbed.area_id
        kept.escalated_at = None
    if kept.location_sealed is None:
        kept.location_sealed = _reseal(cipher, absorbed.location_sealed, Purpose.LOCATION, kept.id)
    kept.reporter_count = (kept.reporter_count or 0) + (absorbed.reporter_count or 0)
    kept.possible_flood = kept.possible_flood or absorbed.possible_flood
    kept.opened_at = min(kept.opened_at, absorbed.opened_at)
    session.execute(
        update(Incident)
        .where(Incident.follows_id == absorbed.id)
        .values(follows_id=kept.id)
        .execution_options(synchronize_session=False)
    )
    absorbed.merged_into_id, absorbed.location_sealed = kept.id, None
    absorbed.closed_at = utcnow()
    by = f"staff:{staff_id}"
    set_state(session, absorbed, IncidentState.CLOSED, by)
    audit.record(
        session,
        actor=by,
        action="incident.merged",
        subject=f"incident:{kept.id}",
        details={"from": absorbed.id},
    )
    session.flush()
    transition = decide_by_verdicts(session, kept, quorum, by)  # verdicts that moved in
    return Corrected(
        kept.id,
        transition=transition,
        dispatch_again=transition is None and kept.state in PAGEABLE_STATES,
    )


def _move_reports(
    session: Session, cipher: ShreddingCipher, source: Incident, target: Incident
) -> None:
    for report in session.scalars(select(Report).where(Report.incident_id == source.id)):
        report.text_sealed = _reseal(cipher, report.text_sealed, Purpose.REPORT_TEXT, target.id)
        report.location_sealed = _reseal(
            cipher, report.location_sealed, Purpose.LOCATION, target.id
        )
        report.incident_id = target.id


def _move_dispatches(
    session: Session, cipher: ShreddingCipher, source: Incident, target: Incident
) -> None:
    """Pages and verdicts move; a responder paged for both keeps the page with the
    verdict (one row per responder and incident), the other's note becomes a comment."""
    already = {
        d.responder_id: d
        for d in session.scalars(select(Dispatch).where(Dispatch.incident_id == target.id))
    }
    for dispatch in session.scalars(select(Dispatch).where(Dispatch.incident_id == source.id)):
        note = _reseal(cipher, dispatch.note_sealed, Purpose.DISPATCH_NOTE, target.id)
        twin = already.get(dispatch.responder_id)
        if twin is None:
            dispatch.note_sealed, dispatch.incident_id = note, target.id
            continue
        if twin.verdict is None and dispatch.verdict is not None:
            twin.verdict, twin.verdict_at, twin.note_sealed = (
                dispatch.verdict,
                dispatch.verdict_at,
                note,
            )
            twin.state = dispatch.state
        session.delete(dispatch)


def _move_comments(
    session: Session, cipher: ShreddingCipher, source: Incident, target: Incident
) -> None:
    for comment in session.scalars(
        select(IncidentComment).where(IncidentComment.incident_id == source.id)
    ):
        comment.text_sealed = _reseal(
            cipher, comment.text_sealed, Purpose.INCIDENT_COMMENT, target.id
        )
        comment.incident_id = target.id


# --- split --------------------------------------------------------------------------------


def split(
    session: Session, cipher: ShreddingCipher, incident_id: int, report_code: str, staff_id: int
) -> Corrected:
    """Take one report out of an incident into a new incident of its own.

    Raises:
        CorrectionRefused: no such report in it, it is its only report, or it is closed.
    """
    incident = _incident(session, incident_id)
    if incident.state is IncidentState.CLOSED:
        raise CorrectionRefused(N_("Reopen the incident first."))
    report = session.scalar(
        select(Report).where(Report.incident_id == incident.id, Report.code == report_code)
    )
    if report is None:
        raise CorrectionRefused(N_("That report is not part of this incident."))
    others = session.scalar(
        select(func.count())
        .select_from(Report)
        .where(Report.incident_id == incident.id, Report.id != report.id)
    )
    if not others:
        raise CorrectionRefused(N_("It is the incident's only report: nothing to split."))
    now = utcnow()
    alone = Incident(
        code=_new_incident_code(session),
        area_id=report.area_id or incident.area_id,
        # Now, not when the report came: its verification deadline starts now.
        opened_at=now,
        state_changed_at=now,
        reporter_count=1,
        drill_id=incident.drill_id,  # a drill's report stays in the drill
    )
    session.add(alone)
    session.flush()
    report.text_sealed = _reseal(cipher, report.text_sealed, Purpose.REPORT_TEXT, alone.id)
    report.location_sealed = _reseal(cipher, report.location_sealed, Purpose.LOCATION, alone.id)
    alone.location_sealed = report.location_sealed  # the same place, under the same key
    report.incident_id = alone.id
    incident.reporter_count = max(1, (incident.reporter_count or 1) - 1)
    audit.record(
        session,
        actor=f"staff:{staff_id}",
        action="incident.split",
        subject=f"incident:{alone.id}",
        details={"from": incident.id, "report": report.code},
    )
    return Corrected(alone.id, opened=True)


def _new_incident_code(session: Session) -> str:
    return new_code(
        lambda code: session.scalar(select(Incident.id).where(Incident.code == code)) is not None
    )


# --- reopen -------------------------------------------------------------------------------


def reopen(session: Session, incident_id: int, staff_id: int, retention: timedelta) -> Corrected:
    """Reopen a closed incident, in the state it was closed from, while its text is kept.

    Raises:
        CorrectionRefused: it is not closed, it was merged, or its retention is over.
    """
    incident = _incident(session, incident_id)
    if incident.state is not IncidentState.CLOSED:
        raise CorrectionRefused(N_("Only a closed incident can be reopened."))
    if incident.merged_into_id is not None:
        raise CorrectionRefused(N_("It was merged into another incident: open that one."))
    closed_at = incident.closed_at or incident.state_changed_at
    if closed_at <= utcnow() - retention:
        raise CorrectionRefused(N_("Its reports were erased: it cannot be reopened."))
    previous = _state_before_closing(session, incident.id)
    incident.closed_at = None
    by = f"staff:{staff_id}"
    set_state(session, incident, previous, by)
    audit.record(session, actor=by, action="incident.reopened", subject=f"incident:{incident.id}")
    being_verified = previous in PAGEABLE_STATES
    return Corrected(incident.id, dispatch_again=being_verified, verify_again=being_verified)


def _state_before_closing(session: Session, incident_id: int) -> IncidentState:
    details = session.scalar(
        select(AuditEvent.details)
        .where(
            AuditEvent.action == "incident.closed",
            AuditEvent.subject == f"incident:{incident_id}",
        )
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    try:
        previous = IncidentState((details or {}).get("from", ""))
    except ValueError:
        return IncidentState.REPORTED
    return IncidentState.REPORTED if previous is IncidentState.CLOSED else previous


# --- unplace ------------------------------------------------------------------------------


def unplace(session: Session, incident_id: int, staff_id: int) -> Corrected:
    """Take back an incident's place (it was placed wrong): its open pages close, and a
    dispatcher places it again.

    Raises:
        CorrectionRefused: it has no place, is closed, or has an alert (whose audience
            is that place).
    """
    incident = _incident(session, incident_id)
    if incident.area_id is None:
        raise CorrectionRefused(N_("It has no place to undo."))
    if incident.state is IncidentState.CLOSED:
        raise CorrectionRefused(N_("Reopen the incident first."))
    if _alerted(session, incident.id) or _pending_drafts(session, incident.id):
        raise CorrectionRefused(
            N_("Its alert is for that place: cancel the draft or send a correction instead.")
        )
    previous_area = incident.area_id
    incident.area_id, incident.escalated_at = None, None
    _close_pages(session, incident.id)
    by = f"staff:{staff_id}"
    if incident.state is IncidentState.DISPATCHED:
        set_state(session, incident, IncidentState.REPORTED, by)
    audit.record(
        session,
        actor=by,
        action="incident.unplaced",
        subject=f"incident:{incident.id}",
        details={"area": previous_area},
    )
    return Corrected(incident.id)


def _close_pages(session: Session, incident_id: int) -> None:
    """Pages sent for the wrong place end (a GO there would send someone to the wrong place)."""
    session.execute(
        update(Dispatch)
        .where(Dispatch.incident_id == incident_id, Dispatch.state.in_(OPEN_DISPATCH_STATES))
        .values(state=DispatchState.DONE)
        .execution_options(synchronize_session="fetch")
    )
