"""What people said about an incident, on its record: responders' verdict notes and
dispatchers' comments.

Both are sealed under the incident's shred key (erased with its reports' text) and shown
to staff only, on the incident page, its live view and its alert's draft page. Nothing
else carries them: the audit says that a comment was made, never what; the socket event
is a hint with the incident's id, and the page re-reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from rapidresponse import audit
from rapidresponse.crypto import DecryptionError, FieldCipher, Purpose
from rapidresponse.display import visible_text
from rapidresponse.models import (
    Dispatch,
    Incident,
    IncidentComment,
    Responder,
    StaffUser,
    Verdict,
)
from rapidresponse.refusals import N_, Refused
from rapidresponse.shredding import ShreddingCipher, incident_key

MAX_COMMENT_CHARS = 500


class CommentRefused(Refused):
    """The comment was not stored; the message says why."""


@dataclass(frozen=True)
class NoteView:
    """One line of the record: "Ana, 10:47: agentes en la 82 y Stark"."""

    at: datetime
    author: str  # a responder's name or a staff member's e-mail
    by_responder: bool
    verdict: Verdict | None  # a responder's verdict this note came with
    text: str | None  # "" when none was given; None once erased


def add_comment(
    session: Session, cipher: ShreddingCipher, incident_id: int, staff_id: int, text: str
) -> IncidentComment:
    """Store a dispatcher's comment, sealed; audited without its text.

    Raises:
        CommentRefused: empty, too long, or no such incident.
    """
    cleaned = " ".join(text.split())
    if not cleaned:
        raise CommentRefused(N_("Write the comment first."))
    if len(cleaned) > MAX_COMMENT_CHARS:
        raise CommentRefused(
            N_("A comment is at most %(limit)d characters."), limit=MAX_COMMENT_CHARS
        )
    if session.get(Incident, incident_id) is None:
        raise CommentRefused(N_("There is no such incident."))
    comment = IncidentComment(
        incident_id=incident_id,
        staff_user_id=staff_id,
        text_sealed=cipher.seal(incident_key(incident_id), cleaned, Purpose.INCIDENT_COMMENT),
    )
    session.add(comment)
    session.flush()
    audit.record(
        session,
        actor=f"staff:{staff_id}",
        action="incident.commented",
        subject=f"incident:{incident_id}",
        details={"comment": comment.id},
    )
    return comment


def notes_of(session: Session, cipher: FieldCipher, incident_id: int) -> list[NoteView]:
    """Verdict notes and comments of an incident, oldest first."""
    notes = [
        NoteView(
            at=dispatch.verdict_at or dispatch.paged_at,
            author=name,
            by_responder=True,
            verdict=dispatch.verdict,
            text=_opened(cipher, dispatch.note_sealed, Purpose.DISPATCH_NOTE),
        )
        for dispatch, name in session.execute(
            select(Dispatch, Responder.name)
            .join(Responder, Responder.id == Dispatch.responder_id)
            .where(Dispatch.incident_id == incident_id, Dispatch.verdict.is_not(None))
        )
    ]
    notes.extend(
        NoteView(
            at=comment.created_at,
            author=email or "",
            by_responder=False,
            verdict=None,
            text=_opened(cipher, comment.text_sealed, Purpose.INCIDENT_COMMENT),
        )
        for comment, email in session.execute(
            select(IncidentComment, StaffUser.email)
            .outerjoin(StaffUser, StaffUser.id == IncidentComment.staff_user_id)
            .where(IncidentComment.incident_id == incident_id)
        )
    )
    return sorted(notes, key=lambda note: note.at)


def _opened(cipher: FieldCipher, sealed: bytes | None, purpose: str) -> str | None:
    if sealed is None:
        return ""
    try:
        return visible_text(cipher.decrypt(sealed, purpose))
    except DecryptionError:  # erased (its incident's key destroyed)
        return None
