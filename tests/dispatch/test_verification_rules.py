"""The rules of dispatch and verification, run in-process against the real database and
Redis, with the jobs called directly (the end-to-end module runs them in real workers).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import func, select

from dispatch import incidents as jobs
from dispatch.reporter_keys import KEY_PREFIX
from dispatch.services import Services
from rapidresponse import audit
from rapidresponse.crypto import Purpose
from rapidresponse.models import (
    AuditEvent,
    Dispatch,
    DispatchState,
    Incident,
    IncidentState,
    Report,
    ReportChannel,
    Verdict,
)
from rapidresponse.reports import IntakeRules, ReportDesk, Sighting
from rapidresponse.verification import StaleDispatch, expire_verification, record_verdict
from tests.factories import add_on_shift_responder
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import Phone

pytestmark = pytest.mark.sends_through_api

ANA, BEN = "+15035550111", "+15035550122"
SIGHTING = "ICE agents at NE 42nd and Killingsworth in Cully"


@pytest.fixture
def responders(twilio_services: Services) -> Services:
    add_on_shift_responder(twilio_services, "Ana", ANA, "cully")
    add_on_shift_responder(twilio_services, "Ben", BEN, "cully")
    return twilio_services


def incident(services: Services, incident_id: int) -> Incident:
    with services.database.session() as session:
        return session.get_one(Incident, incident_id)


def only_incident(services: Services) -> Incident:
    with services.database.session() as session:
        return session.scalars(select(Incident)).one()


def dispatches(services: Services, incident_id: int) -> list[Dispatch]:
    with services.database.session() as session:
        return list(
            session.scalars(
                select(Dispatch).where(Dispatch.incident_id == incident_id).order_by(Dispatch.id)
            )
        )


def page_everyone(services: Services, incident_id: int) -> None:
    jobs.dispatch_incident(incident_id)
    for dispatch in dispatches(services, incident_id):
        jobs.page_responder(dispatch.id)


def test_a_follow_up_that_places_an_escalated_report_pages_a_responder(
    responders: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    alice = Phone(sms_app.test_client(), "+15035550142")
    alice.text("agents knocking on doors right now")
    unplaced = only_incident(responders)
    assert jobs.dispatch_incident(unplaced.id) == "nobody to page"
    assert incident(responders, unplaced.id).escalated_at is not None

    assert alice.text("it is in Cully on 42nd") is not None
    assert incident(responders, unplaced.id).area_id is not None
    jobs.dispatch_incident(unplaced.id)  # what after_intake enqueued
    [dispatch] = dispatches(responders, unplaced.id)
    jobs.page_responder(dispatch.id)
    assert [m.to for m in fake.messages] == [ANA]


def test_the_sweep_re_pages_after_an_unclear_verdict(
    responders: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    Phone(sms_app.test_client(), "+15035550142").text(SIGHTING)
    opened = only_incident(responders)
    page_everyone(responders, opened.id)
    ana = Phone(sms_app.test_client(), ANA)
    ana.text(f"{opened.code} GO")
    ana.text(f"{opened.code} UNCLEAR could not see from the street")
    assert incident(responders, opened.id).state is IncidentState.DISPATCHED
    jobs.dispatch_incident(opened.id)  # what the sweep enqueues for it
    assert [d.responder.name for d in _with_responders(responders, opened.id)] == ["Ana", "Ben"]


def _with_responders(services: Services, incident_id: int) -> list[Dispatch]:
    with services.database.session() as session:
        rows = session.scalars(
            select(Dispatch).where(Dispatch.incident_id == incident_id).order_by(Dispatch.id)
        ).all()
        for row in rows:
            _ = row.responder.name
        return list(rows)


def test_a_quorum_of_two_needs_two_confirmations(
    responders: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    responders.settings = replace(responders.settings, verify_quorum=2)
    Phone(sms_app.test_client(), "+15035550142").text(SIGHTING)
    opened = only_incident(responders)
    page_everyone(responders, opened.id)
    assert sorted(m.to for m in fake.messages) == sorted([ANA, BEN])  # both paged at once
    Phone(sms_app.test_client(), ANA).text(f"{opened.code} CONFIRM")
    assert incident(responders, opened.id).state is IncidentState.DISPATCHED
    assert jobs.dispatch_incident(opened.id) == "nobody to page"  # Ben is still out
    Phone(sms_app.test_client(), BEN).text(f"{opened.code} CONFIRM")
    assert incident(responders, opened.id).state is IncidentState.CONFIRMED


def test_no_page_goes_out_for_a_decided_incident(
    responders: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    Phone(sms_app.test_client(), "+15035550142").text(SIGHTING)
    opened = only_incident(responders)
    jobs.dispatch_incident(opened.id)
    with responders.database.session() as session:
        expire_verification(session, opened.id)
    [dispatch] = dispatches(responders, opened.id)
    assert dispatch.state is DispatchState.DONE  # closed with the incident
    assert jobs.page_responder(dispatch.id) == "skipped"
    assert fake.messages == []
    answer = Phone(sms_app.test_client(), ANA).text(f"{opened.code} GO")
    assert answer == "We found no open dispatch for you. Include its code, for example: K7P2 GO"


def race_verdict_against_deadline(
    services: Services, incident_id: int, dispatch_id: int
) -> dict[str, object]:
    """A CONFIRM and the verification deadline, let loose at the same moment."""
    barrier = threading.Barrier(2)
    result: dict[str, object] = {}

    def confirm() -> None:
        barrier.wait()
        try:
            with services.database.session() as session:
                result["verdict"] = record_verdict(
                    session, services.cipher, incident_id, dispatch_id, Verdict.CONFIRM, "", 1
                )
        except StaleDispatch:
            result["verdict"] = "stale"

    def expire() -> None:
        barrier.wait()
        with services.database.session() as session:
            result["expired"] = expire_verification(session, incident_id)

    threads = [threading.Thread(target=confirm), threading.Thread(target=expire)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return result


def test_a_verdict_and_the_deadline_racing_agree(
    responders: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    for n in range(5):
        Phone(sms_app.test_client(), f"+1503555{n + 170:04d}").text(
            f"agents at house {n} on Killingsworth in Cully"
        )
    with responders.database.session() as session:
        ids = [i.id for i in session.scalars(select(Incident))]
    for incident_id in ids:
        jobs.dispatch_incident(incident_id)
        dispatch = dispatches(responders, incident_id)[-1]
        result = race_verdict_against_deadline(responders, incident_id, dispatch.id)
        final = incident(responders, incident_id).state
        # Exactly one of them won, and the record says which.
        confirmed = result["verdict"] not in (None, "stale")
        assert (final is IncidentState.CONFIRMED) == confirmed
        assert (final is IncidentState.UNVERIFIED) == (result["expired"] is not None)
        assert final in (IncidentState.CONFIRMED, IncidentState.UNVERIFIED)


def test_concurrent_audit_appends_never_fork_the_chain(services: Services) -> None:
    barrier = threading.Barrier(6)

    def append(n: int) -> None:
        barrier.wait()
        with services.database.session() as session:
            audit.record(session, actor="system", action="test.append", subject=f"x:{n}")

    threads = [threading.Thread(target=append, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with services.database.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 6
        assert audit.verify(session) is None


def test_a_new_text_after_a_false_alarm_is_a_new_report(
    responders: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    alice = Phone(sms_app.test_client(), "+15035550142")
    alice.text(SIGHTING)
    first = only_incident(responders)
    page_everyone(responders, first.id)
    Phone(sms_app.test_client(), ANA).text(f"{first.code} FALSE utility crew")
    answer = alice.text("now they are arresting people on 42nd in Cully")
    assert answer is not None and answer.startswith("Report ")  # not "added to report"
    with responders.database.session() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 2
        assert session.scalar(select(func.count()).select_from(Incident)) == 2


def test_a_flood_through_the_web_form_is_flagged(services: Services) -> None:
    from rapidresponse.areas import import_areas
    from rapidresponse.regions import demo_region_path, load_region_file

    with services.database.session() as session:
        import_areas(session, load_region_file(demo_region_path()), "Portland")
    flagged = []
    for _ in range(8):
        with services.database.session() as session:
            intake = ReportDesk(session, services.cipher, IntakeRules()).receive(
                Sighting(text="raid in Cully", channel=ReportChannel.WEB)
            )
            flagged.append(intake.flagged_flood)
    assert flagged == [False] * 7 + [True]
    with services.database.session() as session:
        assert session.scalars(select(Incident)).one().possible_flood


@pytest.mark.parametrize("body", ["ok", "Thanks!", "gracias 🙏", "👍", "  "])
def test_a_bare_thanks_is_not_a_sighting(responders: Services, sms_app: Flask, body: str) -> None:
    assert Phone(sms_app.test_client(), "+15035550142").text(body) is None
    with responders.database.session() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 0


def test_a_photo_without_words_is_still_a_sighting(responders: Services, sms_app: Flask) -> None:
    from tests.web.sms_helpers import new_sid, send, twiml_message

    params = {
        "From": "+15035550142",
        "Body": "",
        "MessageSid": new_sid(),
        "NumMedia": "1",
        "MediaUrl0": "https://api.twilio.com/media/ME1",
    }
    response = send(sms_app.test_client(), params)
    assert response.status_code == 200
    answer = twiml_message(response.get_data(as_text=True))
    assert answer is not None and "Where is it?" in answer
    with responders.database.session() as session:
        [report] = session.scalars(select(Report)).all()
        text = responders.cipher.decrypt(report.text_sealed or b"", Purpose.REPORT_TEXT)
    assert "photo" in text and "media" not in text  # the media URL is not kept


def test_report_limits_use_the_window_hash_not_the_lasting_index(
    responders: Services, sms_app: Flask
) -> None:
    Phone(sms_app.test_client(), "+15035550142").text(SIGHTING)
    lasting = responders.index.digest("+15035550142", Purpose.PHONE_INDEX)
    keys = b" ".join(responders.volatile.scan_iter(count=10_000))
    assert b"rr-limits" in keys
    assert lasting.encode() not in keys


def test_the_reporter_key_lives_in_the_volatile_redis_for_one_window_and_the_follow_ups(
    redis_client: Redis, twilio_services: Services
) -> None:
    keys = twilio_services.reporter_keys
    settings = twilio_services.settings
    first = keys.hashes("+15035550142")
    window_seconds = settings.reporter_window_minutes * 60
    window = int(datetime.now(UTC).timestamp() // window_seconds)
    name = f"{KEY_PREFIX}{window}"
    ttl = twilio_services.volatile.ttl(name)
    deadline = (window + 1) * window_seconds + settings.report_follow_up_minutes * 60
    assert keys.expiry(window) == deadline
    assert abs(datetime.now(UTC).timestamp() + ttl - deadline) <= 2
    assert keys.lifetime == timedelta(
        minutes=settings.reporter_window_minutes + settings.report_follow_up_minutes
    )
    if settings.volatile_redis_url != settings.redis_url:
        assert redis_client.get(name) is None  # never in the Redis that writes to disk
    # The same number hashes alike within the window; no number in the hash.
    assert first[0] == keys.hashes("+15035550142")[0]
    assert "5035550142" not in first[0]
    # Another window's key: another hash, and the previous window's comes second while
    # its afterlife lasts (a follow-up across the boundary); after that, alone.
    next_window = (window + 1) * window_seconds
    later = keys.hashes("+15035550142", datetime.fromtimestamp(next_window + 60, UTC))
    assert later[0] != first[0] and later[1] == first[0]
    past = keys.hashes("+15035550142", datetime.fromtimestamp(deadline + 1, UTC))
    assert past == later[:1]


def test_a_responder_out_on_another_incident_is_not_paged(
    responders: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    Phone(sms_app.test_client(), "+15035550142").text(SIGHTING)
    first = only_incident(responders)
    page_everyone(responders, first.id)
    Phone(sms_app.test_client(), ANA).text(f"{first.code} GO")  # Ana is out on the first
    responders.settings = replace(responders.settings, report_merge_minutes=0)
    Phone(sms_app.test_client(), "+15035550143").text("another van, far side of Cully")
    with responders.database.session() as session:
        second = session.scalars(select(Incident).where(Incident.id != first.id)).one()
    page_everyone(responders, second.id)
    assert [m.to for m in fake.messages] == [ANA, BEN]


def test_a_follow_up_too_long_to_add_becomes_its_own_report(services: Services) -> None:
    sighting = Sighting(text="x" * 1500, channel=ReportChannel.SMS, reporter_hashes=("h" * 64,))
    with services.database.session() as session:
        desk = ReportDesk(session, services.cipher, IntakeRules())
        first = desk.receive(sighting)
        second = desk.receive(replace(sighting, text="y" * 200))
    assert not second.follow_up and second.report_code != first.report_code


def test_with_nobody_in_the_area_an_adjacent_areas_responder_is_paged(
    twilio_services: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    carla, dan = "+15035550133", "+15035550144"
    add_on_shift_responder(twilio_services, "Carla", carla, "concordia")
    add_on_shift_responder(twilio_services, "Dan", dan, "kenton")
    Phone(sms_app.test_client(), "+15035550142").text(SIGHTING)  # Cully: nobody covers it
    page_everyone(twilio_services, only_incident(twilio_services).id)
    # Concordia borders Cully; Kenton is across town and is not paged.
    assert [m.to for m in fake.messages] == [carla]
