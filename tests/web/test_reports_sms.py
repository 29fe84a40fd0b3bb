"""Sightings by SMS: every non-command text is a report, merged into incidents, never lost."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.engine import make_url

from dispatch.services import Services
from rapidresponse import audit
from rapidresponse.board import incident_detail
from rapidresponse.crypto import Purpose
from rapidresponse.models import AuditEvent, Incident, IncidentState, Report
from rapidresponse.reports import counts, open_point
from rapidresponse.shredding import incident_key
from rapidresponse.verification import page_summary

# The fixtures of the inbound tests: a Twilio-backed app with the demo region loaded.
from tests.web.sms_helpers import ALICE, INBOUND_URL, Phone, new_sid, send, sign, twiml_message

CARLA = "+15035550163"
SIGHTING = "ICE van and 4 agents in vests at NE 42nd and Killingsworth in Cully, 9:40am"


def reports(services: Services) -> list[Report]:
    with services.database.session() as session:
        return list(session.scalars(select(Report).order_by(Report.id)))


def incidents(services: Services) -> list[Incident]:
    with services.database.session() as session:
        return list(session.scalars(select(Incident).order_by(Incident.id)))


def text_of(services: Services, report: Report) -> str:
    assert report.text_sealed is not None
    return services.cipher.decrypt(report.text_sealed, Purpose.REPORT_TEXT)


def test_a_sighting_becomes_a_placed_report(alice: Phone, twilio_services: Services) -> None:
    answer = alice.text(SIGHTING)
    [report] = reports(twilio_services)
    assert answer == (
        f"Report {report.code} received. Trained responders will check it "
        "before any alert goes out. Text RIGHTS to know your rights."
    )
    assert text_of(twilio_services, report) == SIGHTING
    [incident] = incidents(twilio_services)
    assert report.incident_id == incident.id and incident.state is IncidentState.REPORTED
    with twilio_services.database.session() as session:
        placed = session.get_one(Report, report.id)
        assert placed.area is not None and placed.area.slug == "cully"
        assert session.get_one(Incident, incident.id).area_id == placed.area_id


def test_an_unplaced_report_asks_where(alice: Phone, twilio_services: Services) -> None:
    answer = alice.text("agents knocking on doors right now")
    [report] = reports(twilio_services)
    assert answer is not None and answer.startswith(f"Report {report.code} received. Where is it?")
    [incident] = incidents(twilio_services)
    assert incident.area_id is None  # flagged for a dispatcher to place


def test_more_detail_within_30_minutes_joins_the_same_report(
    alice: Phone, twilio_services: Services
) -> None:
    alice.text("agents knocking on doors right now")
    answer = alice.text("it is on N Lombard near 97203 Portsmouth")
    [report] = reports(twilio_services)
    assert answer == f"Thank you, we added that to report {report.code}."
    assert text_of(twilio_services, report) == (
        "agents knocking on doors right now\nit is on N Lombard near 97203 Portsmouth"
    )
    [incident] = incidents(twilio_services)
    assert incident.area_id is not None and incident.area_id == report.area_id


def test_three_people_at_one_corner_make_one_incident(
    alice: Phone, beto: Phone, sms_app: Flask, twilio_services: Services
) -> None:
    carla = Phone(sms_app.test_client(), CARLA)
    alice.text(SIGHTING)
    beto.text("hay agentes de inmigracion en la esquina de 42 y Killingsworth, Cully")
    carla.text("Two ICE trucks on Killingsworth by 42nd Ave, Cully")
    [incident] = incidents(twilio_services)
    with twilio_services.database.session() as session:
        assert counts(session, incident.id) == (3, 3, 0)
    assert len({r.code for r in reports(twilio_services)}) == 3


def test_a_spanish_report_is_answered_in_spanish(beto: Phone) -> None:
    answer = beto.text("hay agentes de la migra en la tienda de Cully")
    assert answer is not None and answer.startswith("Reporte ")


def test_an_opted_out_numbers_report_is_kept_but_not_answered(
    alice: Phone, twilio_services: Services
) -> None:
    alice.text("STOP")
    assert alice.text(SIGHTING) is None
    assert len(reports(twilio_services)) == 1


def test_a_shared_location_places_the_report(sms_app: Flask, twilio_services: Services) -> None:
    from rapidresponse.regions import demo_region_path, load_region_file

    lents = next(s for s in load_region_file(demo_region_path()) if s.slug == "lents")
    point = lents.geometry.representative_point()
    params = {
        "From": ALICE,
        "Body": "look here",
        "MessageSid": new_sid(),
        "Latitude": str(point.y),
        "Longitude": str(point.x),
    }
    response = send(sms_app.test_client(), params)
    assert response.status_code == 200  # type: ignore[attr-defined]
    [report] = reports(twilio_services)
    place = open_point(twilio_services.cipher, report.location_sealed)
    assert place == (round(point.y, 3), round(point.x, 3))  # about 100 m, never the exact spot
    with twilio_services.database.session() as session:
        placed = session.get_one(Report, report.id)
        assert placed.area is not None and placed.area.slug == "lents"


def lents_point() -> tuple[str, str]:
    from rapidresponse.regions import demo_region_path, load_region_file

    lents = next(s for s in load_region_file(demo_region_path()) if s.slug == "lents")
    point = lents.geometry.representative_point()
    return str(point.y), str(point.x)


@pytest.mark.parametrize("body", [None, "", "  "])
def test_a_shared_location_with_no_words_is_a_placed_report(
    sms_app: Flask, twilio_services: Services, body: str | None
) -> None:
    latitude, longitude = lents_point()
    params = {"From": ALICE, "MessageSid": new_sid(), "Latitude": latitude, "Longitude": longitude}
    if body is not None:
        params["Body"] = body
    response = send(sms_app.test_client(), params)
    assert response.status_code == 200  # type: ignore[attr-defined]
    [report] = reports(twilio_services)
    assert text_of(twilio_services, report) == "(shared a location with no text)"
    answer = twiml_message(response.get_data(as_text=True))  # type: ignore[attr-defined]
    assert answer is not None and answer.startswith(f"Report {report.code} received.")
    with twilio_services.database.session() as session:
        placed = session.get_one(Report, report.id)
        assert placed.area is not None and placed.area.slug == "lents"


@pytest.mark.parametrize("body", [None, ""])
def test_a_photo_with_no_words_is_a_report(
    sms_app: Flask, twilio_services: Services, body: str | None
) -> None:
    # Twilio sends an MMS with no text without any Body parameter at all.
    params = {"From": ALICE, "MessageSid": "MM" + new_sid()[2:], "NumMedia": "1"}
    params["MediaUrl0"] = "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1"
    if body is not None:
        params["Body"] = body
    response = send(sms_app.test_client(), params)
    assert response.status_code == 200  # type: ignore[attr-defined]
    [report] = reports(twilio_services)
    assert text_of(twilio_services, report).startswith("(sent a photo with no text")
    answer = twiml_message(response.get_data(as_text=True))  # type: ignore[attr-defined]
    assert answer is not None and answer.startswith(f"Report {report.code} received.")


@pytest.mark.parametrize(("latitude", "longitude"), [("nan", "nan"), ("91", "0"), ("x", "1")])
def test_a_nonsense_location_is_ignored(
    sms_app: Flask, twilio_services: Services, latitude: str, longitude: str
) -> None:
    params = {
        "From": ALICE,
        "Body": "look here",
        "MessageSid": new_sid(),
        "Latitude": latitude,
        "Longitude": longitude,
    }
    assert send(sms_app.test_client(), params).status_code == 200  # type: ignore[attr-defined]
    assert reports(twilio_services)[0].location_sealed is None


def test_a_burst_is_flagged_as_a_possible_flood_and_confirms_nothing(
    sms_app: Flask, twilio_services: Services
) -> None:
    for n in range(8):
        Phone(sms_app.test_client(), f"+1503555{n + 120:04d}").text(
            "ICE raid happening on Killingsworth in Cully"
        )
    [incident] = incidents(twilio_services)
    assert incident.possible_flood
    assert incident.state is IncidentState.REPORTED


def test_reports_are_audited_without_numbers(alice: Phone, twilio_services: Services) -> None:
    alice.text(SIGHTING)
    with twilio_services.database.session() as session:
        events = session.scalars(select(AuditEvent)).all()
        assert [e.action for e in events] == ["report.received"]
        assert audit.verify(session) is None
        assert "5550142" not in str([(e.details, e.subject, e.actor) for e in events])


def test_neither_the_number_nor_the_text_is_stored_in_the_clear(
    alice: Phone, twilio_services: Services
) -> None:
    alice.text(SIGHTING)
    alice.text("more: they have a list of names")
    stored = b""
    for key in twilio_services.redis.scan_iter(count=1000):
        stored += key + (twilio_services.redis.dump(key) or b"")
    for secret in (b"5035550142", b"Killingsworth", b"list of names"):
        assert secret not in stored
    database = twilio_services.database
    path = make_url(database.url).database
    if database.dialect == "sqlite" and path:
        database.dispose()
        with open(path, "rb") as handle:
            raw = handle.read()
        for secret in (b"5035550142", b"Killingsworth", b"list of names"):
            assert secret not in raw
    [report] = reports(twilio_services)
    assert report.reporter_hash is not None and "5550142" not in report.reporter_hash


def test_a_report_from_an_unreachable_redis_is_still_taken(
    alice: Phone, twilio_services: Services
) -> None:
    from dispatch.redis_conn import connect
    from dispatch.reporter_keys import ReporterKeys

    dead = connect("redis://127.0.0.1:1/0")
    twilio_services.reporter_keys = ReporterKeys(dead, timedelta(hours=1), timedelta(minutes=30))
    assert alice.text(SIGHTING) is not None
    assert reports(twilio_services)[0].reporter_hash is None


def test_the_inbound_url_is_what_is_signed() -> None:
    params = {"From": ALICE, "Body": "x", "MessageSid": new_sid()}
    assert sign(params) == sign(params, url=INBOUND_URL)
    assert twiml_message("<Response/>") is None


def test_the_web_process_logs_no_number_and_no_text(
    alice: Phone, beto: Phone, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    alice.text(SIGHTING)
    alice.text("more: they have a list of names")
    beto.text("UNIRSE Cully")
    beto.text("STOP")
    logged = caplog.text + " ".join(str(r.args) for r in caplog.records)
    for secret in ("5035550142", "9715550177", "Killingsworth", "list of names"):
        assert secret not in logged


def test_with_redis_down_a_report_is_still_stored_and_answered(
    alice: Phone, twilio_services: Services
) -> None:
    from dispatch.limits import RedisAbuseLimits
    from dispatch.live import LivePublisher
    from dispatch.redis_conn import connect
    from dispatch.reporter_keys import ReporterKeys
    from dispatch.volatile import RememberedLanguages, SeenMessages

    dead_url = "redis://127.0.0.1:1/0"
    dead = connect(dead_url)
    twilio_services.redis = twilio_services.volatile = dead
    twilio_services.limits = RedisAbuseLimits(dead, "30/hour", "5/day")
    twilio_services.reporter_keys = ReporterKeys(dead, timedelta(hours=1), timedelta(minutes=30))
    twilio_services.seen_messages = SeenMessages(dead, 3600)
    twilio_services.languages = RememberedLanguages(dead, 3600)
    twilio_services.live = LivePublisher(dead_url)
    answer = alice.text(SIGHTING)
    assert answer is not None and answer.startswith("Report ")
    assert len(reports(twilio_services)) == 1  # the sweep will dispatch it once Redis is back


def test_the_merge_window_is_configurable(
    alice: Phone, beto: Phone, twilio_services: Services
) -> None:
    from dataclasses import replace

    twilio_services.settings = replace(twilio_services.settings, report_merge_minutes=0)
    alice.text(SIGHTING)
    beto.text("ICE agents on Killingsworth in Cully")
    assert len(incidents(twilio_services)) == 2  # no window: every report stands alone


def test_far_apart_pins_in_one_area_are_different_incidents(
    sms_app: Flask, twilio_services: Services
) -> None:
    from dataclasses import replace

    from rapidresponse.regions import demo_region_path, load_region_file

    twilio_services.settings = replace(twilio_services.settings, report_merge_meters=100)
    cully = next(s for s in load_region_file(demo_region_path()) if s.slug == "cully")
    west, south, east, north = cully.geometry.bounds
    corners = [
        (south + 0.2 * (north - south), west + 0.5 * (east - west)),
        (south + 0.8 * (north - south), west + 0.5 * (east - west)),
    ]
    for n, (latitude, longitude) in enumerate(corners):
        params = {
            "From": f"+1503555{n + 130:04d}",
            "Body": "agents here",
            "MessageSid": new_sid(),
            "Latitude": str(latitude),
            "Longitude": str(longitude),
        }
        assert send(sms_app.test_client(), params).status_code == 200
    assert len(incidents(twilio_services)) == 2


def test_a_report_cannot_spoof_what_the_board_and_the_responder_read(
    alice: Phone, twilio_services: Services
) -> None:
    """A right-to-left override, isolates and zero-width characters would make the board
    (and the responder's page) show something other than what the text holds."""
    spoofed = "ICE at NE \u202e42nd\u202c and \u2066Killingsworth\u2069 in Cully\u200b \u2067now"
    alice.text(spoofed)
    [report] = reports(twilio_services)
    assert text_of(twilio_services, report) == "ICE at NE 42nd and Killingsworth in Cully now"

    # A text stored before intake cleaned it is cleaned where it is shown and relayed.
    assert report.incident_id is not None
    with twilio_services.database.session() as session:
        stored = session.get_one(Report, report.id)
        stored.text_sealed = twilio_services.cipher.seal(
            incident_key(report.incident_id), spoofed, Purpose.REPORT_TEXT
        )
    with twilio_services.database.session() as session:
        detail = incident_detail(session, twilio_services.cipher, report.incident_id)
        assert detail is not None
        [shown] = [view.text for view in detail.reports]
        relayed = page_summary(
            session, twilio_services.cipher, session.get_one(Incident, report.incident_id)
        )
    for text in (shown, relayed):
        assert text == "ICE at NE 42nd and Killingsworth in Cully now"
