"""The incident's record in a real browser: a responder's note reaches an open board without
a reload, a second wave after the all-clear shows as a new linked incident and is paged,
and a dispatcher merges and reopens incidents from the board -- in English and Spanish,
on a desktop and at phone width, without sideways scrolling.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from dispatch.alerts import approve_alert, draft_follow_up, draft_for_incident
from rapidresponse.models import AlertKind, Incident, IncidentState, StaffRole
from tests.browser.conftest import (
    TIMEOUT_MS,
    Live,
    no_sideways_scroll,
    sign_in,
    wait_until_connected,
)
from tests.dispatch.test_verification_e2e import ANA, REPORTERS, SIGHTINGS
from tests.factories import add_on_shift_responder
from tests.web.staff_helpers import add_account

NOTE = "agentes en la 82 y Stark, dos camionetas"
SECOND_WAVE = "ICE is back in Cully, two vans on 42nd"
UNPLACED = "agents knocking on doors right now, they took my neighbour"


def incidents(live: Live) -> list[Incident]:
    with live.services.database.session() as session:
        return list(session.scalars(select(Incident).order_by(Incident.id)))


@pytest.mark.slow
@pytest.mark.sends_through_api
def test_a_note_and_a_second_wave_reach_the_open_board(
    page: Page, live: Live, artifacts: Path
) -> None:
    services = live.services
    add_on_shift_responder(services, "Ana", ANA, "cully")
    sign_in(page, services, add_account(services, StaffRole.DISPATCHER))
    assert live.text(REPORTERS[0], SIGHTINGS[0]) is not None
    [first] = incidents(live)
    page.goto(f"/board/incidents/{first.id}")
    wait_until_connected(page)
    page.evaluate("window.__marker = 1")  # gone if the page reloads

    live.wait_for("the page to Ana", lambda: bool(live.sent_to(ANA)))
    assert live.text(ANA, f"{first.code} GO") is not None
    expect(page.locator(".next-step")).to_contain_text("Ana is on the way", timeout=TIMEOUT_MS)
    assert live.text(ANA, f"{first.code} CONFIRM {NOTE}") is not None
    note = page.locator("li.note-responder")
    expect(note).to_contain_text(NOTE, timeout=TIMEOUT_MS)
    expect(note).to_contain_text("Ana")
    assert page.evaluate("window.__marker") == 1

    # The alert goes out, then the all-clear; then the agents come back.
    live.wait_for("the draft", lambda: draft_for_incident(services, first.id) is not None)
    alert_id = draft_for_incident(services, first.id)
    assert alert_id is not None
    approve_alert(services, alert_id)
    approve_alert(services, draft_follow_up(services, alert_id, AlertKind.ALL_CLEAR))
    pages_before = len(live.sent_to(ANA))
    page.goto("/board")
    wait_until_connected(page)
    page.evaluate("window.__marker = 2")
    assert live.text(REPORTERS[1], SECOND_WAVE) is not None
    cards = page.locator("li.incident-card")
    expect(cards).to_have_count(2, timeout=TIMEOUT_MS)
    second = page.locator("li.incident-card").first  # newest first
    expect(second).to_contain_text(f"Second wave: new reports after {first.code}")
    live.wait_for("a page for the second wave", lambda: len(live.sent_to(ANA)) > pages_before)
    expect(second).to_contain_text("Waiting for Ana to answer GO", timeout=TIMEOUT_MS)
    assert page.evaluate("window.__marker") == 2
    page.screenshot(path=artifacts / "board-second-wave.png", full_page=True)
    _old, new = incidents(live)
    assert new.follows_id == first.id and new.state is IncidentState.DISPATCHED


CORRECTIONS = [
    ("en", 1280, "Merge into this one", "Close incident", "Reopen incident", "Merged into"),
    ("es", 375, "Unir a este", "Cerrar incidente", "Reabrir incidente", "Unido a"),
]


@pytest.mark.parametrize(("lang", "width", "merge", "close", "reopen", "merged"), CORRECTIONS)
def test_a_dispatcher_merges_and_reopens_from_the_board(
    page: Page,
    live: Live,
    artifacts: Path,
    lang: str,
    width: int,
    merge: str,
    close: str,
    reopen: str,
    merged: str,
) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    services = live.services
    assert live.text(REPORTERS[0], SIGHTINGS[0]) is not None
    assert live.text(REPORTERS[1], UNPLACED) is not None
    kept, absorbed = incidents(live)
    sign_in(page, services, add_account(services, StaffRole.DISPATCHER))
    page.goto(f"/board?lang={lang}")
    wait_until_connected(page)
    no_sideways_scroll(page)

    page.goto(f"/board/incidents/{kept.id}")
    wait_until_connected(page)
    no_sideways_scroll(page)
    page.select_option("#other_id", str(absorbed.id))
    with page.expect_navigation():
        page.get_by_role("button", name=merge).click()
    expect(page.locator("li.report")).to_have_count(2)
    expect(page.locator("blockquote.report-text").nth(1)).to_contain_text(UNPLACED)
    no_sideways_scroll(page)
    page.screenshot(path=artifacts / f"incident-merged-{lang}-{width}.png", full_page=True)

    page.goto(f"/board/incidents/{absorbed.id}")
    expect(page.locator("p.merged")).to_contain_text(merged)
    expect(page.locator("p.merged a")).to_have_text(kept.code)
    page.get_by_role("link", name=kept.code).click()
    page.wait_for_url(f"**/board/incidents/{kept.id}")

    with page.expect_navigation():
        page.get_by_role("button", name=close).click()
    expect(page.locator("article.incident-detail")).to_have_attribute("data-state", "closed")
    with page.expect_navigation():
        page.get_by_role("button", name=reopen).click()
    expect(page.locator("article.incident-detail")).to_have_attribute(
        "data-state", re.compile("reported|dispatched")
    )
    no_sideways_scroll(page)
    # The absorbed incident's code, typed into the board's search, leads here too.
    page.goto("/board")
    page.fill("#find-code", absorbed.code.lower())
    with page.expect_navigation():
        page.locator("#find-form button").click()
    expect(page).to_have_url(re.compile(rf"/board/incidents/{kept.id}$"))
