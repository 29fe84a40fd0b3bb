"""Sightings to verified incidents, end to end: signed webhooks, real worker processes,
a local Twilio-compatible server, the real database and Redis.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import select

from dispatch.live import DEFAULT_CHANNEL
from dispatch.redis_conn import connect
from dispatch.services import Services
from rapidresponse import audit
from rapidresponse.models import (
    Alert,
    AlertStatus,
    AuditEvent,
    Dispatch,
    Incident,
    IncidentState,
    StaffRole,
)
from rapidresponse.reports import counts
from tests.dispatch.conftest import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
from tests.factories import add_on_shift_responder
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import Phone
from tests.web.staff_helpers import add_account, post_form, sign_in

pytestmark = [pytest.mark.slow, pytest.mark.sends_through_api]

REPORTERS = ("+15035550142", "+19715550177", "+15035550163")
ANA = "+15035550111"  # responder for Cully, paged first
BEN = "+15035550122"  # responder for Cully, paged when Ana does not answer
SIGHTINGS = (
    "ICE van and 4 agents in vests at NE 42nd and Killingsworth, Cully",
    "hay agentes de inmigracion en la esquina de 42 y Killingsworth en Cully",
    "Two unmarked trucks with agents at Killingsworth & 42nd Ave, Cully",
)


@dataclass
class Scene:
    app: Flask
    services: Services
    fake: FakeTwilio
    env: dict[str, str]
    events: list[dict[str, object]]
    worker_output: list[str]

    def text(self, number: str, body: str) -> str | None:
        return Phone(self.app.test_client(), number).text(body)

    def work(self) -> None:
        """One real `rapidresponse worker --burst` run (with its scheduler)."""
        done = subprocess.run(
            [sys.executable, "-m", "web.cli", "worker", "--burst"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        self.worker_output.append(done.stdout + done.stderr)

    def incident(self) -> Incident:
        """The incident the three reports made (a stranger's text may open another)."""
        with self.services.database.session() as session:
            return session.scalars(select(Incident).order_by(Incident.id)).first()  # type: ignore[return-value]

    def incidents(self) -> list[Incident]:
        with self.services.database.session() as session:
            return list(session.scalars(select(Incident).order_by(Incident.id)))

    def pages_to(self, number: str) -> list[str]:
        return [m.body for m in self.fake.messages if m.to == number]


def listen(redis_url: str, events: list[dict[str, object]]) -> Callable[[], None]:
    """Collect the live events (Socket.IO through Redis) published during the test.

    Returns the function that stops listening (and waits for the listener to finish).
    """
    client = connect(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(DEFAULT_CHANNEL)
    stopping = threading.Event()

    def run() -> None:
        while not stopping.is_set():
            message = pubsub.get_message(timeout=0.1)
            if message is not None:
                events.append(json.loads(message["data"]))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def stop() -> None:
        stopping.set()
        thread.join(5)
        pubsub.close()
        client.close()

    return stop


@pytest.fixture
def scene(
    twilio_services: Services, fake: FakeTwilio, cli_env: dict[str, str], redis_client: Redis
) -> Iterator[Scene]:
    twilio_services.settings = replace(
        twilio_services.settings, ack_timeout_seconds=2, verify_deadline_seconds=3600
    )
    add_on_shift_responder(twilio_services, "Ana", ANA, "cully")
    add_on_shift_responder(twilio_services, "Ben", BEN, "cully")
    from web import create_app

    app = create_app(services=twilio_services, test_config={"TESTING": True})
    env = {
        **cli_env,
        "SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM": FROM_NUMBER,
        "TWILIO_API_URL": fake.url,
        "DISPATCH_ACK_SECONDS": "2",
    }
    events: list[dict[str, object]] = []
    stop = listen(twilio_services.redis_url, events)
    yield Scene(app, twilio_services, fake, env, events, [])
    stop()


def three_reports(scene: Scene) -> Incident:
    for number, body in zip(REPORTERS, SIGHTINGS, strict=True):
        assert scene.text(number, body) is not None
    incident = scene.incident()
    with scene.services.database.session() as session:
        assert counts(session, incident.id) == (3, 3, 0)
    return incident


def event_names(scene: Scene) -> list[str]:
    time.sleep(0.3)  # let the listener drain
    return [str(event.get("event")) for event in scene.events]


def test_three_reports_a_page_go_and_confirm_make_a_confirmed_incident(scene: Scene) -> None:
    incident = three_reports(scene)
    scene.work()

    [page] = scene.pages_to(ANA)
    assert page.startswith(f"{incident.code}: possible sighting in Cully: ICE van and 4 agents")
    assert scene.pages_to(BEN) == []
    assert scene.incident().state is IncidentState.DISPATCHED

    assert scene.text(ANA, f"{incident.code} GO") is not None
    answer = scene.text(ANA, f"{incident.code} CONFIRM 3 vans, agents in vests")
    assert answer == f"Recorded for {incident.code}: CONFIRMED. Thank you."
    assert scene.incident().state is IncidentState.CONFIRMED
    assert "incident_confirmed" in event_names(scene)
    with scene.services.database.session() as session:
        actions = [e.action for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))]
        assert audit.verify(session) is None
    assert actions[-3:] == ["dispatch.going", "verdict.confirm", "incident.confirmed"]
    assert "incident.dispatched" in actions


def test_no_acknowledgement_pages_the_next_responder(scene: Scene) -> None:
    incident = three_reports(scene)
    scene.work()
    assert len(scene.pages_to(ANA)) == 1
    time.sleep(2.5)  # past DISPATCH_ACK_SECONDS
    scene.work()
    assert len(scene.pages_to(BEN)) == 1
    with scene.services.database.session() as session:
        rows = session.execute(
            select(Dispatch.responder_id, Dispatch.state).where(Dispatch.incident_id == incident.id)
        ).all()
        states = {responder: state for responder, state in rows}
    assert sorted(s.value for s in states.values()) == ["paged", "timed_out"]
    # Ben answers without the code: he has one open dispatch.
    assert scene.text(BEN, "voy") is not None
    assert scene.text(BEN, "CONFIRMO dos camionetas") == (  # Spanish words: Spanish answer
        f"Anotado para {incident.code}: CONFIRMADO. Gracias."
    )
    assert scene.incident().state is IncidentState.CONFIRMED


def test_a_false_verdict_makes_a_false_alarm_and_no_alert_event(scene: Scene) -> None:
    incident = three_reports(scene)
    scene.work()
    scene.text(ANA, f"{incident.code} GO")
    assert scene.text(ANA, f"FALSE {incident.code} it was a utility crew") is not None
    assert scene.incident().state is IncidentState.FALSE_ALARM
    names = event_names(scene)
    assert "incident_changed" in names and "incident_confirmed" not in names


def test_silence_until_the_deadline_leaves_it_unverified(scene: Scene) -> None:
    scene.services.settings = replace(scene.services.settings, verify_deadline_seconds=1)
    three_reports(scene)
    time.sleep(1.5)
    scene.work()
    assert scene.incident().state is IncidentState.UNVERIFIED
    assert "incident_confirmed" not in event_names(scene)


def test_nobody_on_shift_escalates_to_the_dispatchers(scene: Scene) -> None:
    scene.text(ANA, "OFF")
    scene.text(BEN, "OFF")
    three_reports(scene)
    scene.work()
    assert scene.fake.messages == []
    assert scene.incident().escalated_at is not None
    assert "incident_escalated" in event_names(scene)


def test_a_verdict_from_someone_not_dispatched_changes_nothing(scene: Scene) -> None:
    incident = three_reports(scene)
    scene.work()
    # Ben was not paged: his CONFIRM is not a verdict. A stranger's CONFIRM is a report.
    assert scene.text(BEN, f"{incident.code} CONFIRM") == (
        "We found no open dispatch for you. Include its code, for example: K7P2 GO"
    )
    scene.text("+15035550199", f"{incident.code} CONFIRM")
    assert scene.incident().state is IncidentState.DISPATCHED


def everything_in(redis: Redis) -> bytes:
    """Every key and every value (job payloads decompressed) in our Redis database."""
    blob = bytearray()
    for key in redis.scan_iter(count=10_000):
        blob += key + b"\n" + (redis.dump(key) or b"")
        if key.startswith(b"rq:job:"):
            for field, value in redis.hgetall(key).items():
                blob += field + b"=" + (zlib.decompress(value) if field == b"data" else value)
    return bytes(blob)


STRANGER = "+15035550177"


def test_numbers_report_text_notes_and_comments_stay_out_of_logs_jobs_and_redis(
    scene: Scene, redis_client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    incident = three_reports(scene)
    scene.work()
    scene.text(ANA, f"{incident.code} GO")
    scene.text(ANA, f"{incident.code} CONFIRM they took a neighbor from 4417 NE 42nd")
    # A dispatcher's comment, through the board, and a merge that re-seals everything.
    dispatcher = scene.app.test_client()
    sign_in(dispatcher, scene.services, add_account(scene.services, StaffRole.DISPATCHER))
    page = dispatcher.get(f"/board/incidents/{incident.id}").get_data(as_text=True)
    comment = {"comment": "the school on Prescott keeps the children inside"}
    post_form(dispatcher, f"/board/incidents/{incident.id}/comment", comment, page)
    assert scene.text(STRANGER, "agents knocking on doors, they took my neighbour")
    others = [i for i in scene.incidents() if i.id != incident.id]
    assert others, "the unplaced report opened an incident of its own"
    post_form(dispatcher, f"/board/incidents/{incident.id}/merge", {"other_id": others[0].id}, page)
    assert (
        dispatcher.get(f"/board/incidents/{incident.id}")
        .get_data(as_text=True)
        .count("school on Prescott")
        == 1
    )
    scene.work()
    # Seven-digit fragments, so a national or formatted form of a number is caught too.
    secrets = [n[-7:].encode() for n in (*REPORTERS, ANA, BEN, STRANGER)]
    secrets += [b"Killingsworth", b"agentes de inmigracion", b"unmarked trucks", b"took a neighbor"]
    secrets += [b"school on Prescott", b"knocking on doors"]
    stored = everything_in(redis_client)
    logs = ("\n".join(scene.worker_output) + caplog.text).encode()
    events = json.dumps(scene.events).encode()
    assert b"rq:job:" in stored and scene.events  # the scan did see jobs and events
    for secret in secrets:
        assert secret not in stored, secret
        assert secret not in logs, secret
        assert secret not in events, secret
    assert scene.incident().state is IncidentState.CONFIRMED


SUBSCRIBERS = {"+15035550181": "JOIN Cully", "+15035550182": "UNIRSE Cully"}


def subscribers_join(scene: Scene) -> None:
    for number, join in SUBSCRIBERS.items():
        scene.text(number, join)
        scene.text(number, "YES" if join.startswith("JOIN") else "SI")


def confirm(scene: Scene) -> Incident:
    incident = three_reports(scene)
    scene.work()
    scene.text(ANA, f"{incident.code} GO")
    scene.text(ANA, f"{incident.code} CONFIRM")
    return incident


def alerts_to(scene: Scene, number: str) -> list[str]:
    return [m.body for m in scene.fake.messages if m.to == number and m.body.startswith("ALERT")]


def test_with_auto_policy_a_confirmation_alerts_the_area_once_in_each_language(
    scene: Scene,
) -> None:
    scene.env["ALERT_POLICY"] = "auto"
    subscribers_join(scene)
    confirm(scene)
    scene.work()  # drafts, approves and sends in the same run

    [english] = alerts_to(scene, "+15035550181")
    [spanish] = alerts_to(scene, "+15035550182")
    assert english.startswith("ALERT") and "RIGHTS" in english
    assert spanish.startswith("ALERTA") and "DERECHOS" in spanish
    assert all(alerts_to(scene, number) == [] for number in (*REPORTERS, ANA, BEN))
    with scene.services.database.session() as session:
        alert = session.scalars(select(Alert)).one()
        assert (alert.status, alert.recipient_count) == (AlertStatus.COMPLETE, 2)
    names = event_names(scene)
    assert "alert_progress" in names and "alert_complete" in names
    # Nothing about the subscribers reached Redis, the worker logs or the live events.
    stored = everything_in(scene.services.redis)
    for number in SUBSCRIBERS:
        assert number[-7:].encode() not in stored
        assert number[-7:] not in "\n".join(scene.worker_output)
        assert number[-7:] not in json.dumps(scene.events)


def test_with_approve_policy_nothing_goes_out_until_a_dispatcher_approves(
    scene: Scene,
) -> None:
    subscribers_join(scene)
    confirm(scene)
    scene.work()

    assert alerts_to(scene, "+15035550181") == []
    with scene.services.database.session() as session:
        alert = session.scalars(select(Alert)).one()
        assert alert.status == AlertStatus.DRAFT
    approve = subprocess.run(
        [sys.executable, "-m", "web.cli", "alert", "approve", str(alert.id)],
        env=scene.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "2 recipients" in approve.stdout
    scene.work()
    assert len(alerts_to(scene, "+15035550181")) == 1
    assert len(alerts_to(scene, "+15035550182")) == 1
