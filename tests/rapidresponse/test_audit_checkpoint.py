"""A chain rewritten whole still verifies; a checkpoint kept outside the server does not."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from rapidresponse import audit
from rapidresponse.db import Database
from rapidresponse.models import AuditEvent


def record_events(database: Database, count: int) -> None:
    with database.session() as session:
        for n in range(count):
            audit.record(
                session, actor="staff:1", action="incident.closed", subject=f"incident:{n}"
            )


def rewrite_whole_chain(database: Database, position: int) -> None:
    """The attack: change one event and recompute every hash from it on, as anyone
    holding the database can."""
    with database.session() as session:
        events = session.scalars(select(AuditEvent).order_by(AuditEvent.position)).all()
        events[position - 1].action = "incident.reopened"
        previous = audit.GENESIS
        for event in events:
            event.prev_hash = previous
            event.hash = audit.event_hash(event)
            previous = event.hash


def test_a_kept_checkpoint_catches_a_chain_rewritten_whole(database: Database) -> None:
    record_events(database, 5)
    with database.session() as session:
        kept = audit.checkpoint(session)
    assert kept is not None and kept.position == 5
    record_events(database, 2)  # the chain goes on after the checkpoint was kept
    with database.session() as session:
        assert audit.verify(session) is None and audit.matches(session, kept)

    rewrite_whole_chain(database, position=3)
    with database.session() as session:
        assert audit.verify(session) is None  # the chain alone cannot tell
        assert not audit.matches(session, kept)  # the kept checkpoint can


def test_a_checkpoint_reads_back_as_written_and_nothing_else_does() -> None:
    kept = audit.Checkpoint(1234, "ab" * 32)
    assert str(kept) == f"rr-audit:1234:{'ab' * 32}"
    assert audit.Checkpoint.parse(f"  {str(kept).upper()}\n") == kept
    for typed in ("", "rr-audit:0:" + "ab" * 32, "rr-audit:12:abc", "1234:" + "ab" * 32, "x" * 500):
        with pytest.raises(ValueError, match="not an audit checkpoint"):
            audit.Checkpoint.parse(typed)


def test_an_empty_trail_has_no_checkpoint(database: Database) -> None:
    with database.session() as session:
        assert audit.checkpoint(session) is None
