"""A dispatcher shapes an alert draft in a real browser, in Spanish at phone width: adds
the area next door, writes a line of their own in each language and watches its cost
counted as it is typed; real workers then send the incident's own area before the area
next door, each subscriber in their language.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from dispatch.alerts import draft_for_incident
from rapidresponse.models import Language, StaffRole, Subscriber, Subscription
from tests.browser.conftest import Live, no_sideways_scroll, sign_in, wait_until_connected
from tests.browser.test_alert_confidence import SENDING_MS
from tests.browser.test_board import area_id
from tests.dispatch.test_alerts import confirmed_incident
from tests.factories import add_many_subscribers
from tests.web.staff_helpers import add_account

LINE_EN = "Avoid NE 42nd and Killingsworth"
LINE_ES = "Eviten la NE 42 y Killingsworth"


def numbers_in(live: Live, area: int) -> dict[str, Language]:
    with live.services.database.session() as session:
        rows = session.execute(
            select(Subscriber.phone_sealed, Subscriber.language)
            .join(Subscription, Subscription.subscriber_id == Subscriber.id)
            .where(Subscription.area_id == area)
        ).all()
    cipher = live.services.cipher
    return {cipher.decrypt(sealed, "subscriber.phone"): language for sealed, language in rows}


@pytest.mark.slow
@pytest.mark.sends_through_api
def test_a_draft_gets_the_area_next_door_and_a_line_per_language_and_goes_nearest_first(
    page: Page, live: Live
) -> None:
    services = live.services
    cully, concordia = area_id(live, "cully"), area_id(live, "concordia")
    add_many_subscribers(services, cully, 6)
    add_many_subscribers(services, concordia, 9, first=2_000_000)
    alert_id = draft_for_incident(services, confirmed_incident(services, cully))
    assert alert_id is not None
    page.set_viewport_size({"width": 375, "height": 900})
    sign_in(page, services, add_account(services, StaffRole.DISPATCHER))
    page.goto(f"/board/alerts/{alert_id}?lang=es")
    wait_until_connected(page)

    page.get_by_label("Concordia").check()
    page.locator("#line_es").press_sequentially(LINE_ES)
    # Counted as it is typed, before anything is saved.
    expect(page.locator("#line_es-cost")).to_contain_text(f"{len(LINE_ES)} de 80 caracteres")
    expect(page.locator("#line_es-cost")).to_contain_text("el mensaje entero")
    page.locator("#line_en").fill(LINE_EN)
    expect(page.locator("#line_en-cost")).to_contain_text(f"{len(LINE_EN)} de 80")
    with page.expect_navigation():
        page.get_by_role("button", name="Actualizar el borrador").click()
    expect(page.locator(".flashes")).to_contain_text("El borrador está actualizado")
    expect(page.locator('figure.preview[lang="es"] pre')).to_contain_text(LINE_ES)
    expect(page.locator('figure.preview[lang="en"] pre')).to_contain_text(LINE_EN)
    expect(page.locator("#line_es")).to_have_value(LINE_ES)
    no_sideways_scroll(page)

    asked: list[str] = []
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    with page.expect_navigation():
        page.locator("#approve-form button[type=submit]").click()
    assert asked and "15" in asked[0] and "Cully, Concordia" in asked[0]
    expect(page.locator("article.alert-detail")).to_have_attribute(
        "data-status", "complete", timeout=SENDING_MS
    )

    near, next_door = numbers_in(live, cully), numbers_in(live, concordia)
    order = [m.to for m in live.fake.messages]
    assert sorted(order) == sorted([*near, *next_door])
    assert set(order[: len(near)]) == set(near)  # all of Cully before anyone in Concordia
    for message in live.fake.messages:
        language = near.get(message.to) or next_door[message.to]
        mine, other = (LINE_ES, LINE_EN) if language is Language.ES else (LINE_EN, LINE_ES)
        assert mine in message.body and other not in message.body
