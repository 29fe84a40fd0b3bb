"""Texts that arrive at the same moment: none is lost, none is a 5xx, none is doubled.

Each test sends real concurrent requests to the webhook (threads released together by a
barrier, each with its own client and database connection), on SQLite and, with
TEST_DATABASE_URL, on PostgreSQL, where these races lost reports before: two reports
taking the same code, a quick follow-up overwriting another, one area's flood becoming
several incidents that each paged responders.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from sqlalchemy import func, select

from dispatch.services import Services
from rapidresponse import codes, reports
from rapidresponse.crypto import Purpose
from rapidresponse.models import Incident, Report
from tests.web.sms_helpers import new_sid, send, twiml_message

AT_ONCE = 24


def number(n: int) -> str:
    return f"+1503555{n:04d}"


def all_at_once(count: int, request: Callable[[int], tuple[int, str | None]]) -> list[int]:
    """Run ``request(n)`` for n in range(count), released together; their HTTP statuses."""
    barrier = threading.Barrier(count)

    def go(n: int) -> int:
        barrier.wait(10)
        status, _answer = request(n)
        return status

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(go, range(count)))


def texter(app: Flask) -> Callable[[str, str], tuple[int, str | None]]:
    def text(phone: str, body: str) -> tuple[int, str | None]:
        response = send(app.test_client(), {"From": phone, "Body": body, "MessageSid": new_sid()})
        document = response.get_data(as_text=True)
        answer = twiml_message(document) if response.status_code == 200 else None
        return response.status_code, answer

    return text


def decrypted_reports(services: Services) -> list[str]:
    with services.database.session() as session:
        sealed = session.scalars(select(Report.text_sealed).order_by(Report.id)).all()
    return [services.cipher.decrypt(s, Purpose.REPORT_TEXT) for s in sealed if s is not None]


def count(services: Services, model: type[Report] | type[Incident]) -> int:
    with services.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_floods_reports_are_all_kept_in_one_incident(
    sms_app: Flask, twilio_services: Services
) -> None:
    text = texter(sms_app)
    statuses = all_at_once(
        AT_ONCE, lambda n: text(number(n), f"ICE agents at NE 42nd in Cully, token-{n}")
    )
    assert statuses == [200] * AT_ONCE
    stored = decrypted_reports(twilio_services)
    assert sorted(int(t.rsplit("-", 1)[1]) for t in stored) == list(range(AT_ONCE))
    assert count(twilio_services, Incident) == 1  # one incident, one page to responders


def test_quick_follow_ups_from_one_reporter_are_all_kept(
    sms_app: Flask, twilio_services: Services
) -> None:
    text = texter(sms_app)
    phone = number(1)
    assert text(phone, "ICE at NE 42nd and Killingsworth in Cully")[0] == 200
    statuses = all_at_once(12, lambda n: text(phone, f"detail-{n}"))
    assert statuses == [200] * 12
    [report] = decrypted_reports(twilio_services)  # every detail went into the open report
    lines = report.splitlines()
    assert sorted(line for line in lines if line.startswith("detail-")) == sorted(
        f"detail-{n}" for n in range(12)
    )


def test_a_code_taken_at_the_same_moment_is_drawn_again(
    sms_app: Flask, twilio_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if each "is it free?" check ran just before another report's insert: every
    code is drawn twice in a row, so from the third report on each first draw is taken.
    The unique index says so, and the report is stored under the next code."""
    fresh = ("".join(code) for code in itertools.product("ACDE", "34679", "ACDE", "34679"))
    draws: list[str] = []

    def drawn_twice(_taken: Callable[[str], bool]) -> str:
        draws.append(next(fresh) if len(draws) % 2 == 0 else draws[-1])
        return draws[-1]

    monkeypatch.setattr(reports, "new_code", drawn_twice)
    text = texter(sms_app)
    for n in range(8):
        status, answer = text(number(n), f"agents in a van on Foster Rd in Lents, token-{n}")
        assert status == 200
        assert answer is not None and answer.startswith("Report ")
    with twilio_services.database.session() as session:
        report_codes = session.scalars(select(Report.code)).all()
    assert len(report_codes) == len(set(report_codes)) == 8
    assert len(draws) > 8 + 1 + 4  # (one incident) and collisions really happened


def test_simultaneous_reports_with_colliding_codes_are_all_kept(
    sms_app: Flask, twilio_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 36 four-letter codes: sixteen reports at once are all but sure to draw one twice.
    monkeypatch.setattr(codes, "LETTERS", "ACD")
    monkeypatch.setattr(codes, "DIGITS", "34")
    text = texter(sms_app)
    areas = ["Cully", "Lents", "Kenton", "Montavilla"]
    statuses = all_at_once(16, lambda n: text(number(n), f"ICE in {areas[n % 4]} now, token-{n}"))
    assert statuses == [200] * 16
    assert len(decrypted_reports(twilio_services)) == 16
