"""Drills: the network rehearses on its real installation.

A coordinator starts a drill (an area, a scenario, the responders taking part);
subscribers join it by texting JOIN DRILL / UNIRSE SIMULACRO while it runs. Reports that
start with DRILL / SIMULACRO (or are typed in on the drill's page) become the drill's
incidents, which go through the same code as real ones — paging, GO, verdicts, the alert,
its approval, the ledger, pacing — with two differences that are structural, not
cosmetic:

- who: a drill incident pages only the drill's responders, and a drill alert's audience
  is the drill's participants (``broadcast.audience`` asks this before anything else,
  and ``broadcast.approve`` checks the ledger it wrote against it);
- what it says: every text is marked DRILL / SIMULACRO (``mark``), and so is every screen.

Drill incidents never join a real incident, start a second wave of one, or count
towards a real flood, and a real report never lands in a drill. When the drill ends its
report card (timings, who answered) is frozen: it keeps no report text, so it outlives
the reports, which are purged like any others.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rapidresponse import audit, broadcast, verification
from rapidresponse.codes import new_code
from rapidresponse.crypto import DecryptionError, FieldCipher, Purpose
from rapidresponse.display import visible_text
from rapidresponse.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Area,
    Delivery,
    Dispatch,
    Drill,
    DrillParticipant,
    Incident,
    IncidentState,
    Language,
    Report,
    Responder,
    Subscriber,
)
from rapidresponse.refusals import N_, Refused

# A drill nobody ended stops taking reports after this: a DRILL text a day later is
# someone's real report, and must be treated as one.
LIFETIME = timedelta(hours=12)
# A DRILL text this soon after its drill ended is a participant typing late: it is kept
# with that drill (closed at once, nobody paged) rather than alarming anyone for real.
GRACE = timedelta(hours=2)
MAX_SCENARIO_CHARS = 500
# The word every drill text starts with, in the recipient's language.
MARKS = {Language.EN: "DRILL", Language.ES: "SIMULACRO"}


class DrillRefused(Refused):
    """A drill that cannot be started or changed as asked; its message says why."""


def mark(body: str, language: Language | str) -> str:
    """``body`` starting with the drill word of ``language`` (once, however often asked)."""
    word = MARKS.get(Language(language) if isinstance(language, str) else language, "DRILL")
    if body.startswith(f"{word}: "):
        return body
    return f"{word}: {body}"


def running() -> Any:
    """SQL condition: a drill that has not ended (the caller adds the lifetime)."""
    return Drill.ended_at.is_(None)


def is_running(drill: Drill, now: datetime) -> bool:
    return drill.ended_at is None and drill.started_at > now - LIFETIME


def current(session: Session, now: datetime) -> Drill | None:
    """The newest drill still running: the one a DRILL text or JOIN DRILL belongs to."""
    return session.scalar(
        select(Drill)
        .where(running(), Drill.started_at > now - LIFETIME)
        .order_by(Drill.started_at.desc(), Drill.id.desc())
        .limit(1)
    )


def just_ended(session: Session, now: datetime) -> Drill | None:
    """The drill that ended (or ran out its lifetime) most recently, within GRACE."""
    drill = session.scalar(
        select(Drill)
        .where(Drill.started_at > now - LIFETIME - GRACE)
        .order_by(Drill.started_at.desc(), Drill.id.desc())
        .limit(1)
    )
    if drill is None or is_running(drill, now):
        return None
    over = drill.ended_at or drill.started_at + LIFETIME
    return drill if over > now - GRACE else None


def keep_late(session: Session, incident_id: int) -> None:
    """A late drill report's incident: closed as it is made, so nothing pages anyone."""
    incident = session.get_one(Incident, incident_id)
    if incident.state is not IncidentState.CLOSED:
        verification.close_incident(session, incident, "system")


def start(
    session: Session,
    *,
    area_id: int,
    scenario: str,
    responder_ids: Sequence[int],
    started_by_id: int | None,
    now: datetime,
) -> Drill:
    """A new drill with the chosen responders as its first participants.

    Raises:
        DrillRefused: no scenario, one too long, an unknown area, or no responder.
    """
    scenario = " ".join(visible_text(scenario).split())
    if not scenario:
        raise DrillRefused(N_("Write the scenario the participants will act out."))
    if len(scenario) > MAX_SCENARIO_CHARS:
        raise DrillRefused(
            N_("The scenario is too long: at most %(limit)d characters."),
            limit=MAX_SCENARIO_CHARS,
        )
    if session.get(Area, area_id) is None:
        raise DrillRefused(N_("Choose the area the drill takes place in."))
    responders = session.scalars(
        select(Responder.id).where(Responder.id.in_(responder_ids), Responder.active)
    ).all()
    if not responders:
        raise DrillRefused(N_("Choose at least one active responder to take part."))
    drill = Drill(
        code=new_code(lambda code: _code_taken(session, code)),
        area_id=area_id,
        scenario=scenario,
        started_by_id=started_by_id,
        started_at=now,
    )
    session.add(drill)
    session.flush()
    session.add_all(DrillParticipant(drill_id=drill.id, responder_id=r) for r in responders)
    audit.record(
        session,
        actor=f"staff:{started_by_id}" if started_by_id else "system",
        action="drill.started",
        subject=f"drill:{drill.id}",
        details={"area": area_id, "responders": len(responders)},
    )
    return drill


def _code_taken(session: Session, code: str) -> bool:
    return session.scalar(select(Drill.id).where(Drill.code == code)) is not None


def join(session: Session, drill: Drill, subscriber_id: int) -> bool:
    """Add a subscriber to ``drill``; False when they were in it already."""
    already = session.scalar(
        select(DrillParticipant.id).where(
            DrillParticipant.drill_id == drill.id, DrillParticipant.subscriber_id == subscriber_id
        )
    )
    if already is not None:
        return False
    try:
        with session.begin_nested():  # two JOIN DRILL texts at once: one row
            session.add(DrillParticipant(drill_id=drill.id, subscriber_id=subscriber_id))
    except IntegrityError:
        return False
    return True


def subscriber_ids(drill_id: int) -> Any:
    """SQL: the subscribers taking part in drill ``drill_id``."""
    return select(DrillParticipant.subscriber_id).where(
        DrillParticipant.drill_id == drill_id, DrillParticipant.subscriber_id.is_not(None)
    )


def responder_ids(drill_id: int) -> Any:
    """SQL: the responders taking part in drill ``drill_id``."""
    return select(DrillParticipant.responder_id).where(
        DrillParticipant.drill_id == drill_id, DrillParticipant.responder_id.is_not(None)
    )


def participant_counts(session: Session, drill_id: int) -> tuple[int, int]:
    """(responders, subscribers) taking part."""
    rows = session.execute(
        select(
            func.count(DrillParticipant.responder_id), func.count(DrillParticipant.subscriber_id)
        ).where(DrillParticipant.drill_id == drill_id)
    ).one()
    return int(rows[0]), int(rows[1])


def end(session: Session, drill: Drill, cipher: FieldCipher, now: datetime, by: str) -> None:
    """End the drill: its report card is frozen, its incidents closed and its drafts
    cancelled (nothing of a finished drill pages anyone or goes out afterwards)."""
    if drill.ended_at is not None:
        raise DrillRefused(N_("This drill has already ended."))
    drill.ended_at = now
    drill.card = report_card(session, cipher, drill)
    audit.record(session, actor=by, action="drill.ended", subject=f"drill:{drill.id}")
    still_open = session.scalars(
        select(Incident).where(
            Incident.drill_id == drill.id, Incident.state != IncidentState.CLOSED
        )
    ).all()
    for incident in still_open:
        verification.close_incident(session, incident, by)
    drafts = session.scalars(
        select(Alert.id).where(Alert.drill_id == drill.id, Alert.status == AlertStatus.DRAFT)
    ).all()
    for alert_id in drafts:
        broadcast.cancel(session, alert_id)


def end_stale(session: Session, cipher: FieldCipher, now: datetime) -> int:
    """End the drills nobody ended, at the end of their lifetime, freezing their cards
    before the reports they are made from are purged. Returns how many."""
    stale = session.scalars(
        select(Drill).where(running(), Drill.started_at <= now - LIFETIME).with_for_update()
    ).all()
    for drill in stale:
        end(session, drill, cipher, drill.started_at + LIFETIME, "system")
    return len(stale)


# --- the report card -----------------------------------------------------------------

STEPS = ("dispatch", "go", "verdict", "approval", "last_delivery")


def card_of(session: Session, cipher: FieldCipher, drill: Drill) -> dict[str, Any]:
    """The frozen card of an ended drill; the card so far of a running one."""
    return drill.card if drill.card is not None else report_card(session, cipher, drill)


def report_card(session: Session, cipher: FieldCipher, drill: Drill) -> dict[str, Any]:
    """Timings from the first report to each step, and who answered: JSON-ready, with
    no report text and no phone number (subscribers are masked to their last digits)."""
    incidents = select(Incident.id).where(Incident.drill_id == drill.id)
    first_report = session.scalar(
        select(func.min(Report.received_at)).where(Report.incident_id.in_(incidents))
    )
    moments = _step_moments(session, drill, incidents)
    return {
        "first_report_at": first_report.isoformat() if first_report else None,
        "reports": session.scalar(
            select(func.count()).select_from(Report).where(Report.incident_id.in_(incidents))
        )
        or 0,
        "steps": {step: _seconds(first_report, moments[step]) for step in STEPS},
        "responders": _responder_rows(session, drill, incidents, first_report),
        "subscribers": _subscriber_rows(session, cipher, drill, first_report),
    }


def _step_moments(session: Session, drill: Drill, incidents: Any) -> dict[str, datetime | None]:
    in_drill = Dispatch.incident_id.in_(incidents)
    alerts = select(Alert.id).where(Alert.drill_id == drill.id, Alert.kind == AlertKind.ALERT)
    return {
        "dispatch": session.scalar(select(func.min(Dispatch.paged_at)).where(in_drill)),
        "go": session.scalar(select(func.min(Dispatch.acknowledged_at)).where(in_drill)),
        "verdict": session.scalar(select(func.min(Dispatch.verdict_at)).where(in_drill)),
        "approval": session.scalar(select(func.min(Alert.approved_at)).where(Alert.id.in_(alerts))),
        "last_delivery": session.scalar(
            select(func.max(Delivery.sent_at)).where(Delivery.alert_id.in_(alerts))
        ),
    }


def _seconds(start: datetime | None, moment: datetime | None) -> int | None:
    if start is None or moment is None:
        return None
    return max(0, round((moment - start).total_seconds()))


def _responder_rows(
    session: Session, drill: Drill, incidents: Any, first: datetime | None
) -> list[dict[str, Any]]:
    people = session.scalars(
        select(Responder).where(Responder.id.in_(responder_ids(drill.id))).order_by(Responder.name)
    ).all()
    rows = []
    for responder in people:
        dispatch = session.scalar(
            select(Dispatch)
            .where(Dispatch.responder_id == responder.id, Dispatch.incident_id.in_(incidents))
            .order_by(Dispatch.paged_at)
            .limit(1)
        )
        rows.append(
            {
                "name": responder.name,
                "paged": dispatch is not None,
                "go_after": _seconds(first, dispatch.acknowledged_at) if dispatch else None,
                "verdict": dispatch.verdict.value if dispatch and dispatch.verdict else None,
                "verdict_after": _seconds(first, dispatch.verdict_at) if dispatch else None,
            }
        )
    return rows


def _subscriber_rows(
    session: Session, cipher: FieldCipher, drill: Drill, first: datetime | None
) -> list[dict[str, Any]]:
    alerts = select(Alert.id).where(Alert.drill_id == drill.id, Alert.kind == AlertKind.ALERT)
    rows = session.execute(
        select(Subscriber.phone_sealed, func.max(Delivery.sent_at))
        .outerjoin(
            Delivery,
            (Delivery.subscriber_id == Subscriber.id) & Delivery.alert_id.in_(alerts),
        )
        .where(Subscriber.id.in_(subscriber_ids(drill.id)))
        .group_by(Subscriber.id, Subscriber.phone_sealed)
        .order_by(Subscriber.id)
    ).all()
    return [
        {"mask": _masked(cipher, sealed), "delivered_after": _seconds(first, sent_at)}
        for sealed, sent_at in rows
    ]


def _masked(cipher: FieldCipher, sealed: bytes) -> str:
    try:
        phone = cipher.decrypt(sealed, Purpose.SUBSCRIBER_PHONE)
    except DecryptionError:
        return "•••"
    return f"•••-{phone[-4:]}"
