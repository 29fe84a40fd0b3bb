"""From a confirmed incident to a finished broadcast, and what the reaper mends on the way."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from click.testing import CliRunner, Result
from redis import Redis
from sqlalchemy import select, update

from dispatch import alerts
from dispatch.broadcast import queued_batches, send_batch
from dispatch.services import Services
from rapidresponse import broadcast
from rapidresponse.composer import NoteRefused
from rapidresponse.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Delivery,
    DeliveryStatus,
    Incident,
    IncidentState,
    Language,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from tests.dispatch.test_broadcast_core import make_area, statuses, subscribe
from web.cli import cli


def confirmed_incident(services: Services, area_id: int, code: str = "K7P2") -> int:
    with services.database.session() as session:
        incident = Incident(code=code, state=IncidentState.CONFIRMED, area_id=area_id)
        session.add(incident)
        session.flush()
        return incident.id


def alert_row(services: Services, alert_id: int) -> Alert:
    with services.database.session() as session:
        return session.get_one(Alert, alert_id)


def texts(services: Services, alert_id: int) -> dict[str, str]:
    return broadcast.texts_of(services.cipher, alert_row(services, alert_id))


def test_a_confirmed_incident_gets_one_draft_in_both_languages(services: Services) -> None:
    cully = make_area(services, "cully")
    incident_id = confirmed_incident(services, cully)

    first = alerts.alert_for_incident(incident_id)
    again = alerts.alert_for_incident(incident_id)

    assert first is not None and first == again
    draft = alert_row(services, first)
    assert draft.status == AlertStatus.DRAFT  # ALERT_POLICY=approve: a dispatcher decides
    written = texts(services, first)
    assert "Cully" in written["en"] and "RIGHTS" in written["en"]
    assert "Cully" in written["es"] and "DERECHOS" in written["es"]


def test_an_incident_that_is_not_confirmed_gets_no_alert(services: Services) -> None:
    incident_id = confirmed_incident(services, make_area(services, "cully"))
    with services.database.session() as session:
        session.execute(
            update(Incident)
            .where(Incident.id == incident_id)
            .values(state=IncidentState.FALSE_ALARM)
        )
    assert alerts.alert_for_incident(incident_id) is None


def test_auto_policy_sends_as_soon_as_confirmed(services: Services, redis_client: Redis) -> None:
    services.settings = replace(services.settings, alert_policy="auto")
    cully = make_area(services, "cully")
    subscribe(services, "+15035556001", cully)
    subscribe(services, "+15035556002", cully, language=Language.ES)

    alert_id = alerts.alert_for_incident(confirmed_incident(services, cully))

    assert alert_id is not None
    assert alert_row(services, alert_id).status == AlertStatus.APPROVED
    assert queued_batches(redis_client) == {(alert_id, 0)}
    send_batch(alert_id, 0)
    assert statuses(services, alert_id) == {DeliveryStatus.SENT: 2}
    assert alert_row(services, alert_id).status == AlertStatus.COMPLETE


def sent_alert(services: Services, area_id: int) -> int:
    alert_id = alerts.alert_for_incident(confirmed_incident(services, area_id))
    assert alert_id is not None
    alerts.approve_alert(services, alert_id)
    send_batch(alert_id, 0)
    return alert_id


def test_follow_ups_go_to_exactly_the_original_recipients(services: Services) -> None:
    cully, foster = make_area(services, "cully"), make_area(services, "foster")
    stays = subscribe(services, "+15035557001", cully)
    moved = subscribe(services, "+15035557002", cully, language=Language.ES)
    stopped = subscribe(services, "+15035557003", cully)
    alert_id = sent_alert(services, cully)
    # Since then: one moved to another area, one sent STOP, and a newcomer joined.
    with services.database.session() as session:
        session.get_one(Subscriber, stopped).status = SubscriberStatus.OPTED_OUT
    subscribe(services, "+15035557004", cully)
    subscribe(services, "+15035557005", foster)

    follow_up = alerts.draft_follow_up(services, alert_id, AlertKind.ALL_CLEAR)
    approval = alerts.approve_alert(services, follow_up)

    assert approval.recipients == 2
    with services.database.session() as session:
        rows = dict(
            session.execute(
                select(Delivery.subscriber_id, Delivery.language).where(
                    Delivery.alert_id == follow_up
                )
            ).all()
        )
    assert rows == {stays: Language.EN, moved: Language.ES}
    followed = alert_row(services, follow_up)
    assert followed.parent_id == alert_id and "Cully" in texts(services, follow_up)["en"]


def test_a_correction_names_the_time_of_the_alert_it_corrects(services: Services) -> None:
    cully = make_area(services, "cully")
    subscribe(services, "+15035557101", cully)
    alert_id = sent_alert(services, cully)
    correction = alerts.draft_follow_up(services, alert_id, AlertKind.CORRECTION)
    assert "false alarm" in texts(services, correction)["en"].lower()


def test_an_update_needs_a_clean_note(services: Services) -> None:
    cully = make_area(services, "cully")
    alert_id = sent_alert(services, cully)
    with pytest.raises(NoteRefused):
        alerts.draft_follow_up(services, alert_id, AlertKind.UPDATE)
    with pytest.raises(NoteRefused) as refused:
        alerts.draft_follow_up(services, alert_id, AlertKind.UPDATE, note="call 503 555 0199")
    assert "555" not in str(refused.value)
    update_id = alerts.draft_follow_up(
        services, alert_id, AlertKind.UPDATE, note="Agents still at the school entrance"
    )
    assert "school entrance" in texts(services, update_id)["en"]
    # The note is sealed under the incident's shred key: erased with the incident.
    row = alert_row(services, update_id)
    assert row.texts == {} and row.texts_sealed is not None
    assert b"school entrance" not in row.texts_sealed
    assert row.incident_id is not None
    services.cipher.shred_keys.destroy(f"incident-{row.incident_id}")
    assert texts(services, update_id) == {}


def test_a_draft_cannot_be_followed_up(services: Services) -> None:
    draft = alerts.alert_for_incident(confirmed_incident(services, make_area(services, "cully")))
    assert draft is not None
    with pytest.raises(alerts.NotFollowable):
        alerts.draft_follow_up(services, draft, AlertKind.ALL_CLEAR)


# --- the reaper ------------------------------------------------------------------------------


def approved_with(services: Services, count: int, batch: int = 500) -> int:
    cully = make_area(services, "cully")
    for n in range(count):
        subscribe(services, f"+1503558{n:04d}", cully)
    alert_id = alerts.alert_for_incident(confirmed_incident(services, cully))
    assert alert_id is not None
    with services.database.session() as session:
        broadcast.approve(
            session, alert_id, now=utcnow(), validity=timedelta(minutes=30), batch=batch
        )
    return alert_id


def age_rows(services: Services, alert_id: int, **values: object) -> None:
    with services.database.session() as session:
        session.execute(update(Delivery).where(Delivery.alert_id == alert_id).values(**values))


def test_the_reaper_enqueues_batches_whose_jobs_vanished(
    services: Services, redis_client: Redis
) -> None:
    alert_id = approved_with(services, 5, batch=2)  # approved, but never enqueued
    age_rows(services, alert_id, updated_at=utcnow() - timedelta(minutes=5))

    assert alerts.reap_deliveries()["reenqueued_batches"] == 3
    assert queued_batches(redis_client) == {(alert_id, 0), (alert_id, 1), (alert_id, 2)}
    # A second round sees the jobs waiting and adds none.
    assert alerts.reap_deliveries()["reenqueued_batches"] == 0


def test_the_reaper_takes_back_expired_leases_and_counts_unknown_outcomes(
    services: Services, redis_client: Redis
) -> None:
    alert_id = approved_with(services, 2)
    past = utcnow() - timedelta(minutes=1)
    age_rows(
        services,
        alert_id,
        status=DeliveryStatus.CLAIMED,
        lease_token="e" * 32,
        lease_expires_at=past,
    )
    with services.database.session() as session:
        first = session.scalars(select(Delivery.id).where(Delivery.alert_id == alert_id)).first()
        session.execute(update(Delivery).where(Delivery.id == first).values(sending_at=past))

    result = alerts.reap_deliveries()

    assert result["released_batches"] == 1
    assert queued_batches(redis_client) == {(alert_id, 0)}
    assert broadcast_progress(services, alert_id).unknown_outcomes == 1
    assert statuses(services, alert_id) == {DeliveryStatus.PENDING: 2}


def lease_batch(services: Services, alert_id: int, token: str, until: datetime) -> None:
    with services.database.session() as session:
        assert broadcast.take_batch(session, alert_id, 0, token, until, utcnow())


def test_the_reaper_takes_back_a_batch_whose_worker_died(
    services: Services, redis_client: Redis
) -> None:
    """A job leased the batch, had one row in flight and died: once the batch's lease
    runs out, that row is pending again and counted as a possible double, and the batch
    is sent again."""
    alert_id = approved_with(services, 3)
    past = utcnow() - timedelta(minutes=1)
    lease_batch(services, alert_id, "d" * 32, until=past)
    with services.database.session() as session:
        first = session.scalars(select(Delivery.id).where(Delivery.alert_id == alert_id)).first()
        session.execute(
            update(Delivery)
            .where(Delivery.id == first)
            .values(status=DeliveryStatus.CLAIMED, lease_token="d" * 32, sending_at=past)
        )

    assert alerts.reap_deliveries()["released_batches"] == 1

    assert queued_batches(redis_client) == {(alert_id, 0)}
    assert broadcast_progress(services, alert_id).unknown_outcomes == 1
    assert statuses(services, alert_id) == {DeliveryStatus.PENDING: 3}
    with services.database.session() as session:  # the lease is free for the next job
        assert broadcast.take_batch(session, alert_id, 0, "e" * 32, utcnow(), utcnow())


def test_the_reaper_leaves_a_batch_a_job_is_sending(
    services: Services, redis_client: Redis
) -> None:
    """Its rows wait for their chunk, untouched for minutes at a slow SEND_RATE: not
    abandoned while the job's lease is alive."""
    alert_id = approved_with(services, 3)
    lease_batch(services, alert_id, "f" * 32, until=utcnow() + timedelta(minutes=2))
    age_rows(services, alert_id, updated_at=utcnow() - timedelta(minutes=5))

    assert alerts.reap_deliveries()["reenqueued_batches"] == 0
    assert queued_batches(redis_client) == set()


def broadcast_progress(services: Services, alert_id: int) -> broadcast.Progress:
    with services.database.session() as session:
        return broadcast.progress(session, alert_id)


def test_the_reaper_drops_what_is_past_its_validity(services: Services) -> None:
    alert_id = approved_with(services, 3)
    with services.database.session() as session:
        session.execute(
            update(Alert)
            .where(Alert.id == alert_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert alerts.reap_deliveries()["expired"] == 3
    assert statuses(services, alert_id) == {DeliveryStatus.EXPIRED: 3}
    assert alert_row(services, alert_id).status == AlertStatus.COMPLETE


def test_the_reaper_gives_up_on_a_row_that_keeps_failing(services: Services) -> None:
    alert_id = approved_with(services, 1)
    age_rows(services, alert_id, attempts=broadcast.MAX_ATTEMPTS)
    assert alerts.reap_deliveries()["given_up"] == 1
    assert statuses(services, alert_id) == {DeliveryStatus.FAILED: 1}


def test_the_reaper_drafts_for_a_recent_confirmation_it_missed(services: Services) -> None:
    incident_id = confirmed_incident(services, make_area(services, "cully"))
    stale = confirmed_incident(services, make_area(services, "lents"), code="Q3W8")
    with services.database.session() as session:
        session.execute(
            update(Incident)
            .where(Incident.id == stale)
            .values(state_changed_at=utcnow() - timedelta(hours=3))
        )
    assert alerts.reap_deliveries()["drafted"] == 1
    with services.database.session() as session:
        assert session.scalar(select(Alert.id).where(Alert.incident_id == incident_id))
        assert session.scalar(select(Alert.id).where(Alert.incident_id == stale)) is None


# --- the command line ----------------------------------------------------------------------


def invoke(environ: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=environ, catch_exceptions=False)


def test_the_cli_shows_approves_and_follows_up(services: Services, environ: dict[str, str]) -> None:
    cully = make_area(services, "cully")
    subscribe(services, "+15035559001", cully)
    alert_id = alerts.alert_for_incident(confirmed_incident(services, cully))

    shown = invoke(environ, "alert", "show", str(alert_id))
    assert shown.exit_code == 0
    assert "[en] GSM-7, 1 segment(s)" in shown.output and "[es] GSM-7" in shown.output
    assert "1 recipients" in shown.output

    approved = invoke(environ, "alert", "approve", str(alert_id))
    assert approved.exit_code == 0 and "1 recipients in 1 batches" in approved.output
    assert invoke(environ, "alert", "approve", str(alert_id)).exit_code == 1

    follow = invoke(environ, "alert", "follow-up", str(alert_id), "--kind", "all_clear")
    assert follow.exit_code == 0 and "drafted" in follow.output
    refused = invoke(
        environ, "alert", "follow-up", str(alert_id), "--kind", "update", "--note", "ABC1234 left"
    )
    assert refused.exit_code == 1 and "ABC1234" not in refused.output
    assert "#" in invoke(environ, "alert", "list").output
    assert invoke(environ, "alert", "show", "999").exit_code == 1
    draft = follow.output.split("#")[1].split()[0]
    assert invoke(environ, "alert", "cancel", draft).exit_code == 0
    assert invoke(environ, "alert", "cancel", draft).exit_code == 1  # no longer a draft
    assert invoke(environ, "alert", "cancel", str(alert_id)).exit_code == 1  # sent: not a draft


def test_the_cli_corrects_an_alerts_area_or_time(
    services: Services, environ: dict[str, str]
) -> None:
    cully = make_area(services, "cully")
    make_area(services, "lents")
    subscribe(services, "+15035559002", cully)
    alert_id = alerts.alert_for_incident(confirmed_incident(services, cully))
    assert invoke(environ, "alert", "approve", str(alert_id)).exit_code == 0
    correct = ("alert", "follow-up", str(alert_id), "--kind", "correction", "--corrects")

    area = invoke(environ, *correct, "area", "--area", "Lents")
    assert area.exit_code == 0, area.output
    shown = invoke(environ, "alert", "show", area.output.split("#")[1].split()[0]).output
    assert "named Cully by mistake: it was in Lents" in shown

    at = invoke(environ, *correct, "time", "--at", "9:05")
    assert at.exit_code == 0, at.output
    shown = invoke(environ, "alert", "show", at.output.split("#")[1].split()[0]).output
    assert "agents were seen there at 9:05 AM" in shown

    unknown = invoke(environ, *correct, "area", "--area", "Atlantis")
    assert unknown.exit_code == 2 and "no area named 'Atlantis'" in unknown.output
    assert invoke(environ, *correct, "area", "--area", "cully").exit_code == 1  # the same area
    assert invoke(environ, *correct, "time", "--at", "25:99").exit_code == 2
    no_time = invoke(environ, *correct, "time")
    assert no_time.exit_code == 1 and "Give the right time" in no_time.output


def test_an_alert_whose_text_was_erased_is_dropped_not_sent(services: Services) -> None:
    cully = make_area(services, "cully")
    subscribe(services, "+15035557301", cully)
    alert_id = alerts.alert_for_incident(confirmed_incident(services, cully))
    assert alert_id is not None
    alerts.write_ledger(services, alert_id)
    incident_id = alert_row(services, alert_id).incident_id
    services.cipher.shred_keys.destroy(f"incident-{incident_id}")
    assert send_batch(alert_id, 0)["expired"] == 1
    with services.database.session() as session:
        statuses = session.scalars(select(Delivery.status).where(Delivery.alert_id == alert_id))
        assert list(statuses) == [DeliveryStatus.EXPIRED]
