"""Every staff page at 375 px (a small phone), in English and Spanish: nothing scrolls
sideways, whatever the page holds (the world of the Spanish-pages test: incidents in every
state, notes, comments, alerts, invitations)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page

from dispatch.alerts import draft_for_incident
from rapidresponse.models import StaffRole
from tests.browser.conftest import Live, sideways_overflow, sign_in
from tests.web.staff_helpers import add_account
from tests.web.test_staff_pages_in_spanish import full_world, staff_pages


@pytest.mark.sends_through_api  # the workers page the world's responder
@pytest.mark.parametrize("lang", ["en", "es"])
def test_no_staff_page_scrolls_sideways_on_a_phone(page: Page, live: Live, lang: str) -> None:
    world = full_world(live.services)
    draft_for_incident(live.services, world.incident_id)
    page.set_viewport_size({"width": 375, "height": 800})
    sign_in(page, live.services, add_account(live.services, StaffRole.COORDINATOR))
    page.goto(f"/board?lang={lang}")
    wide = []
    # Pages, not the fragments the pages re-read (those are drawn inside a page).
    paths = [p for p in staff_pages(live.services, world) if not p.endswith("/live")]
    assert len(paths) >= 10
    for path in paths:
        response = page.goto(path)
        html = response is not None and "text/html" in response.headers.get("content-type", "")
        if response is None or response.status != 200 or not html:
            continue
        overflow = sideways_overflow(page)
        if overflow > 0:
            culprits = page.evaluate(WIDEST)
            wide.append(f"{path}: {overflow}px ({culprits})")
    assert wide == [], "\n".join(wide)


# What sticks out past the right edge: the innermost elements that do.
WIDEST = """() => {
  const edge = document.documentElement.clientWidth;
  return [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > edge + 1)
    .filter((e) => ![...e.children].some((c) => c.getBoundingClientRect().right > edge + 1))
    .slice(0, 3).map((e) => e.tagName + "." + e.className).join(", ");
}"""
