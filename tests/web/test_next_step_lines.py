"""Each incident says in one line what it waits for, in the deployment's time zone.

The deployment here is in Kolkata (UTC+5:30, so no hour of UTC can pass for it) with a
seven-minute GO timeout: every line of the board's "what happens next" is rendered on
the incident page and the board, in English and Spanish, with its times in local time
and the exact UTC time only on hover.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask.testing import FlaskClient

from dispatch.services import Services
from rapidresponse.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Dispatch,
    DispatchState,
    Incident,
    IncidentState,
    utcnow,
)
from tests.web.test_access import World

ZONE = ZoneInfo("Asia/Kolkata")
ACK = timedelta(minutes=7)
CODES = itertools.count(10)


def moment() -> datetime:
    """Whole minutes, a little in the past: what the page shows is exact to the minute.
    Taken when each test runs, with the lines it expects: taken at import, a suite that
    ran past local midnight expected yesterday's "today"."""
    return utcnow().replace(second=0, microsecond=0) - timedelta(minutes=3)


@pytest.fixture
def environ(environ: dict[str, str]) -> dict[str, str]:
    return {**environ, "TIMEZONE": "Asia/Kolkata", "DISPATCH_ACK_SECONDS": "420"}


def local(at: datetime) -> str:
    """How a staff page writes a time here: the clock today, with the date otherwise."""
    shown = at.astimezone(ZONE)
    today = datetime.now(UTC).astimezone(ZONE).date()
    return shown.strftime("%H:%M" if shown.date() == today else "%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Case:
    build: Callable[[Services, World], int]  # the incident's id
    english: str
    spanish: str
    times: tuple[datetime, ...]  # each shown, in local time, with its UTC on hover


def incident(services: Services, world: World, state: IncidentState, **values: object) -> int:
    with services.database.session() as session:
        area_id = session.get_one(Incident, world.incident_id).area_id
        values = {"area_id": area_id, **values}
        found = Incident(code=f"N{next(CODES)}X", state=state, **values)
        session.add(found)
        session.flush()
        return found.id


def paged(services: Services, world: World, state: DispatchState, at: datetime) -> int:
    incident_id = incident(services, world, IncidentState.DISPATCHED, opened_at=at)
    with services.database.session() as session:
        session.add(
            Dispatch(
                incident_id=incident_id, responder_id=world.responder_id, state=state, paged_at=at
            )
        )
    return incident_id


def confirmed_with(
    services: Services, world: World, at: datetime, *alerts: tuple[AlertKind, AlertStatus]
) -> int:
    incident_id = incident(services, world, IncidentState.CONFIRMED, state_changed_at=at)
    with services.database.session() as session:
        for kind, status in alerts:
            approved_at = None if status is AlertStatus.DRAFT else at
            session.add(
                Alert(kind=kind, status=status, incident_id=incident_id, approved_at=approved_at)
            )
    return incident_id


SENT = (AlertKind.ALERT, AlertStatus.COMPLETE)


def cases() -> dict[str, Case]:
    """Every step's case, its times and lines from this moment."""
    T = moment()  # the moment every line of the table is about
    return {
        "place": Case(
            lambda s, w: incident(s, w, IncidentState.REPORTED, area_id=None),
            "No place yet: place it so that responders can be paged.",
            "Todavía sin lugar: ubíquelo para poder avisar a los respondedores.",
            (),
        ),
        "finding": Case(
            lambda s, w: incident(s, w, IncidentState.REPORTED),
            "Finding a responder to page.",
            "Buscando a quién avisar.",
            (),
        ),
        "nobody": Case(
            lambda s, w: incident(s, w, IncidentState.REPORTED, escalated_at=T),
            "Nobody could be paged: page more responders or call someone.",
            "No se pudo avisar a nadie: avise a más respondedores o llame a alguien.",
            (),
        ),
        "waiting_go": Case(
            lambda s, w: paged(s, w, DispatchState.PAGED, T),
            f"Waiting for Rosa to answer GO; the next responder is paged at {local(T + ACK)}.",
            f"Esperando a que Rosa responda GO; a las {local(T + ACK)} se avisa al siguiente "
            "respondedor.",
            (T + ACK,),
        ),
        "on_the_way": Case(
            lambda s, w: paged(s, w, DispatchState.GOING, T),
            f"Rosa is on the way; unverified at {local(T + timedelta(minutes=45))} without a "
            "verdict.",
            f"Rosa va en camino; queda sin verificar a las {local(T + timedelta(minutes=45))} "
            "si no hay veredicto.",
            (T + timedelta(minutes=45),),
        ),
        "compose": Case(
            lambda s, w: confirmed_with(s, w, T),
            "Confirmed: compose the alert.",
            "Confirmado: redacte la alerta.",
            (),
        ),
        "approval": Case(
            lambda s, w: confirmed_with(s, w, T, (AlertKind.ALERT, AlertStatus.DRAFT)),
            "Confirmed: an alert is waiting for approval.",
            "Confirmado: una alerta espera aprobación.",
            (),
        ),
        "sending": Case(
            lambda s, w: confirmed_with(s, w, T, (AlertKind.ALERT, AlertStatus.APPROVED)),
            f"The alert is going out (approved at {local(T)}).",
            f"La alerta se está enviando (aprobada a las {local(T)}).",
            (T,),
        ),
        "sent": Case(
            lambda s, w: confirmed_with(s, w, T, SENT),
            f"Alert sent at {local(T)}. Send the all-clear when the agents have left; it closes "
            f"itself at {local(T + timedelta(hours=24))}.",
            f"Alerta enviada a las {local(T)}. Envíe el fin de alerta cuando los agentes se hayan "
            f"ido; se cierra sola a las {local(T + timedelta(hours=24))}.",
            (T, T + timedelta(hours=24)),
        ),
        "all_clear": Case(
            lambda s, w: confirmed_with(s, w, T, SENT, (AlertKind.ALL_CLEAR, AlertStatus.COMPLETE)),
            f"All-clear sent at {local(T)}; it closes itself at {local(T + timedelta(hours=24))}.",
            f"Fin de alerta enviado a las {local(T)}; se cierra solo a las "
            f"{local(T + timedelta(hours=24))}.",
            (T, T + timedelta(hours=24)),
        ),
        "closes": Case(
            lambda s, w: incident(s, w, IncidentState.FALSE_ALARM, state_changed_at=T),
            f"Decided; it closes itself at {local(T + timedelta(hours=24))}.",
            f"Decidido; se cierra solo a las {local(T + timedelta(hours=24))}.",
            (T + timedelta(hours=24),),
        ),
        "closed": Case(
            lambda s, w: incident(s, w, IncidentState.CLOSED, closed_at=T),
            f"Closed; the text of its reports is erased at {local(T + timedelta(days=30))}.",
            f"Cerrado; el texto de sus reportes se borra el {local(T + timedelta(days=30))}.",
            (T + timedelta(days=30),),
        ),
    }


STEPS = sorted(cases())


def next_line(html: str) -> tuple[str, str]:
    """The "what happens next" paragraph: its text, and its markup."""
    found = re.search(r'<p class="next-step next-([a-z_]+)">(.*?)</p>', html, re.S)
    assert found is not None, "no next-step line"
    return " ".join(re.sub(r"<[^>]+>", "", found.group(2)).split()), found.group(2)


@pytest.mark.parametrize("step", STEPS)
def test_each_incident_says_what_happens_next_in_local_time(
    step: str, dispatcher: FlaskClient, services: Services, world: World
) -> None:
    case = cases()[step]
    incident_id = case.build(services, world)
    page = dispatcher.get(f"/board/incidents/{incident_id}?lang=en").get_data(as_text=True)
    assert f'class="next-step next-{step}"' in page
    english, markup = next_line(page)
    assert english == case.english
    for at in case.times:
        exact = at.strftime("%Y-%m-%d %H:%M UTC")
        assert f'title="{exact}"' in markup  # UTC on hover only
        assert exact not in english and at.strftime("%H:%M") not in english
    spanish_page = dispatcher.get(f"/board/incidents/{incident_id}?lang=es")
    assert next_line(spanish_page.get_data(as_text=True))[0] == case.spanish


def test_the_board_shows_the_same_lines_as_the_incident_pages(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    now = cases()
    for step in ("waiting_go", "sent"):
        now[step].build(services, world)
    board = dispatcher.get("/board?lang=en").get_data(as_text=True)
    for step in ("waiting_go", "sent"):
        text = " ".join(re.sub(r"<[^>]+>", "", board).split())
        assert now[step].english in text


@pytest.mark.parametrize("state", list(IncidentState))
def test_page_more_responders_is_offered_on_every_open_placed_incident(
    state: IncidentState, dispatcher: FlaskClient, services: Services, world: World
) -> None:
    at = moment()
    closed_at = at if state is IncidentState.CLOSED else None
    placed = incident(services, world, state, state_changed_at=at, closed_at=closed_at)
    unplaced = incident(services, world, state, area_id=None, closed_at=closed_at)
    offered = {
        incident_id: 'id="page-form"' in dispatcher.get(f"/board/incidents/{incident_id}").text
        for incident_id in (placed, unplaced)
    }
    assert offered == {placed: state is not IncidentState.CLOSED, unplaced: False}
