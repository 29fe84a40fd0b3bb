"""Every staff page, in Spanish: no English label of our own, no "1 reportes".

The world has something in every state a page can show (incidents being verified,
confirmed, decided, closed, merged; a verdict with its note, a comment; alerts drafted
and sent; invitations; a responder), and each staff page is rendered in Spanish, as a
coordinator sees it. The page's visible text, without what people wrote (reports, notes,
the English preview of an alert, names, e-mails), must contain none of the English labels
of our own catalog, and no count of one with a plural noun; the same check for plurals
runs in English.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from dispatch.alerts import draft_for_incident
from dispatch.services import Services
from rapidresponse import announcements, broadcast, drills
from rapidresponse.crypto import Purpose
from rapidresponse.incident_notes import add_comment
from rapidresponse.models import (
    AuditEvent,
    Dispatch,
    DispatchState,
    Drill,
    DrillParticipant,
    Incident,
    IncidentState,
    StaffRole,
    Subscriber,
    Verdict,
    utcnow,
)
from rapidresponse.shredding import incident_key
from tests.web.staff_helpers import add_account, sign_in
from tests.web.test_access import ROUTES, World, build_world, fill

CATALOG = Path(__file__).resolve().parents[2] / "web/translations/es/LC_MESSAGES/messages.po"
# What people wrote, and what is English by design, is not ours to translate.
NOT_OURS = {"blockquote", "q", "pre", "code", "kbd", "textarea", "script", "style", "option"}
NOT_OURS_CLASSES = {"author", "code", "area", "email", "report-text", "note-text"}
# Words the same in both languages ("responder" is also Spanish: to answer), or names.
SAME_IN_BOTH = {"No", "Total", "SMS", "GSM-7", "UCS-2", "Hash", "Email", "OK", "responder"}
PLURAL_NOUNS = (
    "reportes|independientes|testigos|avisados|respondedores|segmentos|caracteres|"
    "suscriptores|eventos|incidentes|alertas|minutos|horas|enviados|entregados|fallidos|"
    "reports|eyewitnesses|responders|segments|characters|subscribers|events|incidents"
)
ONE_AND_A_PLURAL = re.compile(rf"(?<![\d.,])1 ({PLURAL_NOUNS})\b")


class VisibleText(HTMLParser):
    """The text a reader sees, minus what people wrote and what is English by design."""

    def __init__(self, skip_english: bool) -> None:
        super().__init__()
        self.skip_english = skip_english  # parts, or whole pages, English by design
        self.skipping: list[str] = []
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        classes = set((found.get("class") or "").split())
        not_ours = (
            tag in NOT_OURS
            or classes & NOT_OURS_CLASSES
            or (self.skip_english and found.get("lang") == "en")
            or (found.get("title") is not None and tag == "td")
        )
        void = tag in ("br", "img", "input", "meta", "link")
        if (self.skipping or not_ours) and not void:
            self.skipping.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skipping and self.skipping[-1] == tag:
            self.skipping.pop()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def visible_text(html: str, skip_english: bool = True) -> str:
    reader = VisibleText(skip_english)
    reader.feed(html)
    return " ".join(" ".join(reader.parts).split())


PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]")


def english_labels() -> list[tuple[str, re.Pattern[str]]]:
    """Our own English labels: short messages of the catalog whose Spanish differs, each
    plural form of an ``ngettext`` on its own, placeholders standing for any value."""
    with CATALOG.open("rb") as handle:
        catalog = read_po(handle)
    labels = []
    for message in catalog:
        forms = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for form in forms:
            words = PLACEHOLDER.sub("", form).split()
            translated = any(strings) and form not in strings
            if form and 1 <= len(words) <= 4 and translated and form not in SAME_IN_BOTH:
                labels.append((form, label_pattern(form)))
    return sorted(labels, key=lambda label: len(label[0]), reverse=True)


def label_pattern(label: str) -> re.Pattern[str]:
    parts = PLACEHOLDER.split(label)
    body = r"\S+".join(re.escape(part) for part in parts)
    return re.compile(rf"(?<![\w-]){body}(?![\w-])")


def full_world(services: Services) -> World:
    world = build_world(services)
    commenter = add_account(services, StaffRole.DISPATCHER, "dispatch@example.org")
    with services.database.session() as session:
        confirmed = session.get_one(Incident, world.incident_id)
        session.add(
            Dispatch(
                incident_id=confirmed.id,
                responder_id=world.responder_id,
                state=DispatchState.DONE,
                verdict=Verdict.CONFIRM,
                verdict_at=utcnow(),
                note_sealed=services.cipher.seal(
                    incident_key(confirmed.id), "dos camionetas", Purpose.DISPATCH_NOTE
                ),
            )
        )
        for code, state in (
            ("R2P3", IncidentState.REPORTED),
            ("D2P3", IncidentState.DISPATCHED),
            ("F2P3", IncidentState.FALSE_ALARM),
            ("U2P3", IncidentState.UNVERIFIED),
            ("C2P3", IncidentState.CLOSED),
        ):
            incident = Incident(
                code=code,
                state=state,
                area_id=confirmed.area_id,
                closed_at=utcnow() if state is IncidentState.CLOSED else None,
                follows_id=confirmed.id if state is IncidentState.REPORTED else None,
            )
            session.add(incident)
            session.flush()
            if state is IncidentState.DISPATCHED:
                session.add(Dispatch(incident_id=incident.id, responder_id=world.responder_id))
        add_comment(session, services.cipher, confirmed.id, commenter.id, "llamamos a la escuela")
        # Drills with their incident and a participant of each kind: one running, one
        # ended (its card frozen).
        subscriber_id = session.scalar(select(Subscriber.id).limit(1))
        for code in ("S2P3", "S3P4"):
            drill = drills.start(
                session,
                area_id=confirmed.area_id or 0,
                scenario="Agentes en la puerta de la escuela",
                responder_ids=[world.responder_id],
                started_by_id=commenter.id,
                now=utcnow(),
            )
            session.add(DrillParticipant(drill_id=drill.id, subscriber_id=subscriber_id))
            session.add(
                Incident(
                    code=code,
                    state=IncidentState.DISPATCHED,
                    area_id=confirmed.area_id,
                    drill_id=drill.id,
                )
            )
            session.flush()
        drills.end(session, drill, services.cipher, utcnow(), "staff:1")
        training = announcements.draft(
            session,
            bodies={"en": "Training Saturday", "es": "Taller el sabado"},
            area_ids=[confirmed.area_id or 0],
            asks_rsvp=True,
            signatures={"en": "-RR", "es": "-RR"},
            staff_id=commenter.id,
        )
        broadcast.approve(
            session, training.id, now=utcnow(), validity=timedelta(hours=6), batch=100
        )
    return world


@pytest.fixture
def world(services: Services) -> World:
    world = full_world(services)
    draft_for_incident(services, world.incident_id)
    return world


@pytest.fixture
def coordinator(app: Flask, services: Services, world: World) -> FlaskClient:
    client = app.test_client()
    sign_in(client, services, add_account(services, StaffRole.COORDINATOR))
    return client


def staff_pages(services: Services, world: World) -> list[str]:
    with services.database.session() as session:
        incidents = session.scalars(select(Incident.id)).all()
        drill_ids = session.scalars(select(Drill.id)).all()
    pages = [
        fill(rule, world, services)
        for method, rule in ROUTES
        if method == "GET" and "coordinator" in ROUTES[(method, rule)] and "<" not in rule
    ]
    with_ids = [
        fill(rule, world, services)
        for method, rule in ROUTES
        if method == "GET" and "coordinator" in ROUTES[(method, rule)] and "<int:" in rule
    ]
    return sorted(
        {
            *pages,
            *with_ids,
            *(f"/board/incidents/{i}" for i in incidents),
            *(f"/drills/{d}" for d in drill_ids),
        }
    )


def test_every_staff_page_in_spanish_has_no_english_label_of_ours(
    coordinator: FlaskClient, services: Services, world: World
) -> None:
    labels = english_labels()
    assert len(labels) > 100  # the check has something to check with
    coordinator.get("/board?lang=es")  # the choice is kept for the session
    checked, leaks = 0, []
    for path in staff_pages(services, world):
        response = coordinator.get(path)
        if response.mimetype != "text/html" or response.status_code != 200:
            continue
        text = visible_text(response.get_data(as_text=True))
        checked += len(text) > 200  # a page read, not one skipped whole
        for label, pattern in labels:
            found = pattern.search(text)
            if found:
                around = text[max(0, found.start() - 40) : found.end() + 40]
                leaks.append(f"{path}: {label!r} in …{around}…")
        for match in ONE_AND_A_PLURAL.finditer(text):
            leaks.append(f"{path}: {match.group(0)!r}")
    assert checked >= 10
    assert leaks == [], "\n".join(leaks)


def test_no_english_page_says_one_with_a_plural(
    coordinator: FlaskClient, services: Services, world: World
) -> None:
    coordinator.get("/board?lang=en")
    read = 0
    for path in staff_pages(services, world):
        text = visible_text(coordinator.get(path).get_data(as_text=True), skip_english=False)
        assert not ONE_AND_A_PLURAL.search(text), path
        read += len(text) > 200
    assert read >= 10  # English pages are read, not skipped as "English by design"


def test_the_board_and_the_texts_use_the_same_words(
    coordinator: FlaskClient, services: Services, world: World
) -> None:
    """The all-clear is "FIN DE ALERTA" in the Spanish texts: the board says so too."""
    from rapidresponse.messages import catalog
    from rapidresponse.models import Language

    assert catalog(Language.ES)["alert.all_clear"].startswith("FIN DE ALERTA")
    page = coordinator.get(f"/board/alerts/{world.alert_id}?lang=es").get_data(as_text=True)
    assert "Fin de alerta" in page  # the follow-up kind to choose
    with services.database.session() as session:
        assert session.scalar(select(AuditEvent.id).limit(1)) is not None


# What Python writes when a value reaches a page unformatted: a list or dict, None, a
# bool, an enum member, a datetime in ISO form or with its offset, a repr.
RAW_PYTHON = re.compile(
    r"\[['\"]|\{['\"]|\bNone\b|\bTrue\b|\bFalse\b|\b[A-Z][A-Za-z]+\.[A-Z_]{2,}\b"
    r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d|[+-]00:00\b|\bUTC\b|<[a-z_.]+ object at"
    r"|\bdatetime\.|\bDecimal\(|\b\w+\(id=\d"
)


@pytest.mark.parametrize("language", ["en", "es"])
def test_no_staff_page_shows_a_raw_python_value_or_a_utc_time(
    language: str, coordinator: FlaskClient, services: Services, world: World
) -> None:
    """Times are the deployment's local clock ("10:47"); UTC only on hover (a title)."""
    coordinator.get(f"/board?lang={language}")
    checked, found = 0, []
    for path in staff_pages(services, world):
        response = coordinator.get(path)
        if response.mimetype != "text/html" or response.status_code != 200:
            continue
        checked += 1
        html = response.get_data(as_text=True)
        text = visible_text(html, skip_english=False)
        found += [
            f"{path}: {m.group(0)!r} in …{text[max(0, m.start() - 40) : m.end() + 40]}…"
            for m in RAW_PYTHON.finditer(text)
        ]
        for title in re.findall(r'<time datetime="[^"]+" title="([^"]+)"', html):
            assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", title), (path, title)
    assert checked >= 10
    assert found == [], "\n".join(found)
