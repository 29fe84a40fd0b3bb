"""Approving and following up an alert in a real browser, with real workers sending:
the draft names its audience per language and the send time; a double click ends on the
success state; an update written in English and Spanish reaches each subscriber in their
own language; rows the validity ran out on show as expired, and the all-clear after that
goes only to those who got the alert.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select, update

from dispatch.alerts import draft_for_incident, write_ledger
from dispatch.broadcast import enqueue_batches, job_timeout
from rapidresponse.models import (
    Alert,
    AlertStatus,
    Delivery,
    DeliveryStatus,
    Language,
    StaffRole,
    Subscriber,
    utcnow,
)
from tests.browser.conftest import Live, no_sideways_scroll, sign_in, wait_until_connected
from tests.browser.test_board import area_id
from tests.dispatch.test_alerts import confirmed_incident
from tests.factories import add_many_subscribers
from tests.web.staff_helpers import add_account

SENDING_MS = 30_000
PEOPLE = 6  # every third reads Spanish: 4 English, 2 Spanish


def numbers_by_language(live: Live) -> dict[Language, set[str]]:
    found: dict[Language, set[str]] = {Language.EN: set(), Language.ES: set()}
    with live.services.database.session() as session:
        for subscriber in session.scalars(select(Subscriber)):
            number = live.services.cipher.decrypt(subscriber.phone_sealed, "subscriber.phone")
            found[subscriber.language].add(number)
    return found


def received(live: Live, starting: str) -> dict[str, str]:
    return {m.to: m.body for m in live.fake.messages if m.body.startswith(starting)}


@pytest.mark.slow
@pytest.mark.sends_through_api
def test_a_double_click_sends_once_and_an_update_speaks_each_language(
    page: Page, live: Live
) -> None:
    services = live.services
    services.settings = replace(services.settings, send_rate=1.0)
    add_many_subscribers(services, area_id(live, "cully"), PEOPLE)
    alert_id = draft_for_incident(services, confirmed_incident(services, area_id(live, "cully")))
    assert alert_id is not None
    sign_in(page, services, add_account(services, StaffRole.DISPATCHER))
    page.goto(f"/board/alerts/{alert_id}")
    wait_until_connected(page)
    expect(page.locator('li[data-language="en"]')).to_contain_text("4 people")
    expect(page.locator('li[data-language="es"]')).to_contain_text("2 people")
    expect(page.locator(".send-time")).to_contain_text("The send takes about 1 minute")

    asked: list[str] = []
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    with page.expect_navigation():
        page.locator("#approve-form button[type=submit]").dblclick()
    expect(page.locator(".flashes")).to_contain_text("Approved. The alert is going out.")
    expect(page.locator(".flashes")).not_to_contain_text("no longer waiting")
    assert asked and asked[0].startswith("Send to 6 people in Cully (4 English, 2 Spanish)")
    expect(page.locator("article.alert-detail")).to_have_attribute(
        "data-status", "complete", timeout=SENDING_MS
    )
    assert len(received(live, "ALERT")) == PEOPLE  # once each ("ALERTA" too)
    assert len(live.fake.messages) == PEOPLE

    page.select_option("#kind", "update")
    page.fill("#note_en", "Agents moving north on 82nd")
    page.fill("#note_es", "Los agentes van al norte por la 82")
    with page.expect_navigation():
        page.get_by_role("button", name="Compose follow-up").click()
    expect(page.locator("article.alert-detail")).to_have_attribute("data-status", "draft")
    with page.expect_navigation():
        page.locator("#approve-form button[type=submit]").click()
    expect(page.locator("article.alert-detail")).to_have_attribute(
        "data-status", "complete", timeout=SENDING_MS
    )
    people = numbers_by_language(live)
    english, spanish = received(live, "UPDATE"), received(live, "NOVEDAD")
    assert set(english) == people[Language.EN] and set(spanish) == people[Language.ES]
    assert all("north on 82nd" in body for body in english.values())
    assert all("van al norte" in body and "north" not in body for body in spanish.values())


@pytest.mark.slow
@pytest.mark.sends_through_api
@pytest.mark.parametrize("lang", ["en", "es"])
def test_expired_rows_show_as_expired_and_the_all_clear_goes_only_to_who_got_it(
    page: Page, live: Live, lang: str
) -> None:
    services = live.services
    services.settings = replace(services.settings, send_rate=0.01, alert_validity_minutes=1)
    add_many_subscribers(services, area_id(live, "cully"), PEOPLE)
    alert_id = draft_for_incident(services, confirmed_incident(services, area_id(live, "cully")))
    assert alert_id is not None
    sign_in(page, services, add_account(services, StaffRole.DISPATCHER))
    page.goto(f"/board/alerts/{alert_id}?lang={lang}")
    wait_until_connected(page)
    # 6 one-segment texts at 0.01 a second: 600 s, ten times the validity.
    expect(page.locator(".drop-warning")).to_contain_text("5")
    expect(page.locator('input[name="send_anyway"]')).to_have_count(1)

    # Two were handed over before the validity ran out; the workers drop the rest.
    write_ledger(services, alert_id)
    with services.database.session() as session:
        got_it = session.scalars(
            select(Delivery.id).where(Delivery.alert_id == alert_id).limit(2)
        ).all()
        session.execute(
            update(Delivery).where(Delivery.id.in_(got_it)).values(status=DeliveryStatus.SENT)
        )
        session.execute(
            update(Alert)
            .where(Alert.id == alert_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    enqueue_batches(services.redis, alert_id, [0], job_timeout(services))
    page.goto(f"/board/alerts/{alert_id}")
    expect(page.locator("article.alert-detail")).to_have_attribute(
        "data-status", "complete", timeout=SENDING_MS
    )
    expect(page.locator('.progress [data-count="expired"]')).to_have_text("4")
    expect(page.locator(".expired-warning")).to_contain_text("4")
    expect(page.locator(".alert-status-short")).to_have_count(1)

    page.select_option("#kind", "all_clear")
    with page.expect_navigation():
        page.locator("#follow-up-form button[type=submit]").click()
    expect(page.locator(".follow-up-reach")).to_contain_text(re.compile(r"\b2\b.*\b6\b"))
    page.on("dialog", lambda dialog: dialog.accept())
    page.check('input[name="send_anyway"]')  # at this rate even two outlast the validity
    with page.expect_navigation():
        page.locator("#approve-form button[type=submit]").click()
    expect(page.locator("article.alert-detail")).to_have_attribute(
        "data-status", "complete", timeout=SENDING_MS
    )
    with services.database.session() as session:
        all_clear = session.scalars(select(Alert).where(Alert.parent_id == alert_id)).one()
        assert all_clear.status is AlertStatus.COMPLETE and all_clear.recipient_count == 2
        reached = set(
            session.scalars(select(Delivery.subscriber_id).where(Delivery.id.in_(got_it))).all()
        )
        told = set(
            session.scalars(
                select(Delivery.subscriber_id).where(Delivery.alert_id == all_clear.id)
            ).all()
        )
    assert told == reached


def test_a_coordinator_rewords_the_spanish_alert_and_sees_its_cost_change(
    page: Page, live: Live
) -> None:
    page.set_viewport_size({"width": 375, "height": 900})
    sign_in(page, live.services, add_account(live.services, StaffRole.COORDINATOR))
    page.goto("/wording?lang=es")
    cost = page.locator('li[data-kind="alert"][data-language="es"] .segments')
    expect(cost).to_have_text("1 segmento")
    form = page.locator("#es-alert\\.alert")
    form.locator("textarea").fill(
        "ALERTA URGENTE DE LA RED: agentes migratorios confirmados por un respondedor en "
        "{areas} a las {time}, quedese adentro y avise a sus vecinos"
    )
    with page.expect_navigation():
        form.get_by_role("button", name="Ver el costo").click()
    expect(cost).to_have_text("2 segmentos")
    expect(page.locator('li[data-kind="alert"][data-language="es"] .flag')).to_contain_text(
        "más largo que su presupuesto"
    )
    form = page.locator("#es-alert\\.alert")
    with page.expect_navigation():
        form.get_by_role("button", name="Guardar").click()
    expect(page.locator(".flashes")).to_contain_text("Guardado")
    expect(cost).to_have_text("2 segmentos")
    no_sideways_scroll(page)


def test_what_a_dispatcher_is_typing_survives_the_page_re_reading_itself(
    page: Page, live: Live
) -> None:
    """The fragment is re-read on every hint (a report elsewhere, a progress count): a
    half-written follow-up keeps its kind, its words and the caret."""
    from tests.dispatch.test_verification_e2e import REPORTERS, SIGHTINGS

    services = live.services
    add_many_subscribers(services, area_id(live, "cully"), 3)
    alert_id = draft_for_incident(services, confirmed_incident(services, area_id(live, "cully")))
    assert alert_id is not None
    write_ledger(services, alert_id)
    sign_in(page, services, add_account(services, StaffRole.DISPATCHER))
    page.goto(f"/board/alerts/{alert_id}")
    wait_until_connected(page)
    live_part = page.locator("#live")
    expect(live_part).to_have_attribute("data-synced", re.compile(r"^\d+$"))
    synced = live_part.get_attribute("data-synced")
    page.select_option("#kind", "update")
    page.fill("#note_en", "Agents moving north")
    page.focus("#note_es")
    page.keyboard.type("Los agentes van")
    assert live.text(REPORTERS[0], SIGHTINGS[0]) is not None  # a hint for every board
    expect(live_part).not_to_have_attribute("data-synced", synced or "")
    expect(page.locator("#kind")).to_have_value("update")
    expect(page.locator("#note_en")).to_have_value("Agents moving north")
    expect(page.locator("#note_es")).to_have_value("Los agentes van")
    expect(page.locator("#note_es")).to_be_focused()
    page.keyboard.type(" al norte")
    expect(page.locator("#note_es")).to_have_value("Los agentes van al norte")
