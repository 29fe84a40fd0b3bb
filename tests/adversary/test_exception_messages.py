"""What responders and dispatchers write never reaches an exception's message.

An exception's message travels further than the data: into logs, RQ's failed-job
registry (a formatted traceback in Redis), an error tracker, a bug report pasted in a
chat. So the whole life of a note and a comment runs here under a tracer that sees every
exception raised anywhere in the process — ours, Flask's, SQLAlchemy's, the ones caught
and handled — including while the database refuses the write, and none may carry the
words, the phone numbers, or a sealed copy of either.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from dispatch.board_actions import page_more
from dispatch.services import Services
from rapidresponse.models import Dispatch, Incident, IncidentComment, StaffRole
from tests.dispatch.test_verification_rules import ANA, BEN, SIGHTING, page_everyone
from tests.factories import add_on_shift_responder
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import Phone
from tests.web.staff_helpers import add_account, post_form, sign_in

pytestmark = pytest.mark.sends_through_api

REPORTER = "+15035550142"
NOTE = "agentes en la 82 y Stark con dos camionetas grises"
COMMENT = "la escuela Rigler guarda a los niños adentro"
HUGE_NOTE = "camioneta blanca placa 7XKL " * 400  # 11,200 characters
REFUSED_COMMENT = "el vecino del 4417 vio todo " * 40  # over the 500 allowed


@contextmanager
def every_exception() -> Iterator[list[tuple[str, str, int]]]:
    """What every exception raised in this thread (or a thread it starts) said of itself,
    while inside: its class name, its description, and its id (to note it once). Only
    words are kept: holding the exception would hold its frames, and the database
    sessions they were using (SQLite stayed locked)."""
    seen: list[tuple[str, str, int]] = []

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "exception" and (not seen or seen[-1][2] != id(arg[1])):
            seen.append((type(arg[1]).__name__, described(arg[1]), id(arg[1])))
        frame.f_trace_lines = False  # exceptions only: line events would slow all to a crawl
        return tracer

    previous = sys.gettrace()
    sys.settrace(tracer)
    threading.settrace(tracer)
    try:
        yield seen
    finally:
        sys.settrace(previous)
        threading.settrace(None)  # type: ignore[arg-type]


def described(error: BaseException) -> str:
    """All an exception says of itself: its message, repr, notes and formatted traceback."""
    parts = [str(error), repr(error), *getattr(error, "__notes__", [])]
    with suppress(Exception):  # an odd exception still has its str and repr
        parts.append("".join(traceback.format_exception(error)))
    return "\n".join(parts)


@contextmanager
def comments_refused(services: Services) -> Iterator[None]:
    """The database refuses new comments (a full disk, a broken replica, a bad migration)."""
    engine = services.database.engine
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as connection:
        if sqlite:
            connection.execute(
                text(
                    "CREATE TRIGGER refuse_comments BEFORE INSERT ON incident_comments "
                    "BEGIN SELECT RAISE(ABORT, 'refuse_comments'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "ALTER TABLE incident_comments "
                    "ADD CONSTRAINT refuse_comments CHECK (false) NOT VALID"
                )
            )
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(
                text("DROP TRIGGER refuse_comments")
                if sqlite
                else text("ALTER TABLE incident_comments DROP CONSTRAINT refuse_comments")
            )


@pytest.fixture
def responders(twilio_services: Services) -> Services:
    add_on_shift_responder(twilio_services, "Ana", ANA, "cully")
    add_on_shift_responder(twilio_services, "Ben", BEN, "cully")
    return twilio_services


def staff(services: Services, app: Flask) -> FlaskClient:
    client = app.test_client()
    sign_in(client, services, add_account(services, StaffRole.DISPATCHER))
    return client


def test_notes_and_comments_never_reach_an_exceptions_message(
    responders: Services, sms_app: Flask, fake: FakeTwilio, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    dispatcher = staff(responders, sms_app)
    with every_exception() as raised:
        Phone(sms_app.test_client(), REPORTER).text(SIGHTING)
        with responders.database.session() as session:
            incident = session.scalars(select(Incident)).one()
        page_everyone(responders, incident.id)
        ana, ben = Phone(sms_app.test_client(), ANA), Phone(sms_app.test_client(), BEN)
        ana.text(f"{incident.code} GO")
        ana.text(f"{incident.code} CONFIRM {NOTE}")
        page_more(responders, incident.id, 1, staff_id=1)  # Ben too, for a second look
        page_everyone(responders, incident.id)
        ben.text(f"{incident.code} GO")
        ben.text(f"{incident.code} UNCLEAR {HUGE_NOTE}")  # too long: refused in words
        ben.text(f"{incident.code} UNCLEAR {HUGE_NOTE[:400]}")  # long: kept, cut to its limit
        ben.text(f"ZZZZ CONFIRM {NOTE}")  # a code that is nobody's
        path = f"/board/incidents/{incident.id}"
        page = dispatcher.get(path).text
        post_form(dispatcher, f"{path}/comment", {"comment": COMMENT}, page)
        post_form(dispatcher, f"{path}/comment", {"comment": REFUSED_COMMENT}, page)
        with comments_refused(responders):
            failed = post_form(dispatcher, f"{path}/comment", {"comment": COMMENT + " 2"}, page)
        for shown in (f"{path}", f"{path}/live", "/board", "/board/live"):
            dispatcher.get(shown)
    # Said in words, with when to retry; not a 500, and nothing stored was lost.
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "5"
    assert "nothing was changed" in failed.text and COMMENT not in failed.text
    with responders.database.session() as session:
        assert len(session.scalars(select(IncidentComment)).all()) == 1
        notes = session.scalars(
            select(Dispatch.note_sealed).where(Dispatch.note_sealed.is_not(None))
        )
        sealed = [bytes(note) for note in notes]
    assert NOTE in dispatcher.get(path).text and COMMENT in dispatcher.get(path).text
    assert len(sealed) == 2  # Ana's note, and Ben's (cut to its limit)

    assert raised, "the tracer saw nothing: it is not watching"
    refused = [said for _name, said, _id in raised if "refuse_comments" in said]
    assert refused, "the database did not refuse"
    quoting = [said for said in refused if "[SQL:" in said]  # SQLAlchemy's, with its statement
    assert quoting and all("parameters hidden" in said for said in quoting)  # not the row
    assert not [said for said in quoting if "Failing row" in said]  # PostgreSQL's, neither
    secrets = [NOTE, COMMENT, HUGE_NOTE[:40], REFUSED_COMMENT[:40], "placa 7XKL", "vecino del 4417"]
    secrets += [number[-7:] for number in (REPORTER, ANA, BEN)]
    secrets += [blob.hex()[:32] for blob in sealed] + [repr(blob[:16])[2:-1] for blob in sealed]
    for name, said, _id in raised:
        leaked = [secret for secret in secrets if secret in said]
        assert leaked == [], f"{name} says {leaked}"
    for secret in secrets:
        assert secret not in caplog.text, secret
