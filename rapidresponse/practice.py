"""PRACTICE: a responder's one-person drill on the real hotline.

A responder texts PRACTICE (PRACTICAR) and gets a page that says it is not real, with a
code of its own; they answer it as they would a real one (CODE GO, then CODE CONFIRM,
FALSE or UNCLEAR) and are told how long each step took. A practice is no incident: no
report, no dispatch, no alert, nobody else paged. Its times are kept (no text is) for a
drill's report card. A real dispatch always comes first: a GO without a code goes to the
practice only when no real dispatch is waiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from rapidresponse.codes import new_code
from rapidresponse.models import Incident, Practice, Responder, Verdict

# An unanswered practice is forgotten after this: a GO the next day is for something real.
PRACTICE_WINDOW = timedelta(hours=2)


def start(session: Session, responder: Responder, now: datetime) -> Practice:
    """A new practice for ``responder`` (an unanswered earlier one is superseded: a GO
    without a code goes to the newest)."""
    code = new_code(lambda candidate: _taken(session, candidate))
    practice = Practice(code=code, responder_id=responder.id, started_at=now)
    session.add(practice)
    session.flush()
    return practice


def open_practice(
    session: Session, responder: Responder, code: str | None, now: datetime
) -> Practice | None:
    """The responder's practice waiting for an answer (the one named ``code``, if given)."""
    query = select(Practice).where(
        Practice.responder_id == responder.id,
        Practice.verdict_at.is_(None),
        Practice.started_at > now - PRACTICE_WINDOW,
    )
    if code is not None:
        query = query.where(Practice.code == code)
    return session.scalar(query.order_by(Practice.id.desc()).limit(1))


def go(practice: Practice, now: datetime) -> timedelta:
    """GO: noted once; how long after the page it came."""
    if practice.go_at is None:
        practice.go_at = now
    return practice.go_at - practice.started_at


def decide(practice: Practice, verdict: Verdict, now: datetime) -> tuple[timedelta, timedelta]:
    """The verdict ends the practice: (page to GO, page to verdict)."""
    assert practice.go_at is not None, "a verdict before GO is refused by the caller"
    practice.verdict, practice.verdict_at = verdict, now
    return practice.go_at - practice.started_at, now - practice.started_at


@dataclass(frozen=True)
class PracticeResult:
    """One practice as a coordinator sees it on the responder's page."""

    started_at: datetime
    go_after: str | None  # None: no GO
    verdict_after: str | None  # None: no verdict
    verdict: Verdict | None


def results(session: Session, responder_id: int, limit: int = 10) -> list[PracticeResult]:
    """The responder's latest practices, newest first."""
    found = session.scalars(
        select(Practice)
        .where(Practice.responder_id == responder_id)
        .order_by(Practice.id.desc())
        .limit(limit)
    )
    return [
        PracticeResult(
            started_at=p.started_at,
            go_after=spoken(p.go_at - p.started_at) if p.go_at else None,
            verdict_after=spoken(p.verdict_at - p.started_at) if p.verdict_at else None,
            verdict=p.verdict,
        )
        for p in found
    ]


def spoken(duration: timedelta) -> str:
    """A duration as a text says it: "40 s", "2 min 5 s", "1 h 3 min"."""
    seconds = max(0, int(duration.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _taken(session: Session, code: str) -> bool:
    """A practice code is never an incident's, so CODE GO cannot be mistaken."""
    for model in (Incident, Practice):
        if session.scalar(select(model.id).where(model.code == code)) is not None:
            return True
    return False
