"""A drill in a real browser: a coordinator starts it on a phone, in Spanish; a
participant's DRILL text appears marked on the board; the drill alert is approved there
and reaches the participant (not the public subscriber next door) through the real
workers; the coordinator ends the drill and the report card shows, in both languages."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from rapidresponse.models import Alert, Incident, StaffRole
from tests.browser.conftest import Live, no_sideways_scroll, sign_in
from tests.factories import add_on_shift_responder
from tests.web.staff_helpers import add_account

PAT, PUBLIC, ANA = "+15035550171", "+15035550173", "+15035550111"
SIGHTING = "ICE van and 4 agents at the school gate, NE 42nd and Killingsworth"


def newest(live: Live, model: type[Incident] | type[Alert]) -> int | None:
    with live.services.database.session() as session:
        return session.scalar(select(model.id).order_by(model.id.desc()).limit(1))


@pytest.mark.slow
@pytest.mark.sends_through_api
def test_a_coordinator_runs_a_drill_from_start_to_report_card(
    page: Page, live: Live, artifacts: Path
) -> None:
    services = live.services
    add_on_shift_responder(services, "Ana", ANA, "cully")
    for number in (PAT, PUBLIC):
        live.text(number, "JOIN Cully")
        live.text(number, "YES")

    page.set_viewport_size({"width": 375, "height": 900})
    sign_in(page, services, add_account(services, StaffRole.COORDINATOR))
    page.goto("/drills?lang=es")
    no_sideways_scroll(page)
    page.select_option("#area_id", label="Cully")
    page.fill("#scenario", "Agentes en la puerta de la escuela a la salida")
    page.get_by_label("Ana").check()
    with page.expect_navigation():
        page.get_by_role("button", name="Empezar el simulacro").click()
    expect(page.locator(".flashes")).to_contain_text("El simulacro empezó")
    expect(page.locator("h1 .drill-mark")).to_have_text("SIMULACRO")
    no_sideways_scroll(page)

    assert (live.text(PAT, "JOIN DRILL") or "").startswith("DRILL: you are in drill")
    assert (live.text(PAT, f"DRILL {SIGHTING}") or "").startswith("DRILL: practice report")
    page.goto("/board")
    expect(page.locator("#running-drill")).to_contain_text("está en curso en Cully")
    card = page.locator("li.incident-card.drill")
    expect(card.locator(".drill-mark")).to_have_text("SIMULACRO")
    no_sideways_scroll(page)

    live.wait_for("Ana paged", lambda: bool(live.sent_to(ANA)))
    [paged] = live.sent_to(ANA)
    assert paged.startswith("DRILL: ")
    code = paged.split(": ")[1]
    assert (live.text(ANA, f"{code} GO") or "").startswith("DRILL: ")
    assert (live.text(ANA, f"{code} CONFIRM") or "").startswith("DRILL: ")
    live.wait_for("the drill alert drafted", lambda: newest(live, Alert) is not None)

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"/board/alerts/{newest(live, Alert)}?lang=en")
    expect(page.locator("h1 .drill-mark")).to_have_text("DRILL")
    expect(page.locator("p.audience")).to_contain_text("Goes to 1 subscriber.")
    page.on("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.locator("#approve-form button[type=submit]").click()
    expect(page.locator("article.alert-detail")).to_have_attribute(
        "data-status", "complete", timeout=30_000
    )
    [alerted] = live.sent_to(PAT)
    assert alerted.startswith("DRILL: ")
    assert live.sent_to(PUBLIC) == []  # same area, not in the drill: nothing

    page.goto("/drills")
    page.locator("li.drill a").first.click()
    with page.expect_navigation():
        page.get_by_role("button", name="End the drill").click()
    expect(page.locator(".flashes")).to_contain_text("The drill has ended")
    steps = page.locator("table.card-steps")
    for step in ("dispatch", "go", "verdict", "approval", "last_delivery"):
        expect(steps.locator(f'tr[data-step="{step}"] td').nth(1)).not_to_have_text("—")
    expect(page.locator("table.card-responders")).to_contain_text("Ana")
    expect(page.locator("table.card-subscribers")).to_contain_text("•••-0171")
    page.screenshot(path=artifacts / "drill-card-en.png", full_page=True)

    page.set_viewport_size({"width": 375, "height": 900})
    page.goto(page.url.split("?")[0] + "?lang=es")
    expect(page.locator("#card-title")).to_have_text("Ficha de resultados")
    expect(page.locator("#drill-end-form")).to_have_count(0)  # ended: nothing to click
    no_sideways_scroll(page)
    page.screenshot(path=artifacts / "drill-card-es-375.png", full_page=True)
