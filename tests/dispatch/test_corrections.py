"""Correcting the record: merge, split, reopen, unplace -- each keeps the record readable,
erasable and findable by every code given out, or is refused with the reason.

Real database and Redis; texts through the SMS webhook; jobs called in-process.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select, update

from dispatch import corrections
from dispatch import incidents as jobs
from dispatch.alerts import approve_alert, draft_for_incident
from dispatch.board_actions import close_from_board
from dispatch.queues import QueueName, queue
from dispatch.services import Services
from rapidresponse.board import find_incident, incident_detail
from rapidresponse.corrections import CorrectionRefused
from rapidresponse.crypto import Purpose, key_id_of
from rapidresponse.models import (
    AuditEvent,
    Dispatch,
    DispatchState,
    Incident,
    IncidentState,
    Report,
    utcnow,
)
from rapidresponse.shredding import incident_key
from tests.dispatch.test_verification_rules import ANA, BEN, SIGHTING, dispatches, page_everyone
from tests.factories import add_on_shift_responder
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import Phone

pytestmark = pytest.mark.sends_through_api

ALICE, CARLOS, DORA = "+15035550142", "+15035550143", "+15035550144"
UNPLACED = "agents knocking on doors right now, they took my neighbour"
STAFF = 1


@pytest.fixture
def responders(twilio_services: Services) -> Services:
    add_on_shift_responder(twilio_services, "Ana", ANA, "cully")
    return twilio_services


def two_incidents(services: Services, app: Flask) -> tuple[Incident, Incident]:
    """A Cully incident Ana was paged for, and an unplaced one (the same event)."""
    Phone(app.test_client(), ALICE).text(SIGHTING)
    Phone(app.test_client(), CARLOS).text(UNPLACED)
    with services.database.session() as session:
        cully, unplaced = session.scalars(select(Incident).order_by(Incident.id)).all()
    page_everyone(services, cully.id)
    return cully, unplaced


def reports_of(services: Services, incident_id: int) -> list[Report]:
    with services.database.session() as session:
        return list(session.scalars(select(Report).where(Report.incident_id == incident_id)))


def row(services: Services, incident_id: int) -> Incident:
    with services.database.session() as session:
        return session.get_one(Incident, incident_id)


def audited(services: Services, action: str) -> list[AuditEvent]:
    with services.database.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


# --- merge --------------------------------------------------------------------------------


def test_a_merge_moves_reports_resealed_and_both_codes_keep_working(
    responders: Services, sms_app: Flask
) -> None:
    cully, unplaced = two_incidents(responders, sms_app)
    assert corrections.merge(responders, cully.id, unplaced.id, STAFF) == cully.id

    moved = reports_of(responders, cully.id)
    assert len(moved) == 2 and reports_of(responders, unplaced.id) == []
    kept_key = key_id_of(responders.cipher.shred_keys.key(incident_key(cully.id)))
    for report in moved:
        assert report.text_sealed is not None and report.text_sealed[1:5] == kept_key
    texts = {responders.cipher.decrypt(r.text_sealed, Purpose.REPORT_TEXT) for r in moved}
    assert texts == {SIGHTING, UNPLACED}
    absorbed = row(responders, unplaced.id)
    assert absorbed.state is IncidentState.CLOSED and absorbed.merged_into_id == cully.id
    assert row(responders, cully.id).reporter_count == 2
    with responders.database.session() as session:
        assert find_incident(session, unplaced.code) == cully.id
        detail = incident_detail(session, responders.cipher, unplaced.id)
        assert detail is not None and detail.summary.merged_into is not None
    assert [e.details for e in audited(responders, "incident.merged")] == [{"from": unplaced.id}]
    # Erasing the absorbed incident's key erases nothing that moved.
    responders.cipher.shred_keys.destroy(incident_key(unplaced.id))
    for report in reports_of(responders, cully.id):
        assert report.text_sealed is not None
        assert responders.cipher.decrypt(report.text_sealed, Purpose.REPORT_TEXT)


def test_a_responder_answers_with_the_code_of_an_incident_merged_away(
    responders: Services, sms_app: Flask
) -> None:
    cully, unplaced = two_incidents(responders, sms_app)
    corrections.merge(responders, unplaced.id, cully.id, STAFF)  # Ana's page moves
    Phone(sms_app.test_client(), ANA).text(f"{cully.code} GO")
    [going] = dispatches(responders, unplaced.id)
    assert going.state is DispatchState.GOING


def test_verdicts_that_move_in_can_decide_the_incident_kept(
    responders: Services, sms_app: Flask
) -> None:
    cully, unplaced = two_incidents(responders, sms_app)
    Phone(sms_app.test_client(), ANA).text(f"{cully.code} GO")
    with responders.database.session() as session:  # both still being verified
        session.execute(
            update(Incident).where(Incident.id == cully.id).values(state=IncidentState.DISPATCHED)
        )
        session.execute(
            update(Dispatch)
            .where(Dispatch.incident_id == cully.id)
            .values(state=DispatchState.DONE, verdict="confirm", verdict_at=utcnow())
        )
    corrections.merge(responders, unplaced.id, cully.id, STAFF)
    assert row(responders, unplaced.id).state is IncidentState.CONFIRMED


def test_an_incident_whose_alert_went_out_is_not_merged_away(
    responders: Services, sms_app: Flask
) -> None:
    cully, unplaced = two_incidents(responders, sms_app)
    Phone(sms_app.test_client(), ANA).text(f"{cully.code} CONFIRM two vans")
    alert_id = draft_for_incident(responders, cully.id)
    assert alert_id is not None
    with pytest.raises(CorrectionRefused, match="waiting for approval"):
        corrections.merge(responders, unplaced.id, cully.id, STAFF)
    approve_alert(responders, alert_id)
    with pytest.raises(CorrectionRefused, match="alert went out"):
        corrections.merge(responders, unplaced.id, cully.id, STAFF)
    corrections.merge(responders, cully.id, unplaced.id, STAFF)  # the other way is fine
    assert row(responders, unplaced.id).merged_into_id == cully.id


def test_nonsense_merges_are_refused(responders: Services, sms_app: Flask) -> None:
    cully, unplaced = two_incidents(responders, sms_app)
    with pytest.raises(CorrectionRefused, match="into itself"):
        corrections.merge(responders, cully.id, cully.id, STAFF)
    with pytest.raises(CorrectionRefused, match="no such incident"):
        corrections.merge(responders, cully.id, 999_999, STAFF)
    close_from_board(responders, unplaced.id, STAFF)
    with pytest.raises(CorrectionRefused, match="Only open incidents"):
        corrections.merge(responders, cully.id, unplaced.id, STAFF)


# --- split --------------------------------------------------------------------------------


def test_a_report_split_out_is_its_own_incident_and_is_dispatched(
    responders: Services, sms_app: Flask
) -> None:
    cully, _unplaced = two_incidents(responders, sms_app)
    Phone(sms_app.test_client(), DORA).text("unrelated: a car crash in Cully on 42nd")
    [_first, crash] = sorted(reports_of(responders, cully.id), key=lambda r: r.id)
    queue(QueueName.REPLIES, responders.redis).empty()
    alone_id = corrections.split(responders, cully.id, crash.code, STAFF)
    assert alone_id != cully.id
    [moved] = reports_of(responders, alone_id)
    assert moved.code == crash.code and moved.text_sealed is not None
    alone_key = key_id_of(responders.cipher.shred_keys.key(incident_key(alone_id)))
    assert moved.text_sealed[1:5] == alone_key
    assert len(reports_of(responders, cully.id)) == 1
    jobs_queued = [job.func_name for job in queue(QueueName.REPLIES, responders.redis).jobs]
    assert any(name.endswith("dispatch_incident") for name in jobs_queued)
    with pytest.raises(CorrectionRefused, match="only report"):
        corrections.split(responders, alone_id, crash.code, STAFF)
    with pytest.raises(CorrectionRefused, match="not part of this incident"):
        corrections.split(responders, cully.id, "ZZZZ", STAFF)
    # Audited once (refusals change nothing, so record nothing), by code, never by text.
    assert [(e.actor, e.subject, e.details) for e in audited(responders, "incident.split")] == [
        (f"staff:{STAFF}", f"incident:{alone_id}", {"from": cully.id, "report": crash.code})
    ]


# --- reopen -------------------------------------------------------------------------------


def test_a_closed_incident_reopens_in_the_state_it_was_closed_from(
    responders: Services, sms_app: Flask
) -> None:
    cully, _unplaced = two_incidents(responders, sms_app)
    Phone(sms_app.test_client(), ANA).text(f"{cully.code} CONFIRM two vans")
    close_from_board(responders, cully.id, STAFF)
    corrections.reopen(responders, cully.id, STAFF)
    reopened = row(responders, cully.id)
    assert reopened.state is IncidentState.CONFIRMED and reopened.closed_at is None
    assert len(audited(responders, "incident.reopened")) == 1
    with pytest.raises(CorrectionRefused, match="Only a closed incident"):
        corrections.reopen(responders, cully.id, STAFF)


def test_an_incident_being_verified_reopens_and_is_dispatched_again(
    responders: Services, sms_app: Flask
) -> None:
    cully, _unplaced = two_incidents(responders, sms_app)
    close_from_board(responders, cully.id, STAFF)
    add_on_shift_responder(responders, "Ben", BEN, "cully")
    queue(QueueName.REPLIES, responders.redis).empty()
    corrections.reopen(responders, cully.id, STAFF)
    assert row(responders, cully.id).state is IncidentState.DISPATCHED
    queued = queue(QueueName.REPLIES, responders.redis).jobs
    assert [(job.func_name.rsplit(".", 1)[-1], list(job.args)) for job in queued] == [
        ("dispatch_incident", [cully.id])
    ]
    assert jobs.dispatch_incident(cully.id) == "paged 1"  # Ana's page closed with it: Ben


def test_a_reopened_incident_gets_a_new_verification_deadline(
    responders: Services, sms_app: Flask
) -> None:
    cully, _unplaced = two_incidents(responders, sms_app)
    close_from_board(responders, cully.id, STAFF)
    with responders.database.session() as session:  # opened long before the deadline
        session.execute(
            update(Incident)
            .where(Incident.id == cully.id)
            .values(opened_at=utcnow() - timedelta(hours=2))
        )
    corrections.reopen(responders, cully.id, STAFF)
    assert jobs.sweep_incidents()["expired"] == 0  # not unverified a minute after reopening
    assert row(responders, cully.id).state is IncidentState.DISPATCHED
    scheduled = queue(QueueName.REPLIES, responders.redis).scheduled_job_registry
    names = [
        queue(QueueName.REPLIES, responders.redis).fetch_job(job_id).func_name  # type: ignore[union-attr]
        for job_id in scheduled.get_job_ids()
    ]
    assert any(name.endswith("verification_deadline") for name in names)


def test_an_erased_or_merged_incident_is_not_reopened(responders: Services, sms_app: Flask) -> None:
    cully, unplaced = two_incidents(responders, sms_app)
    corrections.merge(responders, cully.id, unplaced.id, STAFF)
    with pytest.raises(CorrectionRefused, match="merged into another"):
        corrections.reopen(responders, unplaced.id, STAFF)
    close_from_board(responders, cully.id, STAFF)
    with responders.database.session() as session:
        session.execute(
            update(Incident)
            .where(Incident.id == cully.id)
            .values(closed_at=utcnow() - timedelta(days=31))
        )
    with pytest.raises(CorrectionRefused, match="erased"):
        corrections.reopen(responders, cully.id, STAFF)


# --- unplace ------------------------------------------------------------------------------


def test_undoing_a_place_closes_its_pages(
    responders: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    cully, _unplaced = two_incidents(responders, sms_app)
    corrections.unplace(responders, cully.id, STAFF)
    undone = row(responders, cully.id)
    assert undone.area_id is None and undone.state is IncidentState.REPORTED
    assert [d.state for d in dispatches(responders, cully.id)] == [DispatchState.DONE]
    with responders.database.session() as session:
        detail = incident_detail(session, responders.cipher, cully.id)
        assert detail is not None and detail.summary.unplaced
    with pytest.raises(CorrectionRefused, match="no place"):
        corrections.unplace(responders, cully.id, STAFF)
    [undo] = audited(responders, "incident.unplaced")
    assert (undo.actor, undo.subject) == (f"staff:{STAFF}", f"incident:{cully.id}")
    assert undo.details == {"area": cully.area_id}  # which place was taken back


def test_an_alerted_place_is_not_undone(responders: Services, sms_app: Flask) -> None:
    cully, _unplaced = two_incidents(responders, sms_app)
    Phone(sms_app.test_client(), ANA).text(f"{cully.code} CONFIRM two vans")
    assert draft_for_incident(responders, cully.id) is not None
    with pytest.raises(CorrectionRefused, match="alert is for that place"):
        corrections.unplace(responders, cully.id, STAFF)
