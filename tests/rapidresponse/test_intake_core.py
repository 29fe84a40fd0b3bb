"""The pieces of intake that need no web: codes, the audit chain, language guesses."""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import func, select

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
