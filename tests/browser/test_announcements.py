"""An announcement from the browser: a coordinator writes it on a phone, in Spanish; the
person who said yes to announcements gets it through the real workers, answers 1, and
the page counts the answer — without listing who."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from dispatch.services import Services
from rapidresponse import broadcast
from rapidresponse.models import Alert, AlertKind, Delivery, StaffRole
from tests.browser.conftest import Live, no_sideways_scroll, sign_in
from tests.web.staff_helpers import add_account

DANA, LUIS = "+15035550181", "+15035550182"


def announcements_sent(services: Services) -> int:
    with services.database.session() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(Delivery)
                .join(Alert, Alert.id == Delivery.alert_id)
                .where(Alert.kind == AlertKind.ANNOUNCEMENT, broadcast.got_it())
            )
            or 0
        )


@pytest.mark.slow
@pytest.mark.sends_through_api
def test_a_coordinator_sends_an_announcement_and_sees_the_answer_counted(
    page: Page, live: Live, artifacts: Path
) -> None:
    services = live.services
    services.settings = replace(services.settings, quiet_hours=None)  # whatever the hour
    for number in (DANA, LUIS):
        live.text(number, "JOIN Cully")
        live.text(number, "YES")
    assert "NEWS STOP" in (live.text(DANA, "JOIN NEWS") or "")  # Luis: alerts only

    page.set_viewport_size({"width": 375, "height": 900})
    sign_in(page, services, add_account(services, StaffRole.COORDINATOR))
    page.goto("/announcements?lang=es")
    expect(page.locator("main")).to_contain_text("1 persona recibe avisos ahora.")
    no_sideways_scroll(page)
    page.fill("#text_en", "Know-your-rights training Saturday 10am at the library")
    page.fill("#text_es", "Taller de derechos el sabado a las 10 en la biblioteca")
    page.check("#asks_rsvp")
    with page.expect_navigation():
        page.get_by_role("button", name="Enviar el aviso").click()
    expect(page.locator(".flashes")).to_contain_text("Se está enviando a 1 persona.")

    live.wait_for("the announcement", lambda: any("training" in b for b in live.sent_to(DANA)))
    [sent] = [b for b in live.sent_to(DANA) if "training" in b]
    assert "Reply 1 for yes, 2 for no." in sent and "NEWS STOP" in sent
    assert not [b for b in live.sent_to(LUIS) if "training" in b]
    # The fake has the text as soon as the worker's request reaches it; the worker records
    # it sent a moment later, and only then is a "1" an answer rather than a report.
    live.wait_for("the announcement recorded as sent", lambda: announcements_sent(services) == 1)
    assert "counted as yes" in (live.text(DANA, "1") or "")

    page.reload()
    expect(page.locator("li.announcement .rsvp")).to_contain_text("1 dijo que sí")
    expect(page.locator("li.announcement .rsvp")).to_contain_text("0 dijeron que no")
    expect(page.locator("li.announcement")).not_to_contain_text(DANA[-4:])
    no_sideways_scroll(page)
    page.screenshot(path=artifacts / "announcement-es-375.png", full_page=True)
