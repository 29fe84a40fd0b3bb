"""Closing incidents, purging report text after retention, and the periodic job slots."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from click.testing import CliRunner
from redis import Redis
from sqlalchemy import select, update

from dispatch import housekeeping
from dispatch.queues import QueueName, queue
from dispatch.services import Services
from rapidresponse import audit
from rapidresponse.config import Settings
from rapidresponse.models import Incident, IncidentState, Report, ReportChannel, utcnow
from rapidresponse.reports import IntakeRules, ReportDesk, Sighting, counts, forget_reporter_links
from web.cli import cli


def a_report(services: Services) -> str:
    with services.database.session() as session:
        intake = ReportDesk(session, services.cipher, IntakeRules()).receive(
            Sighting(text="agents at the corner of 82nd and Foster", channel=ReportChannel.WEB)
        )
        return session.get_one(Incident, intake.incident_id).code


def close(environ: dict[str, str], code: str) -> str:
    result = CliRunner().invoke(cli, ["incident", "close", code], env=environ)
    assert result.exit_code == 0, result.output
    return result.output


def test_closing_an_incident_is_audited(services: Services, environ: dict[str, str]) -> None:
    code = a_report(services)
    assert close(environ, code.lower()).startswith(f"Incident {code} closed")
    with services.database.session() as session:
        incident = session.scalars(select(Incident)).one()
        assert incident.state is IncidentState.CLOSED and incident.closed_at is not None
        assert audit.verify(session) is None
    again = CliRunner().invoke(cli, ["incident", "close", code], env=environ)
    assert again.exit_code == 1 and "already closed" in again.output
    unknown = CliRunner().invoke(cli, ["incident", "close", "Q9Q9"], env=environ)
    assert unknown.exit_code == 1 and "no incident with code 'Q9Q9'" in unknown.output


def test_report_text_is_purged_after_retention_once_closed(
    services: Services, environ: dict[str, str]
) -> None:
    from dispatch.housekeeping import purge_report_texts_job

    open_code = a_report(services)
    closed_code = a_report(services)
    close(environ, closed_code)
    assert purge_report_texts_job() == 0  # within retention: kept
    with services.database.session() as session:
        session.execute(
            update(Incident)
            .where(Incident.code == closed_code)
            .values(closed_at=utcnow() - timedelta(days=31))
        )
    assert purge_report_texts_job() == 1
    with services.database.session() as session:
        rows = {r.incident.code: r for r in session.scalars(select(Report))}
        assert rows[closed_code].text_sealed is None and rows[closed_code].text_purged_at
        assert rows[open_code].text_sealed is not None  # its incident is still open


def test_retention_is_configurable(services: Services, environ: dict[str, str]) -> None:
    from dispatch.housekeeping import purge_report_texts_job

    services.settings = replace(services.settings, report_retention_days=0)
    close(environ, a_report(services))
    assert purge_report_texts_job() == 1


def test_each_period_is_enqueued_by_exactly_one_worker(
    redis_client: Redis, settings: Settings
) -> None:
    tasks = housekeeping.periodic_tasks(settings)
    now = 1_800_000_000.0
    first = housekeeping.enqueue_due(redis_client, tasks, now=now)
    second = housekeeping.enqueue_due(redis_client, tasks, now=now + 5)  # another worker
    third = housekeeping.enqueue_due(redis_client, tasks, now=now + 3600)  # the next hour
    every = [
        "reap-deliveries",
        "sweep-incidents",
        "seal-audit",
        "status-callbacks",
        "purge-report-texts",
        "forget-reporter-links",
        "forget-provider-ids",
        "redact-at-provider",
        "reconfirm-subscribers",
        "end-stale-drills",
    ]
    assert (first, second, third) == (every, [], every)
    assert queue(QueueName.BULK, redis_client).count == 16  # 8 tasks, twice
    # The reaper and the status callbacks run between broadcast batches, not after the
    # whole broadcast.
    assert queue(QueueName.ALERTS, redis_client).count == 4


def an_incident(services: Services, **values: object) -> int:
    from rapidresponse.areas import find_area, import_areas
    from rapidresponse.regions import demo_region_path, load_region_file

    with services.database.session() as session:
        import_areas(session, load_region_file(demo_region_path()), "Portland")
        cully = find_area(session, "cully")
        assert cully is not None
        intake = ReportDesk(session, services.cipher, IntakeRules()).receive(
            Sighting(text="agents in Cully", channel=ReportChannel.WEB)
        )
        if values:
            session.execute(
                update(Incident).where(Incident.id == intake.incident_id).values(**values)
            )
        return intake.incident_id


def test_the_sweep_dispatches_an_incident_whose_job_was_lost(
    services: Services, redis_client: Redis
) -> None:
    from dispatch.incidents import sweep_incidents

    an_incident(services, opened_at=utcnow() - timedelta(minutes=5))
    assert sweep_incidents() == {
        "dispatched": 1,
        "timed_out": 0,
        "expired": 0,
        "closed": 0,
        "welcomed": 0,
    }
    assert queue(QueueName.REPLIES, redis_client).count == 1


def test_the_sweep_expires_an_incident_past_its_deadline(services: Services) -> None:
    from dispatch.incidents import sweep_incidents

    long_ago = utcnow() - timedelta(hours=2)
    incident_id = an_incident(
        services, opened_at=long_ago, state_changed_at=long_ago, escalated_at=utcnow()
    )
    assert sweep_incidents()["expired"] == 1
    with services.database.session() as session:
        assert session.get_one(Incident, incident_id).state is IncidentState.UNVERIFIED


def test_the_sweep_leaves_fresh_incidents_to_the_scheduler(services: Services) -> None:
    from dispatch.incidents import sweep_incidents

    an_incident(services)
    assert sweep_incidents() == {
        "dispatched": 0,
        "timed_out": 0,
        "expired": 0,
        "closed": 0,
        "welcomed": 0,
    }


# --- forgetting who reported -----------------------------------------------------------------


def linked_reports(services: Services, hashes: tuple[str, ...], count: int) -> int:
    """``count`` reports from one reporter (linked by ``hashes``); returns their incident."""
    from rapidresponse.areas import import_areas
    from rapidresponse.regions import demo_region_path, load_region_file

    with services.database.session() as session:
        import_areas(session, load_region_file(demo_region_path()), "Portland")
        desk = ReportDesk(session, services.cipher, IntakeRules(follow_up_window=timedelta(0)))
        intakes = [
            desk.receive(
                Sighting(
                    text=f"agents in Cully, van {n}",
                    channel=ReportChannel.SMS,
                    reporter_hashes=hashes,
                )
            )
            for n in range(count)
        ]
    return intakes[0].incident_id


def test_after_the_window_reporter_hashes_and_exact_times_are_forgotten(
    services: Services,
) -> None:
    from dispatch.housekeeping import forget_reporter_links_job

    incident_id = linked_reports(services, ("a" * 64,), 2)
    linked_reports(services, ("b" * 64,), 1)  # another reporter, same incident
    assert forget_reporter_links_job() == 0  # within the window: the link still serves
    later = utcnow() + services.reporter_keys.lifetime + timedelta(seconds=1)
    with services.database.session() as session:
        assert forget_reporter_links(session, later, services.reporter_keys.lifetime) == 3
    with services.database.session() as session:
        reports = session.scalars(select(Report)).all()
        assert [r.reporter_hash for r in reports] == [None, None, None]
        assert all(r.links_forgotten for r in reports)
        assert all(r.received_at.second == 0 and r.received_at.microsecond == 0 for r in reports)
        incident = session.get_one(Incident, incident_id)
        assert incident.opened_at.second == 0 and incident.opened_at.microsecond == 0
        # What the hashes told is kept as a count: two reporters, three reports.
        assert counts(session, incident_id) == (3, 2, 0)
        assert forget_reporter_links(session, later, services.reporter_keys.lifetime) == 0


def test_a_report_from_the_public_is_audited_to_the_minute(services: Services) -> None:
    a_report(services)
    with services.database.session() as session:
        [event] = session.scalars(
            select(audit.AuditEvent).where(audit.AuditEvent.action == "report.received")
        ).all()
        assert event.occurred_at.second == 0 and event.occurred_at.microsecond == 0
        assert audit.verify(session) is None


def test_purging_destroys_the_incidents_shred_key(
    services: Services, environ: dict[str, str]
) -> None:
    from dispatch.housekeeping import purge_report_texts_job
    from rapidresponse.crypto import DecryptionError, Purpose

    services.settings = replace(services.settings, report_retention_days=0)
    code = a_report(services)
    with services.database.session() as session:
        report = session.scalars(select(Report)).one()
        token, incident_id = report.text_sealed, report.incident_id
    assert token is not None and incident_id is not None
    keys = services.cipher.shred_keys
    assert f"incident-{incident_id}" in keys.names()
    close(environ, code)
    assert purge_report_texts_job() == 1
    assert f"incident-{incident_id}" not in keys.names()
    # Whatever copy of the old bytes the database's log still holds is noise now.
    with pytest.raises(DecryptionError):
        services.cipher.decrypt(token, Purpose.REPORT_TEXT)
