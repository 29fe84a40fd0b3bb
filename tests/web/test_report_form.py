"""The public report form: en/es, no JavaScript needed, CSRF, limits, sealed and placed."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import select
from werkzeug.test import TestResponse

import dispatch.incidents
from dispatch.form_limits import RedisFormLimits
from dispatch.services import Services
from rapidresponse.areas import import_areas
from rapidresponse.crypto import Purpose
from rapidresponse.models import Area, Incident, Report, ReportChannel
from rapidresponse.regions import demo_region_path, load_region_file
from rapidresponse.reports import open_point
from web import report as report_module

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "web" / "translations"
CLIENT_ADDRESS = "127.0.0.1"  # what Flask's test client reports as remote_addr
NO_RETRY = Retry(NoBackoff(), 0)

SIGHTING = {
    "location": "NE 42nd Ave and Killingsworth, Cully",
    "activity": "Knocking on doors, asked a neighbor for papers",
    "size": "4 agents, 2 vans",
    "uniform": "Vests marked POLICE ICE",
    "equipment": "White unmarked van, plate 123ABC",
    "time": "10 minutes ago",
    "eyewitness": "self",
    "other": "They went north\r\non 42nd.",
}


@pytest.fixture
def areas(services: Services) -> Services:
    with services.database.session() as session:
        import_areas(session, load_region_file(demo_region_path()), "Portland")
    return services


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch, services: Services) -> list[int]:
    """Incidents the form announced, each checked to be committed when it was announced."""
    announced: list[int] = []

    def incident_opened(found: Services, incident_id: int) -> None:
        with found.database.session() as session:  # a new session sees only committed rows
            assert session.get(Incident, incident_id) is not None
        announced.append(incident_id)

    # after_intake (called by the form) announces new incidents through this function.
    monkeypatch.setattr(dispatch.incidents, "incident_opened", incident_opened)
    return announced


def csrf_token(client: FlaskClient, query: str = "") -> str:
    page = client.get(f"/report{query}").get_data(as_text=True)
    found = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)


def send(
    client: FlaskClient, fields: dict[str, str], query: str = "", token: str | None = None
) -> TestResponse:
    """Post the form as a browser without JavaScript does: plain fields and the token."""
    data = {**fields, "csrf_token": csrf_token(client, query) if token is None else token}
    return client.post(f"/report{query}", data=data)


def stored(services: Services) -> list[Report]:
    with services.database.session() as session:
        return list(session.scalars(select(Report).order_by(Report.id)))


def text_of(services: Services, report: Report) -> str:
    assert report.text_sealed is not None
    return services.cipher.decrypt(report.text_sealed, Purpose.REPORT_TEXT)


def area_of(services: Services, report: Report) -> str | None:
    with services.database.session() as session:
        area = session.get(Area, report.area_id) if report.area_id else None
        return area.slug if area else None


def assert_self_contained(page: str) -> None:
    """No external reference, no inline script or style (the CSP would block them anyway)."""
    assert "http://" not in page and "https://" not in page
    assert not re.search(r'(src|href|action)="(?!/[^/]|#)', page)  # every link is our own path
    for tag in re.findall(r"<script[^>]*>", page):
        assert re.fullmatch(r'<script src="/static/[\w.]+" defer>', tag), tag
    assert "style=" not in page and "<style" not in page
    assert not re.search(r"<[^>]+\son\w+=", page)  # no inline event handlers


# --- the page ------------------------------------------------------------------------


def test_the_form_has_every_field_and_works_without_javascript(client: FlaskClient) -> None:
    response = client.get("/report")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<html lang="en">' in page and "Report immigration enforcement" in page
    form = re.search(r'<form id="report-form" method="post" action="/report\?lang=en"', page)
    assert form is not None  # a plain HTML form: posts without any script
    for name, length in report_module.MAX_LENGTHS.items():
        assert re.search(rf'<(input|textarea)[^>]*\bmaxlength="{length}"[^>]*name="{name}"', page)
    assert re.search(r'<input[^>]*name="location"[^>]*required', page)
    assert page.count('name="eyewitness"') == 2
    assert "I saw it myself" in page and "Someone told me" in page
    for hidden in ("latitude", "longitude", "csrf_token"):
        assert re.search(rf'name="{hidden}" type="hidden"', page)
    assert 'id="pin" class="pin" hidden' in page  # the location button only appears with JS
    assert '<a class="switch" href="/report?lang=es" hreflang="es" lang="es">Español</a>' in page
    assert_self_contained(page)


def test_the_form_carries_the_security_headers_and_is_not_cached(client: FlaskClient) -> None:
    headers = client.get("/report").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    assert "Accept-Language" in headers["Vary"]


@pytest.mark.parametrize(
    ("query", "accept_language", "language"),
    [
        ("", None, "en"),
        ("", "es-MX,es;q=0.9,en;q=0.5", "es"),
        ("", "es", "es"),
        ("", "en-US,en;q=0.9,es;q=0.8", "en"),
        ("", "fr-FR,de;q=0.8", "en"),
        ("?lang=es", "en-US", "es"),
        ("?lang=en", "es-MX", "en"),
        ("?lang=de", "es-MX", "es"),  # a language we do not speak: Accept-Language decides
    ],
)
def test_the_language_is_the_query_then_accept_language_then_english(
    client: FlaskClient, query: str, accept_language: str | None, language: str
) -> None:
    headers = {"Accept-Language": accept_language} if accept_language else {}
    page = client.get(f"/report{query}", headers=headers).get_data(as_text=True)
    assert f'<html lang="{language}">' in page
    assert f'action="/report?lang={language}"' in page
    if language == "es":
        assert "Reporte actividad de agentes de inmigración" in page
        assert "Lo vi con mis propios ojos" in page and "Alguien me lo contó" in page
        assert 'href="/report?lang=en" hreflang="en" lang="en">English</a>' in page
    else:
        assert "Report immigration enforcement" in page
    assert_self_contained(page)


# --- a report ------------------------------------------------------------------------


def test_a_report_is_stored_sealed_placed_and_opens_an_incident(
    client: FlaskClient, areas: Services, opened: list[int]
) -> None:
    response = send(client, SIGHTING)
    assert response.status_code == 303
    [report] = stored(areas)
    assert response.headers["Location"] == f"/report/thanks?code={report.code}&lang=en"
    assert report.channel is ReportChannel.WEB
    assert report.eyewitness is True
    assert report.reporter_hash is None  # an address is no person: never linked
    assert report.location_sealed is None
    # Only which fields were given is stored in the clear; their values are sealed.
    assert report.details == {
        "fields": ["activity", "equipment", "location", "size", "time", "uniform"]
    }
    assert text_of(areas, report) == (
        "Location: NE 42nd Ave and Killingsworth, Cully\n"
        "Activity: Knocking on doors, asked a neighbor for papers\n"
        "Size: 4 agents, 2 vans\n"
        "Uniform: Vests marked POLICE ICE\n"
        "Equipment: White unmarked van, plate 123ABC\n"
        "Time: 10 minutes ago\n"
        "Source: seen by the reporter\n"
        "Other: They went north\non 42nd."
    )
    assert area_of(areas, report) == "cully"
    with areas.database.session() as session:
        [incident] = session.scalars(select(Incident)).all()
        assert incident.area_id == report.area_id and report.incident_id == incident.id
    assert opened == [incident.id]  # announced once, after the commit


def test_the_thank_you_page_gives_the_code_and_what_to_do(
    client: FlaskClient, areas: Services, opened: list[int]
) -> None:
    response = client.get(send(client, SIGHTING).headers["Location"])
    page = response.get_data(as_text=True)
    [report] = stored(areas)
    assert response.status_code == 200
    assert f"<strong>{report.code}</strong>" in page
    assert "Trained responders will check it before any alert goes out." in page
    assert "Meanwhile" in page and "Know your rights" in page
    assert "You have the right to remain silent." in page
    assert f'href="/report/thanks?code={report.code}&amp;lang=es"' in page  # switch keeps it
    assert_self_contained(page)


def test_a_spanish_report_keeps_english_labels_and_is_placed_by_zip(
    client: FlaskClient, areas: Services, opened: list[int]
) -> None:
    fields = {
        "location": "Sandy Blvd, 97230",
        "activity": "Están parando carros",
        "eyewitness": "told",
    }
    response = send(client, fields, query="?lang=es")
    assert response.status_code == 303 and response.headers["Location"].endswith("&lang=es")
    [report] = stored(areas)
    assert report.eyewitness is False
    assert report.details == {"fields": ["activity", "location", "time"]}
    assert text_of(areas, report) == (
        "Location: Sandy Blvd, 97230\nActivity: Están parando carros\nTime: now\n"
        "Source: someone told the reporter"
    )
    assert area_of(areas, report) == "parkrose"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert '<html lang="es">' in page and "Gracias. Recibimos su reporte." in page
    assert f"<strong>{report.code}</strong>" in page


def test_a_pin_inside_an_area_places_a_report_without_a_typed_place(
    client: FlaskClient, areas: Services, opened: list[int]
) -> None:
    [lents] = [a for a in load_region_file(demo_region_path()) if a.slug == "lents"]
    point = lents.geometry.representative_point()
    fields = {"activity": "Agents at the bus stop", "eyewitness": "self"}
    response = send(client, {**fields, "latitude": str(point.y), "longitude": str(point.x)})
    assert response.status_code == 303
    [report] = stored(areas)
    # Kept to about 100 m (3 decimals): enough to place, not where the reporter stood.
    assert open_point(areas.cipher, report.location_sealed) == (
        round(point.y, 3),
        round(point.x, 3),
    )
    assert area_of(areas, report) == "lents"
    assert "location" not in report.details["fields"]
    assert len(opened) == 1


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [
        ("nan", "-122.6"),
        ("45.5", "inf"),
        ("-inf", "1"),
        ("91", "-122.6"),
        ("45.5", "-180.5"),
        ("1e400", "2"),
        ("north", "-122.6"),
        ("45.5", ""),
        ("", "-122.6"),
        ("45.5,-122.6", "0x10"),
    ],
)
def test_a_bad_pin_is_ignored(
    client: FlaskClient, areas: Services, opened: list[int], latitude: str, longitude: str
) -> None:
    fields = {**SIGHTING, "location": "Cully", "latitude": latitude, "longitude": longitude}
    assert send(client, fields).status_code == 303
    [report] = stored(areas)
    assert report.location_sealed is None
    assert area_of(areas, report) == "cully"


def test_a_bad_pin_is_no_place(client: FlaskClient, services: Services) -> None:
    fields = {"activity": "vans", "eyewitness": "self", "latitude": "nan", "longitude": "1"}
    response = send(client, fields)
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "Please tell us where it is happening." in page
    assert 'name="latitude" type="hidden" value=""' in page
    assert stored(services) == []


def test_an_unplaced_report_is_still_taken(
    client: FlaskClient, areas: Services, opened: list[int]
) -> None:
    fields = {"location": "behind the big church", "activity": "vans", "eyewitness": "self"}
    assert send(client, fields).status_code == 303
    [report] = stored(areas)
    assert report.area_id is None  # flagged for a dispatcher to place
    assert len(opened) == 1


def test_a_second_report_at_the_same_place_joins_the_incident(
    client: FlaskClient, areas: Services, opened: list[int]
) -> None:
    send(client, SIGHTING)
    send(client, {**SIGHTING, "eyewitness": "told"})
    first, second = stored(areas)
    assert first.incident_id == second.incident_id
    assert len(opened) == 1  # only a new incident starts a dispatch


# --- refusals ------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["", "forged-token", "ImZvcmdlZCI.Zx.abc"])
def test_a_missing_or_forged_csrf_token_stores_nothing(
    client: FlaskClient, areas: Services, opened: list[int], token: str
) -> None:
    client.get("/report")  # the browser has a session, just not this token
    response = send(client, SIGHTING, token=token)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "your report was not sent yet" in page
    assert 'value="NE 42nd Ave and Killingsworth, Cully"' in page  # nothing typed is lost
    assert re.search(r'name="csrf_token" type="hidden" value="[^"]+"', page)  # a fresh one
    assert stored(areas) == [] and opened == []


def test_a_post_without_any_token_field_stores_nothing(
    client: FlaskClient, services: Services
) -> None:
    response = client.post("/report", data=SIGHTING)
    assert response.status_code == 400
    assert stored(services) == []


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {name: "" for name in SIGHTING},
        {name: "  \t\r\n " for name in SIGHTING},
        {name: "\x00\u200b" for name in SIGHTING},
    ],
)
def test_an_empty_report_is_shown_again_with_what_is_missing(
    client: FlaskClient, services: Services, fields: dict[str, str]
) -> None:
    response = send(client, fields)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Your report was not sent yet. Please check:" in page
    assert "Please tell us where it is happening." in page
    assert "Please tell us what you saw." in page
    assert "Please tell us whether you saw it yourself or someone told you." in page
    assert stored(services) == []
    assert_self_contained(page)


def test_the_errors_speak_spanish_too(client: FlaskClient, services: Services) -> None:
    response = send(client, {"location": "x" * 301}, query="?lang=es")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "Use como máximo 300 caracteres." in page
    assert "Por favor, díganos qué vio." in page
    assert "Por favor, díganos si lo vio usted o si alguien se lo contó." in page
    assert stored(services) == []


def test_an_unknown_answer_to_how_do_you_know_is_refused(
    client: FlaskClient, services: Services
) -> None:
    response = send(client, {**SIGHTING, "eyewitness": "both"})
    assert response.status_code == 400
    assert "Please tell us whether you saw it yourself" in response.get_data(as_text=True)
    assert stored(services) == []


@pytest.mark.parametrize("name", sorted(report_module.MAX_LENGTHS))
def test_an_oversized_field_is_refused_with_a_message(
    client: FlaskClient, services: Services, name: str
) -> None:
    limit = report_module.MAX_LENGTHS[name]
    response = send(client, {**SIGHTING, name: "a" * (limit + 1)})
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert f"Please use at most {limit} characters." in page
    assert stored(services) == []


def test_a_flood_of_bytes_is_refused_before_anything_is_read(
    client: FlaskClient, services: Services
) -> None:
    response = send(client, {**SIGHTING, "other": "a" * 100_000})
    assert response.status_code == 413
    assert stored(services) == []


def test_a_report_too_long_altogether_is_refused(client: FlaskClient, services: Services) -> None:
    fields = {name: "a" * limit for name, limit in report_module.MAX_LENGTHS.items()}
    response = send(client, {**fields, "eyewitness": "self"})
    assert response.status_code == 400
    assert "Your report is too long altogether." in response.get_data(as_text=True)
    assert stored(services) == []


def test_a_report_at_every_field_limit_but_within_the_total_is_taken(
    client: FlaskClient, areas: Services, opened: list[int]
) -> None:
    fields = {**SIGHTING, "activity": "a" * report_module.MAX_LENGTHS["activity"]}
    assert send(client, fields).status_code == 303
    assert len(stored(areas)) == 1


# --- rate limit and privacy ----------------------------------------------------------


def redis_dump(redis: Redis) -> Iterator[str]:
    """Every key in the test database, and every value that can be read as text."""
    for key in redis.scan_iter(count=1000):
        yield key.decode(errors="replace")
        kind = redis.type(key).decode()
        values: list[Any] = []
        if kind == "string":
            values = [redis.get(key)]
        elif kind == "list":
            values = redis.lrange(key, 0, -1)
        elif kind == "hash":
            values = [*redis.hgetall(key).values()]
        elif kind == "zset":
            values = redis.zrange(key, 0, -1)
        elif kind == "set":
            values = [*redis.smembers(key)]
        for value in values:
            if isinstance(value, bytes):
                yield value.decode(errors="replace")


def test_a_client_over_the_limit_gets_a_polite_429_and_nothing_is_stored(
    app: Flask, client: FlaskClient, areas: Services, opened: list[int]
) -> None:
    app.config["REPORT_FORM_LIMIT"] = "3/hour"
    for _ in range(3):
        assert send(client, SIGHTING).status_code == 303
    response = send(client, SIGHTING)
    page = response.get_data(as_text=True)
    assert response.status_code == 429
    assert "Many reports have come from your connection in the last hour" in page
    assert 'value="NE 42nd Ave and Killingsworth, Cully"' in page  # they can copy it
    assert_self_contained(page)
    assert len(stored(areas)) == 3
    dump = list(redis_dump(areas.volatile))  # the Redis that keeps nothing on disk
    assert not [entry for entry in dump if CLIENT_ADDRESS in entry]
    client_key = areas.reporter_keys.hashes(CLIENT_ADDRESS)[0]
    assert [key for key in dump if client_key in key and "report-form" in key]
    if areas.settings.volatile_redis_url != areas.settings.redis_url:
        assert not [key for key in redis_dump(areas.redis) if "report-form" in key]


def test_invalid_attempts_do_not_use_up_the_limit(
    app: Flask, client: FlaskClient, areas: Services, opened: list[int]
) -> None:
    app.config["REPORT_FORM_LIMIT"] = "1/hour"
    for _ in range(3):
        assert send(client, {}).status_code == 400
    assert send(client, SIGHTING).status_code == 303


def test_the_default_limit_is_ten_an_hour() -> None:
    assert report_module.REPORT_FORM_LIMIT == "10/hour"


def test_the_limit_fails_open_when_redis_is_down() -> None:
    unreachable = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5, retry=NO_RETRY)
    assert RedisFormLimits(unreachable).hit("1/hour", "any") is True


def test_without_todays_reporter_key_reports_are_still_taken(
    app: Flask,
    client: FlaskClient,
    areas: Services,
    opened: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DailyReporterKeys answers () when Redis is unreachable: then there is no limit."""
    app.config["REPORT_FORM_LIMIT"] = "1/hour"
    monkeypatch.setattr(areas.reporter_keys, "hashes", lambda _address: ())
    for _ in range(3):
        assert send(client, SIGHTING).status_code == 303
    assert len(stored(areas)) == 3


def test_nothing_about_the_reporter_is_kept_or_logged(
    client: FlaskClient, areas: Services, opened: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"User-Agent": "Mozilla/5.0 (Reporter-Phone-Model-X)"}
    token = csrf_token(client)
    response = client.post("/report", data={**SIGHTING, "csrf_token": token}, headers=headers)
    assert response.status_code == 303
    for secret in (CLIENT_ADDRESS, "Reporter-Phone-Model-X", "Killingsworth", "123ABC"):
        assert secret not in caplog.text
        for redis in (areas.redis, areas.volatile):
            assert not [entry for entry in redis_dump(redis) if secret in entry]
    with client.session_transaction() as session:
        assert set(session) == {"csrf_token"}  # the session holds the CSRF token, nothing else


def test_a_thank_you_page_for_no_real_code_goes_back_to_the_form(client: FlaskClient) -> None:
    for code in ("", "1234", "<script>", "K7P2K7P2"):
        response = client.get("/report/thanks", query_string={"code": code, "lang": "es"})
        assert response.status_code == 303 and response.headers["Location"] == "/report?lang=es"


# --- the catalogs --------------------------------------------------------------------


def catalog_meaning(catalog: Catalog) -> tuple[str, set[tuple[Any, Any, Any]]]:
    """What a catalog says at run time: its plural rule and each translated message.

    Fuzzy and untranslated entries are not compiled, so they mean nothing here; headers
    such as `Generated-By` (the Babel version) are bookkeeping, never meaning.
    """
    messages = {
        (message.context, _hashable(message.id), _hashable(message.string))
        for message in catalog
        if message.id
        and message.string
        and not message.fuzzy
        and (isinstance(message.string, str) or all(message.string))
    }
    return catalog.plural_forms, messages


def _hashable(text: str | list[str] | tuple[str, ...]) -> str | tuple[str, ...]:
    """A plural's forms (a tuple from a .po, a list from a .mo) as a tuple."""
    return text if isinstance(text, str) else tuple(text)


def test_the_committed_mo_says_what_the_po_says() -> None:
    """`pybabel compile -d web/translations` after every change to a .po file."""
    po_paths = sorted(TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"))
    assert po_paths, "no catalogs found"
    for po_path in po_paths:
        with po_path.open("rb") as handle:
            source = read_po(handle, locale=po_path.parts[-3])
        with po_path.with_suffix(".mo").open("rb") as handle:
            compiled = read_mo(handle)
        assert catalog_meaning(compiled) == catalog_meaning(source), (
            f"{po_path.with_suffix('.mo')} is stale: run pybabel compile -d web/translations"
        )


def test_the_catalog_check_notices_a_changed_translation_but_not_a_babel_upgrade() -> None:
    po_path = TRANSLATIONS / "es" / "LC_MESSAGES" / "messages.po"
    with po_path.open("rb") as handle:
        source = read_po(handle, locale="es")
    rebuilt = io.BytesIO()
    write_mo(rebuilt, source)
    # Another Babel release writes another version here (same length: offsets stay valid).
    relabelled = re.sub(
        rb"Generated-By: Babel [0-9.]+",
        lambda found: re.sub(rb"[0-9]", b"9", found.group(0)),
        rebuilt.getvalue(),
    )
    assert relabelled != rebuilt.getvalue()
    assert catalog_meaning(read_mo(io.BytesIO(relabelled))) == catalog_meaning(source)
    changed = next(m for m in source if m.id and m.string and not m.fuzzy)
    changed.string = "otra cosa" if isinstance(changed.string, str) else ("a", "b")
    assert catalog_meaning(source) != catalog_meaning(read_mo(io.BytesIO(rebuilt.getvalue())))


def test_every_string_of_the_pages_has_a_spanish_translation() -> None:
    """`pybabel extract` and `pybabel update` (see babel.cfg) after changing page text."""
    with (ROOT / "babel.cfg").open() as handle:
        method_map, options_map = parse_mapping_cfg(handle)
    keywords = {"_": None, "gettext": None, "_l": None, "N_": None, "ngettext": (1, 2)}
    in_sources = {
        message if isinstance(message, str) else message[0]
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords=keywords
        )
    }
    with (TRANSLATIONS / "es" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        spanish = read_po(handle, locale="es")
    translated = {
        m.id if isinstance(m.id, str) else m.id[0]
        for m in spanish
        # a plural is translated when each of its forms is (its empty forms are a tuple)
        if m.id and (all(m.string) if isinstance(m.string, tuple) else m.string) and not m.fuzzy
    }
    assert in_sources, "nothing extracted: is babel.cfg right?"
    assert any(" %(num)d " in f" {m} " or "%(num)d" in m for m in in_sources)  # plurals too
    assert sorted(in_sources - translated) == []
