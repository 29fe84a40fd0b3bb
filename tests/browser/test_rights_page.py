"""The public know-your-rights page, on a phone, in English and Spanish: every topic the
hotline answers, the trainings, and the way to report from it."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Live, no_sideways_scroll

PHONE = {"width": 375, "height": 740}


@pytest.mark.parametrize(
    ("lang", "heading", "topics", "report", "form_heading"),
    [
        (
            "en",
            "Know your rights",
            ("At home:", "In a car:", "At work:", "On the street:"),
            "Report what you see",
            "Report",
        ),
        (
            "es",
            "Conozca sus derechos",
            ("En casa:", "En el carro:", "En el trabajo:", "En la calle:"),
            "Reporte lo que ve",
            "Reporte",
        ),
    ],
)
def test_someone_reads_their_rights_on_a_phone_and_goes_on_to_report(
    page: Page,
    live: Live,
    lang: str,
    heading: str,
    topics: tuple[str, ...],
    report: str,
    form_heading: str,
) -> None:
    page.set_viewport_size(PHONE)
    page.goto(f"/report/thanks?code=K7P3&lang={lang}")
    link = {"en": "All your rights, and our next trainings", "es": "Todos sus derechos"}[lang]
    page.get_by_role("link", name=link).click()
    expect(page.locator("h1")).to_have_text(heading)
    items = page.locator("ul.rights li")
    expect(items).to_have_count(len(topics))
    for n, topic in enumerate(topics):
        expect(items.nth(n)).to_contain_text(topic)
    expect(page.locator(".trainings")).not_to_be_empty()
    no_sideways_scroll(page)
    page.get_by_role("link", name=report).click()
    expect(page.locator("h1")).to_contain_text(form_heading)
    assert f"lang={lang}" in page.url
