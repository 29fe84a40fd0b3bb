"""Approving an alert with confidence: who it goes to (per language), how long it takes,
whom the validity would run out on, a repeated click that shows success, an empty or
partly doomed alert that needs an explicit "send anyway"; progress that counts expired
rows as expired; follow-ups only to those the alert reached."""

from __future__ import annotations

from dataclasses import replace
from zoneinfo import ZoneInfo

from flask.testing import FlaskClient
from sqlalchemy import select, update

from dispatch.alerts import draft_follow_up
from dispatch.services import Services
from rapidresponse import broadcast
from rapidresponse.capacity import capacity
from rapidresponse.composer import compose_all
from rapidresponse.models import (
    Alert,
    AlertApproval,
    AlertKind,
    AlertStatus,
    Area,
    Delivery,
    DeliveryStatus,
    Language,
    alert_areas,
    utcnow,
)
from tests.factories import add_many_subscribers
from tests.web.staff_helpers import post_form
from tests.web.test_access import World
from tests.web.test_board import cully_id


def a_draft(services: Services, subscribers: int = 0) -> int:
    """A fresh alert for the Cully incident's area, with ``subscribers`` more people."""
    cully = cully_id(services)
    if subscribers:
        add_many_subscribers(services, cully, subscribers)
    texts = compose_all(AlertKind.ALERT, areas=["Cully"], at=utcnow(), tz=ZoneInfo("UTC"))
    with services.database.session() as session:
        return broadcast.draft(session, kind=AlertKind.ALERT, texts=texts, area_ids=[cully]).id


def alert_page(client: FlaskClient, alert_id: int) -> str:
    return client.get(f"/board/alerts/{alert_id}").get_data(as_text=True)


def statuses(services: Services, alert_id: int) -> list[DeliveryStatus]:
    with services.database.session() as session:
        return list(session.scalars(select(Delivery.status).where(Delivery.alert_id == alert_id)))


def test_the_capacity_estimate() -> None:
    texts = {"en": "x" * 150, "es": "y" * 200}  # one segment, two segments
    plan = capacity({"en": 1200, "es": 600}, texts, 1.0, 30)
    assert plan.total_segments == 1200 + 2 * 600
    assert plan.seconds == 2400 and plan.minutes == 40
    assert plan.dropped == 1800 - (1800 * 1800 // 2400 + 1)  # three quarters reach in time
    assert capacity({"en": 100}, texts, 50.0, 30).dropped == 0
    assert capacity({"en": 100}, texts, None, 30).seconds == 0.0
    assert capacity({}, texts, 1.0, 30).dropped == 0


def test_the_draft_names_its_audience_per_language_and_the_send_time(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    services.settings = replace(services.settings, send_rate=1.0)
    draft = a_draft(services, subscribers=30)  # 1 in 3 Spanish; plus the world's three
    page = alert_page(dispatcher, draft)
    assert 'data-language="en"' in page and 'data-language="es"' in page
    assert "English</span>: 23 people" in page and "Spanish</span>: 10 people" in page
    assert "The send takes about 1 minute (segments a second: 1)." in page
    assert "Send to 33 people in Cully." in page
    assert (
        'data-confirm="Send to 33 people in Cully (23 English, 10 Spanish), about 1 minute?"'
        in page
    )
    assert "would not get it" not in page and 'name="send_anyway"' not in page


def test_a_send_longer_than_the_validity_says_how_many_it_would_miss_and_asks(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    services.settings = replace(services.settings, send_rate=0.1, alert_validity_minutes=1)
    draft = a_draft(services, subscribers=17)  # 20 people, 200 s at 0.1 a second
    page = alert_page(dispatcher, draft)
    assert "That is longer than the alert's validity (1 min): about 13 people" in page
    assert 'name="send_anyway"' in page
    post_form(dispatcher, f"/board/alerts/{draft}/approve", {}, page)
    assert statuses(services, draft) == []  # not approved without "send anyway"
    assert "tick “Send anyway”" in alert_page(dispatcher, draft)
    post_form(dispatcher, f"/board/alerts/{draft}/approve", {"send_anyway": "1"}, page)
    assert len(statuses(services, draft)) == 20


def test_an_alert_to_nobody_needs_an_explicit_send_anyway(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    with services.database.session() as session:
        session.execute(update(Alert).values(status=AlertStatus.CANCELLED))
    nowhere = a_draft(services)
    with services.database.session() as session:
        empty = Area(slug="empty", name="Empty")
        session.add(empty)
        session.flush()
        session.execute(update(alert_areas).values(area_id=empty.id))
    page = alert_page(dispatcher, nowhere)
    assert "Nobody would get this alert" in page and 'name="send_anyway"' in page
    post_form(dispatcher, f"/board/alerts/{nowhere}/approve", {}, page)
    with services.database.session() as session:
        assert session.get_one(Alert, nowhere).status is AlertStatus.DRAFT


def test_a_second_click_on_approve_shows_what_the_first_did(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    draft = a_draft(services)
    page = alert_page(dispatcher, draft)
    for _ in range(2):
        assert post_form(dispatcher, f"/board/alerts/{draft}/approve", {}, page).status_code == 303
    shown = alert_page(dispatcher, draft)
    assert "Approved. The alert is going out." in shown
    assert "no longer waiting for approval" not in shown
    with services.database.session() as session:
        approvals = session.scalars(
            select(AlertApproval).where(AlertApproval.alert_id == draft)
        ).all()
    assert len(approvals) == 1


def test_expired_rows_are_shown_as_expired_not_failed(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    with services.database.session() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.alert_id == world.alert_id)
            .values(status=DeliveryStatus.EXPIRED)
        )
        broadcast.complete_if_done(session, world.alert_id, utcnow())
        progress = broadcast.progress(session, world.alert_id)
    assert (progress.expired, progress.failed) == (3, 0)
    assert progress.as_event()["expired"] == 3
    page = alert_page(dispatcher, world.alert_id)
    assert '<span data-count="expired">3</span>' in page
    assert "3 people did not get it: the alert's validity ran out" in page
    assert "finished, not all sent" in page


def test_a_follow_up_goes_only_to_those_the_alert_reached(services: Services, world: World) -> None:
    with services.database.session() as session:
        rows = session.scalars(
            select(Delivery).where(Delivery.alert_id == world.alert_id).order_by(Delivery.id)
        ).all()
        assert len(rows) == 3
        rows[0].status = DeliveryStatus.DELIVERED
        rows[1].status = DeliveryStatus.EXPIRED
        rows[2].status, rows[2].unknown_outcomes = DeliveryStatus.FAILED, 1  # may have arrived
        reached = {rows[0].subscriber_id, rows[2].subscriber_id}
    all_clear = draft_follow_up(services, world.alert_id, AlertKind.ALL_CLEAR)
    with services.database.session() as session:
        row = session.get_one(Alert, all_clear)
        people = set(session.execute(broadcast.audience(row)).scalars())
        by_language = broadcast.audience_by_language(session, row)
    assert people == reached
    assert sum(by_language.values()) == 2 and set(by_language) <= {
        language.value for language in Language
    }


def test_the_follow_up_draft_says_how_many_of_the_alert_it_reaches(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    with services.database.session() as session:
        first = session.scalars(
            select(Delivery).where(Delivery.alert_id == world.alert_id).limit(1)
        ).one()
        first.status = DeliveryStatus.SENT
    update_id = draft_follow_up(services, world.alert_id, AlertKind.UPDATE, note="Agents left")
    page = alert_page(dispatcher, update_id)
    assert "It goes to the 1 person who got the alert, of its 3 recipients" in page
