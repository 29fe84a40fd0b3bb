"""The pieces of intake that need no web: codes, the audit chain, language guesses."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.services import Services
from rapidresponse import audit
from rapidresponse.codes import new_code
from rapidresponse.commands import Keyword, parse
from rapidresponse.db import Database
from rapidresponse.languages import guess
from rapidresponse.models import AuditEvent, Language


def test_codes_are_short_unambiguous_and_parse_as_codes() -> None:
    seen: set[str] = set()
    for _ in range(500):
        code = new_code(lambda c: c in seen)
        seen.add(code)
        assert re.fullmatch(r"[A-Z][0-9][A-Z][0-9]", code)
        assert not set(code) & set("IOLSZB0125")
        assert parse(f"{code} GO").code == code
        assert parse(f"{code} CONFIRM").keyword is Keyword.CONFIRM


def test_a_crowded_code_space_grows_longer_codes() -> None:
    code = new_code(lambda c: len(c) == 4)
    assert len(code) == 6


def test_the_audit_chain_verifies_and_catches_tampering(database: Database) -> None:
    with database.session() as session:
        for n in range(3):
            audit.record(
                session,
                actor="staff:1",
                action="incident.closed",
                subject=f"incident:{n}",
                details={"reason": "resolved"},
            )
    with database.session() as session:
        assert audit.verify(session) is None
        middle = session.query(AuditEvent).order_by(AuditEvent.id).all()[1]
        middle.details = {"reason": "edited later"}
        middle_id = middle.id
    with database.session() as session:
        assert audit.verify(session) == middle_id


@pytest.mark.parametrize(
    "event",
    [
        {"actor": "system", "details": {"note": "call 5035550142"}},
        {"actor": "system", "subject": "phone:+15035550142"},
        {"actor": "sms:5035550142", "subject": ""},
        {"actor": "system", "details": {"sent": [{"to": "(503) 5550142"}]}},
        {"actor": "system", "details": {"by_number": {"5035550142": 1}}},
    ],
)
def test_the_audit_trail_refuses_a_phone_number_anywhere(
    database: Database, event: dict[str, Any]
) -> None:
    with pytest.raises(audit.NotForTheAuditTrail) as refused, database.session() as session:
        audit.record(session, action="x", **event)
    assert "555" not in str(refused.value)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("hay agentes de la migra en la esquina", Language.ES),
        ("vi dos camionetas de inmigracion frente a la escuela", Language.ES),
        ("ICE agents at the corner store on 82nd", Language.EN),
        ("ICE", Language.EN),
        ("", Language.EN),
    ],
)
def test_report_language_is_guessed(text: str, language: Language) -> None:
    assert guess(text) is language


def an_event(session: Session, n: int) -> int:
    return audit.record(session, actor="system", action="test.event", subject=f"n:{n}").id


def test_recording_waits_for_no_other_transaction(database: Database) -> None:
    """A report's audit event does not queue behind another's until that one commits."""
    if database.dialect != "postgresql":
        pytest.skip("only on PostgreSQL: SQLite lets one writer in at a time anyway")
    other_done = threading.Event()
    with database.session() as holding:
        an_event(holding, 1)  # recorded, not committed: a slow report's transaction

        def another_report() -> None:
            with database.session() as session:
                an_event(session, 2)
            other_done.set()

        thread = threading.Thread(target=another_report)
        thread.start()
        assert other_done.wait(10), "the second event waited for the first to commit"
        thread.join()
    with database.session() as session:
        assert audit.verify(session) is None


def test_events_committed_out_of_order_are_all_chained(database: Database) -> None:
    with database.session() as session:
        first = an_event(session, 1)
    with database.session() as session:
        assert audit.seal(session) == 1
    with database.session() as session:
        late, later = an_event(session, 2), an_event(session, 3)
    with database.session() as session:
        assert audit.seal(session) == 2
        assert audit.seal(session) == 0
        chain = session.scalars(select(AuditEvent).order_by(AuditEvent.position)).all()
        assert [e.id for e in chain] == [first, late, later]
        assert [e.position for e in chain] == [1, 2, 3]
        assert audit.verify(session) is None


def test_a_sealed_event_cannot_be_removed_unnoticed(database: Database) -> None:
    with database.session() as session:
        ids = [an_event(session, n) for n in range(3)]
    with database.session() as session:
        assert audit.verify(session) is None
        session.delete(session.get_one(AuditEvent, ids[1]))
    with database.session() as session:
        assert audit.verify(session) == ids[2]


def test_unsealed_events_are_sealed_by_the_housekeeping(services: Services) -> None:
    from dispatch.housekeeping import seal_audit_job

    with services.database.session() as session:
        an_event(session, 1)
        an_event(session, 2)
    assert seal_audit_job() == 2
    with services.database.session() as session:
        assert session.scalar(select(func.count()).where(AuditEvent.hash.is_(None))) == 0
