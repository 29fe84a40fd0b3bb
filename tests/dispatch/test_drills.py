"""Drills: the same code paths as a raid, marked everywhere, reaching only participants.

Real database and Redis; texts through the signed SMS webhook (answers are TwiML); pages
and alert batches run in-process against the local fake Twilio. The audience guarantee
is a property over random subscriber sets; the end-to-end run on production settings
with real workers is in ``test_drills_e2e.py``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select, update

from dispatch.alerts import approve_alert, draft_for_incident, write_ledger
from dispatch.broadcast import send_batch
from dispatch.incidents import dispatch_incident, page_responder
from dispatch.queues import QueueName, queue
from dispatch.services import Services
from rapidresponse import broadcast, drills
from rapidresponse.areas import find_area
from rapidresponse.board import merge_candidates
from rapidresponse.commands import Keyword, parse
from rapidresponse.corrections import CorrectionRefused, merge, split
from rapidresponse.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Area,
    Dispatch,
    DispatchState,
    Drill,
    DrillParticipant,
    Incident,
    IncidentState,
    Language,
    Report,
    Responder,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    utcnow,
)
from tests.factories import add_on_shift_responder, add_subscriber
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import Phone

pytestmark = pytest.mark.sends_through_api

ANA, BEN, CARL = "+15035550111", "+15035550122", "+15035550133"  # Cully responders
PAT, QUINN, PUBLIC = "+15035550171", "+15035550172", "+15035550173"
SIGHTING = "ICE van and 4 agents in vests at NE 42nd and Killingsworth, Cully"


def area_id(services: Services, slug: str) -> int:
    with services.database.session() as session:
        area = find_area(session, slug)
        assert area is not None
        return area.id


def responder_id(services: Services, name: str) -> int:
    with services.database.session() as session:
        found = session.scalar(select(Responder.id).where(Responder.name == name))
        assert found is not None
        return found


def start_drill(services: Services, *names: str, slug: str = "cully") -> Drill:
    with services.database.session() as session:
        drill = drills.start(
            session,
            area_id=area_id(services, slug),
            scenario="Agents at the school gate; a parent texts it in.",
            responder_ids=[responder_id(services, name) for name in names],
            started_by_id=None,
            now=utcnow(),
        )
        session.flush()
        session.expunge(drill)
    return drill


@pytest.fixture
def crew(twilio_services: Services) -> Services:
    """Three on-shift Cully responders: Ana and Ben take part in drills, Carl does not."""
    for name, number in (("Ana", ANA), ("Ben", BEN), ("Carl", CARL)):
        add_on_shift_responder(twilio_services, name, number, "cully")
    return twilio_services


def subscribe(app: Flask, number: str, area: str = "Cully") -> Phone:
    phone = Phone(app.test_client(), number)
    phone.text(f"JOIN {area}")
    phone.text("YES")
    return phone


def incidents(services: Services) -> list[Incident]:
    with services.database.session() as session:
        found = list(session.scalars(select(Incident).order_by(Incident.id)))
        session.expunge_all()
    return found


# --- the words --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "keyword", "argument", "language"),
    [
        ("JOIN DRILL", Keyword.JOIN_DRILL, "", Language.EN),
        ("Unirse simulacro", Keyword.JOIN_DRILL, "", Language.ES),
        ("DRILL ICE van at Cully Rd", Keyword.DRILL, "ICE van at Cully Rd", Language.EN),
        ("simulacro: migra en Lents", Keyword.DRILL, "migra en Lents", Language.ES),
        ("DRILL", Keyword.DRILL, "", Language.EN),
        (
            "Drilling crew and ICE van on 42nd",
            Keyword.REPORT,
            "Drilling crew and ICE van on 42nd",
            None,
        ),
    ],
)
def test_the_drill_words(body: str, keyword: Keyword, argument: str, language: Language) -> None:
    command = parse(body)
    assert (command.keyword, command.argument, command.language) == (keyword, argument, language)


# --- by text ----------------------------------------------------------------------------


def test_without_a_drill_the_words_change_nothing_and_a_drill_report_is_a_real_one(
    crew: Services, sms_app: Flask
) -> None:
    pat = Phone(sms_app.test_client(), PAT)
    assert pat.text("JOIN DRILL") == (
        "DRILL: no drill is running now. To report something real, text what you see "
        "without the word DRILL."
    )
    with crew.database.session() as session:
        assert session.scalar(select(Subscriber.id)) is None  # nobody stored for asking
    # A sighting is never dropped for a word: with no drill running it is real.
    answer = pat.text(f"DRILL {SIGHTING}") or ""
    assert answer.startswith("Report ") and "DRILL" not in answer
    [incident] = incidents(crew)
    assert incident.drill_id is None


def test_joining_reporting_and_the_answers_say_drill(crew: Services, sms_app: Flask) -> None:
    drill = start_drill(crew, "Ana")
    pat, quinn = Phone(sms_app.test_client(), PAT), Phone(sms_app.test_client(), QUINN)
    joined = pat.text("JOIN DRILL") or ""
    assert joined.startswith(f"DRILL: you are in drill {drill.code} (Cully)")
    assert (quinn.text("UNIRSE SIMULACRO") or "").startswith(
        f"SIMULACRO: esta en el simulacro {drill.code}"
    )
    assert pat.text("JOIN DRILL") == joined  # twice: one participant row
    with crew.database.session() as session:
        rows = session.scalars(
            select(DrillParticipant).where(DrillParticipant.drill_id == drill.id)
        )
        assert sorted((r.responder_id is None) for r in rows) == [False, True, True]
        # Joining a drill is no subscription: no real alert will ever reach them for it.
        assert session.scalar(select(Subscription.id)) is None
    assert (pat.text("DRILL") or "").startswith(f"DRILL: drill {drill.code} is running in Cully")
    answer = quinn.text("SIMULACRO migra en la escuela") or ""
    assert answer.startswith("SIMULACRO: reporte de practica ")
    [incident] = incidents(crew)
    # No place named: the drill's own area, so it never waits for "where is it?".
    assert incident.drill_id == drill.id and incident.area_id == drill.area_id


def test_drill_and_real_reports_never_share_an_incident(crew: Services, sms_app: Flask) -> None:
    drill = start_drill(crew, "Ana")
    reporter = Phone(sms_app.test_client(), PAT)
    reporter.text(SIGHTING)
    reporter.text(f"DRILL {SIGHTING}")
    Phone(sms_app.test_client(), QUINN).text(SIGHTING)
    Phone(sms_app.test_client(), PUBLIC).text(f"DRILL {SIGHTING}")
    real, practised = incidents(crew)
    assert (real.drill_id, practised.drill_id) == (None, drill.id)
    with crew.database.session() as session:
        per_incident = session.execute(
            select(Report.incident_id, func.count()).group_by(Report.incident_id)
        ).all()
    # Same place, same minutes: without the drill they would all be one incident.
    assert dict(per_incident) == {real.id: 2, practised.id: 2}


def test_a_drill_never_floods_or_second_waves_a_real_incident(
    crew: Services, sms_app: Flask
) -> None:
    start_drill(crew, "Ana")
    for n in range(6):  # more than FLOOD_REPORTERS independent drill reporters
        Phone(sms_app.test_client(), f"+1503555{n:04d}").text(f"DRILL {SIGHTING}")
    [practised] = incidents(crew)
    assert not practised.possible_flood and practised.follows_id is None
    Phone(sms_app.test_client(), PAT).text(SIGHTING)
    real = incidents(crew)[-1]
    assert real.drill_id is None and not real.possible_flood and real.follows_id is None


def test_an_ended_or_old_drill_takes_no_reports(crew: Services, sms_app: Flask) -> None:
    drill = start_drill(crew, "Ana")
    with crew.database.session() as session:
        session.execute(
            update(Drill)
            .where(Drill.id == drill.id)
            .values(started_at=utcnow() - drills.LIFETIME - drills.GRACE - timedelta(minutes=1))
        )
    assert (Phone(sms_app.test_client(), PAT).text("JOIN DRILL") or "").startswith(
        "DRILL: no drill is running now."
    )
    Phone(sms_app.test_client(), PAT).text(f"DRILL {SIGHTING}")
    [incident] = incidents(crew)
    assert incident.drill_id is None


def test_a_drill_report_just_after_the_end_is_kept_with_the_drill_and_pages_nobody(
    crew: Services, sms_app: Flask
) -> None:
    """A participant typing late must not set off a real incident."""
    drill = start_drill(crew, "Ana")
    with crew.database.session() as session:
        drills.end(session, session.get_one(Drill, drill.id), crew.cipher, utcnow(), "system")
    answer = Phone(sms_app.test_client(), PAT).text(f"DRILL {SIGHTING}") or ""
    assert answer.startswith(f"DRILL: drill {drill.code} has ended.")
    assert "without the word DRILL" in answer
    [incident] = incidents(crew)
    assert incident.drill_id == drill.id and incident.state is IncidentState.CLOSED
    assert dispatch_incident(incident.id) == "closed"
    # Words without the drill's are real, as always.
    Phone(sms_app.test_client(), QUINN).text(SIGHTING)
    assert incidents(crew)[-1].drill_id is None


def test_ending_a_drill_closes_its_incidents_and_cancels_its_drafts(
    crew: Services, sms_app: Flask
) -> None:
    drill = start_drill(crew, "Ana")
    Phone(sms_app.test_client(), QUINN).text(f"DRILL {SIGHTING}")
    [incident] = incidents(crew)
    alert_id = confirmed_drill_alert(crew, incident.id)
    with crew.database.session() as session:
        drills.end(session, session.get_one(Drill, drill.id), crew.cipher, utcnow(), "staff:1")
    with crew.database.session() as session:
        assert session.get_one(Incident, incident.id).state is IncidentState.CLOSED
        assert session.get_one(Alert, alert_id).status is AlertStatus.CANCELLED


def test_corrections_never_cross_between_a_drill_and_the_real(
    crew: Services, sms_app: Flask
) -> None:
    drill = start_drill(crew, "Ana")
    Phone(sms_app.test_client(), PAT).text(SIGHTING)
    Phone(sms_app.test_client(), QUINN).text(f"DRILL {SIGHTING}")
    Phone(sms_app.test_client(), PUBLIC).text(f"DRILL agents at the school, {SIGHTING}")
    real, practised = incidents(crew)
    with crew.database.session() as session:
        assert [c.id for c in merge_candidates(session, real.id)] == []
        assert [c.id for c in merge_candidates(session, practised.id)] == []
        for kept, absorbed in ((real.id, practised.id), (practised.id, real.id)):
            with pytest.raises(CorrectionRefused, match="cannot be merged"):
                merge(session, crew.cipher, kept, absorbed, 1, 1)
        second = session.scalars(
            select(Report.code).where(Report.incident_id == practised.id).order_by(Report.id)
        ).all()[1]
    with crew.database.session() as session:
        split(session, crew.cipher, practised.id, second, 1)
    alone = incidents(crew)[-1]
    assert alone.drill_id == drill.id  # a drill's report stays in the drill


def test_a_responder_out_on_a_drill_is_paged_for_the_real_thing(
    crew: Services, sms_app: Flask
) -> None:
    start_drill(crew, "Ana", "Ben", "Carl")
    Phone(sms_app.test_client(), QUINN).text(f"DRILL {SIGHTING}")
    [practised] = incidents(crew)
    with crew.database.session() as session:
        for name in ("Ana", "Ben", "Carl"):
            session.add(
                Dispatch(
                    incident_id=practised.id,
                    responder_id=responder_id(crew, name),
                    state=DispatchState.GOING,
                )
            )
    Phone(sms_app.test_client(), PAT).text(SIGHTING)
    real = incidents(crew)[-1]
    assert real.drill_id is None
    assert dispatch_incident(real.id).startswith("paged")


# --- pages ------------------------------------------------------------------------------


def run_replies(services: Services) -> None:
    for job in queue(QueueName.REPLIES, services.redis).jobs:
        if job.func is page_responder:
            page_responder(*job.args)
        job.delete()


def test_a_drill_pages_only_its_responders_and_the_page_and_answers_say_drill(
    crew: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    drill = start_drill(crew, "Ana", "Ben")
    with crew.database.session() as session:
        session.execute(update(Responder).where(Responder.name == "Ben").values(on_shift=False))
    Phone(sms_app.test_client(), PAT).text(f"DRILL {SIGHTING}")
    [incident] = incidents(crew)
    crew.settings = replace(crew.settings, verify_quorum=3)
    dispatch_incident(incident.id)
    run_replies(crew)
    with crew.database.session() as session:
        paged = set(
            session.scalars(
                select(Responder.name).join(Dispatch, Dispatch.responder_id == Responder.id)
            )
        )
    # Ben is off shift but came to practise; Carl is on shift but not in the drill.
    assert paged == {"Ana", "Ben"}
    pages = {m.to: m.body for m in fake.messages}
    assert set(pages) == {ANA, BEN}
    assert all(body.startswith(f"DRILL: {incident.code}: ") for body in pages.values())
    ana = Phone(sms_app.test_client(), ANA)
    assert (ana.text(f"{incident.code} GO") or "").startswith("DRILL: ")
    assert (ana.text(f"{incident.code} CONFIRM") or "").startswith(
        f"DRILL: Recorded for {incident.code}: CONFIRMED."
    )
    assert drill.id == incidents(crew)[0].drill_id


def test_a_responder_out_on_a_real_incident_is_never_paged_for_a_drill(
    crew: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    start_drill(crew, "Ana")
    Phone(sms_app.test_client(), PAT).text(SIGHTING)
    [real] = incidents(crew)
    with crew.database.session() as session:
        session.add(
            Dispatch(
                incident_id=real.id,
                responder_id=responder_id(crew, "Ana"),
                state=DispatchState.GOING,
            )
        )
    Phone(sms_app.test_client(), QUINN).text(f"DRILL {SIGHTING}")
    practised = incidents(crew)[-1]
    assert dispatch_incident(practised.id) == "nobody to page"


# --- alerts -----------------------------------------------------------------------------


def confirmed_drill_alert(services: Services, incident_id: int) -> int:
    with services.database.session() as session:
        session.execute(
            update(Incident).where(Incident.id == incident_id).values(state=IncidentState.CONFIRMED)
        )
    alert_id = draft_for_incident(services, incident_id)
    assert alert_id is not None
    return alert_id


def test_a_drill_alert_reaches_participants_only_marked_in_their_language(
    crew: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    drill = start_drill(crew, "Ana")
    pat = subscribe(sms_app, PAT)  # a Cully subscriber who also joins the drill
    pat.text("JOIN DRILL")
    Phone(sms_app.test_client(), QUINN).text("UNIRSE SIMULACRO")  # no area at all
    subscribe(sms_app, PUBLIC)  # Cully, not in the drill
    Phone(sms_app.test_client(), QUINN).text(f"SIMULACRO {SIGHTING}")
    [incident] = incidents(crew)
    alert_id = confirmed_drill_alert(crew, incident.id)
    with crew.database.session() as session:
        alert = session.get_one(Alert, alert_id)
        assert alert.drill_id == drill.id
        texts = broadcast.texts_of(crew.cipher, alert)
    assert texts["en"].startswith("DRILL: ") and texts["es"].startswith("SIMULACRO: ")
    approve_alert(crew, alert_id)
    fake.reset()
    for job in queue(QueueName.ALERTS, crew.redis).jobs:
        send_batch(*job.args)
        job.delete()
    sent = {m.to: m.body for m in fake.messages}
    assert set(sent) == {PAT, QUINN}
    assert sent[PAT].startswith("DRILL: ") and sent[QUINN].startswith("SIMULACRO: ")


def test_a_ledger_naming_an_outsider_is_refused_and_nothing_is_written(
    crew: Services, sms_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a future change to the audience query let a public subscriber into a drill
    alert, approving it fails, in the transaction that wrote the ledger."""
    start_drill(crew, "Ana")
    subscribe(sms_app, PUBLIC)
    Phone(sms_app.test_client(), QUINN).text(f"DRILL {SIGHTING}")
    [incident] = incidents(crew)
    alert_id = confirmed_drill_alert(crew, incident.id)
    everyone = select(Subscriber.id, Subscriber.language)
    monkeypatch.setattr(broadcast, "_drill_audience", lambda _drill_id: everyone)
    with pytest.raises(broadcast.DrillLedgerBreach):
        write_ledger(crew, alert_id)
    with crew.database.session() as session:
        alert = session.get_one(Alert, alert_id)
        assert alert.status.value == "draft" and alert.recipient_count == 0


PEOPLE = st.lists(
    st.tuples(
        st.booleans(),  # joined the drill
        st.booleans(),  # subscribed to Cully
        st.sampled_from(list(SubscriberStatus)),
    ),
    max_size=12,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(people=PEOPLE, kind=st.sampled_from([AlertKind.ALERT, AlertKind.UPDATE]))
def test_a_drill_alerts_audience_is_never_anyone_outside_the_drill(
    twilio_services: Services, people: list[tuple[bool, bool, SubscriberStatus]], kind: AlertKind
) -> None:
    """Over random people (in the drill or not, subscribed to the drill's area or not, any
    status): a drill alert's audience, and a follow-up's, is exactly the drill's
    participants who can be texted; a real alert's is untouched by the drill."""
    services = twilio_services
    cully = area_id(services, "cully")
    with services.database.session() as session:
        for table in (DrillParticipant, Alert, Drill, Subscription, Subscriber):
            session.execute(delete(table))
        drill = Drill(code="D1L2", area_id=cully, scenario="practice", started_at=utcnow())
        session.add(drill)
        session.flush()
        drill_id = drill.id
    in_drill, in_cully = set(), set()
    for n, (joined, subscribed, status) in enumerate(people):
        person = add_subscriber(services, f"+1503556{n:04d}", status=status)
        with services.database.session() as session:
            if joined:
                session.add(DrillParticipant(drill_id=drill_id, subscriber_id=person))
            if subscribed:
                session.add(
                    Subscription(
                        subscriber_id=person, area_id=cully, status=SubscriptionStatus.CONFIRMED
                    )
                )
        reachable = status is SubscriberStatus.ACTIVE
        if joined and reachable:
            in_drill.add(person)
        if subscribed and reachable:
            in_cully.add(person)
    with services.database.session() as session:
        alert = Alert(kind=AlertKind.ALERT, texts={"en": "x"}, drill_id=drill_id)
        alert.areas = [session.get_one(Area, cully)]
        real = Alert(kind=AlertKind.ALERT, texts={"en": "x"})
        real.areas = list(alert.areas)
        session.add_all([alert, real])
        session.flush()
        checked = alert
        if kind is AlertKind.UPDATE:
            checked = Alert(kind=kind, texts={"en": "y"}, parent_id=alert.id, drill_id=drill_id)
            session.add(checked)
            session.flush()
        drill_audience = {row[0] for row in session.execute(broadcast.audience(checked))}
        real_audience = {row[0] for row in session.execute(broadcast.audience(real))}
    assert drill_audience == in_drill
    assert real_audience == in_cully


def test_a_drill_nobody_ended_is_ended_with_its_card_frozen_before_reports_are_purged(
    crew: Services, sms_app: Flask
) -> None:
    from dispatch.housekeeping import end_stale_drills_job

    drill = start_drill(crew, "Ana")
    Phone(sms_app.test_client(), PAT).text(f"DRILL {SIGHTING}")
    assert end_stale_drills_job() == 0  # still within its lifetime
    started = utcnow() - drills.LIFETIME - timedelta(minutes=5)
    with crew.database.session() as session:
        session.execute(update(Drill).where(Drill.id == drill.id).values(started_at=started))
        session.execute(update(Report).values(received_at=started + timedelta(minutes=1)))
    assert end_stale_drills_job() == 1
    assert end_stale_drills_job() == 0
    with crew.database.session() as session:
        ended = session.get_one(Drill, drill.id)
        assert ended.ended_at == started + drills.LIFETIME
        assert ended.card is not None and ended.card["reports"] == 1
        session.execute(delete(Report))  # purged: the card stays as it was
        assert drills.card_of(session, crew.cipher, ended)["reports"] == 1


def test_the_drill_word_is_counted_in_the_alerts_one_segment(crew: Services) -> None:
    """Composed for a drill, the mark is part of the budget: a long area list is
    shortened so that the marked text still fits one segment when the real one does."""
    from zoneinfo import ZoneInfo

    from rapidresponse.composer import compose_all
    from rapidresponse.sms import segment

    names = ["Powellhurst-Gilbert", "Hazelwood", "Mill Park", "Centennial", "Pleasant Valley"]
    kwargs = {"areas": names, "at": utcnow(), "tz": ZoneInfo("America/Los_Angeles")}
    real = compose_all(AlertKind.ALERT, **kwargs)  # type: ignore[arg-type]
    drill = compose_all(AlertKind.ALERT, drill=True, **kwargs)  # type: ignore[arg-type]
    for language, text in drill.items():
        assert text.startswith(("DRILL: ", "SIMULACRO: "))
        if segment(real[language]).segments == 1:
            assert segment(text).segments == 1, text
