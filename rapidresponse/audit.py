"""The audit trail: append-only and hash-chained, with no phone numbers in it.

Each event's hash covers the previous event's hash, so deleting or editing a row breaks
the chain from there on, and ``verify`` finds where. Details carry ids and codes only;
a value that looks like a phone number is refused.

Recording and chaining are two steps. ``record`` only inserts the event, so a report
never waits for another transaction's audit event to commit (one lock held to commit by
every report made PostgreSQL take fewer reports per second than SQLite). ``seal`` then
chains what has been committed, one sealer at a time, in the order it finds them: the
housekeeping runs it every few seconds and ``verify`` runs it first. Until its seal, an
event can be changed without a trace; from then on, not.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from rapidresponse.models import AuditEvent, Incident, Responder, StaffUser, utcnow

GENESIS = "0" * 64
PUBLIC = "public"  # the actor of what community members do (reports)
AUDIT_LOCK_KEY = 7_244_113_001  # any constant our database uses for nothing else
_LONG_DIGIT_RUN = re.compile(r"\d{7,}")
CHECKPOINT_PREFIX = "rr-audit:"
_CHECKPOINT = re.compile(rf"{CHECKPOINT_PREFIX}([1-9][0-9]{{0,17}}):([0-9a-f]{{64}})")


@dataclass(frozen=True)
class Checkpoint:
    """The head of the chain at one moment, to keep outside this server.

    Whoever holds the database can rewrite every event and recompute every hash: the
    chain alone would still verify. A checkpoint kept elsewhere (printed, in a
    coordinator's notes) does not change with it: the rewritten event at its position has
    another hash. It is not signed: a key on the server signs for whoever holds the server.
    """

    position: int
    hash: str

    def __str__(self) -> str:
        return f"{CHECKPOINT_PREFIX}{self.position}:{self.hash}"

    @classmethod
    def parse(cls, typed: str) -> Checkpoint:
        """A checkpoint as ``str()`` wrote it; ValueError if it is not one."""
        found = _CHECKPOINT.fullmatch(typed.strip().lower())
        if found is None:
            raise ValueError(f"not an audit checkpoint (expected {CHECKPOINT_PREFIX}N:HASH)")
        return cls(int(found.group(1)), found.group(2))


class NotForTheAuditTrail(ValueError):
    """A detail that looks like a phone number (the message never repeats it)."""


def _when(actor: str) -> datetime:
    """Now; to the minute for what the public does (a report's exact time could be matched
    against the provider's record of the message, and so of its sender)."""
    now = utcnow()
    return now.replace(second=0, microsecond=0) if actor == PUBLIC else now


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    subject: str = "",
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Add an event, to be chained by the next ``seal`` (takes no lock)."""
    clean = dict(details or {})
    _refuse_numbers({"actor": actor, "action": action, "subject": subject, "details": clean})
    event = AuditEvent(
        occurred_at=_when(actor), actor=actor, action=action, subject=subject, details=clean
    )
    session.add(event)
    session.flush()
    return event


def seal(session: Session) -> int:
    """Chain every committed event not chained yet, after the last chained one.

    Returns how many were sealed. One sealer at a time (an advisory lock on PostgreSQL,
    the write lock on SQLite), so the chain never forks; it is held only for this.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_LOCK_KEY})
    last = session.scalar(
        select(AuditEvent)
        .where(AuditEvent.position.is_not(None))
        .order_by(AuditEvent.position.desc())
        .limit(1)
    )
    position, previous = (0, GENESIS) if last is None else (last.position or 0, last.hash)
    pending = session.scalars(
        select(AuditEvent).where(AuditEvent.position.is_(None)).order_by(AuditEvent.id)
    ).all()
    for event in pending:
        position += 1
        event.position, event.prev_hash = position, previous
        event.hash = event_hash(event)
        previous = event.hash
    session.flush()
    return len(pending)


def event_hash(event: AuditEvent) -> str:
    canonical = json.dumps(
        [
            event.prev_hash,
            event.occurred_at.isoformat(),
            event.actor,
            event.action,
            event.subject,
            event.details,
        ],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def verify(session: Session) -> int | None:
    """Seal what is pending, then the id of the first event that breaks the chain, or
    None when it is intact."""
    seal(session)
    previous = GENESIS
    chained = select(AuditEvent).where(AuditEvent.position.is_not(None))
    for event in session.scalars(chained.order_by(AuditEvent.position)):
        if event.prev_hash != previous or event_hash(event) != event.hash:
            return event.id
        previous = event.hash
    return None


def checkpoint(session: Session) -> Checkpoint | None:
    """Seal what is pending, then the head of the chain; None while it is empty."""
    seal(session)
    head = session.scalar(
        select(AuditEvent)
        .where(AuditEvent.position.is_not(None))
        .order_by(AuditEvent.position.desc())
        .limit(1)
    )
    if head is None or head.position is None or head.hash is None:
        return None
    return Checkpoint(head.position, head.hash)


def matches(session: Session, kept: Checkpoint) -> bool:
    """Whether the chain still holds the event ``kept`` names, with the same hash; with an
    intact chain (``verify``), everything up to it is then as it was when it was kept."""
    found = session.scalar(select(AuditEvent.hash).where(AuditEvent.position == kept.position))
    return found == kept.hash


def _refuse_numbers(fields: Mapping[str, Any]) -> None:
    """Every text in the event, at any depth (keys too), checked for a run of 7+ digits."""
    for key, value in fields.items():
        if any(_LONG_DIGIT_RUN.search(text) for text in _texts_in(key, value)):
            raise NotForTheAuditTrail(f"{key!r} looks like it holds a phone number")


def _texts_in(*values: Any) -> list[str]:
    found: list[str] = []
    for value in values:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, Mapping):
            found.extend(_texts_in(*value.keys(), *value.values()))
        elif isinstance(value, list | tuple | set | frozenset):
            found.extend(_texts_in(*value))
    return found


# --- reading ------------------------------------------------------------------------------

_REFERENCE = re.compile(r"^(staff|responder|incident):([0-9]{1,18})$")


def readable_names(session: Session, references: set[str]) -> dict[str, str]:
    """What the chain's ids ("staff:3", "responder:7", "incident:12") stand for, to show
    people names: an e-mail, a responder's name, an incident's code. The chain itself keeps
    the ids (a name can change; the record must not)."""
    wanted: dict[str, set[int]] = {"staff": set(), "responder": set(), "incident": set()}
    for reference in references:
        found = _REFERENCE.match(reference or "")
        if found:
            wanted[found.group(1)].add(int(found.group(2)))
    columns = {
        "staff": (StaffUser.id, StaffUser.email),
        "responder": (Responder.id, Responder.name),
        "incident": (Incident.id, Incident.code),
    }
    names: dict[str, str] = {}
    for kind, ids in wanted.items():
        if not ids:
            continue
        key, label = columns[kind]
        for row_id, name in session.execute(select(key, label).where(key.in_(ids))):
            names[f"{kind}:{row_id}"] = str(name)
    return names
