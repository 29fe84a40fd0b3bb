"""The board in a real browser: a dispatcher signs in with a password and a TOTP code,
watches a report arrive and be confirmed without reloading, and approves the alert;
a responder's account is kept out; a forged CSRF token changes nothing.

Texts reach the hotline as Twilio sends them (signed POSTs to the live server, from the
test); pages and alerts leave through real worker processes to the local Twilio.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect
from sqlalchemy import select

from dispatch.alerts import draft_for_incident
from dispatch.live import LivePublisher
from rapidresponse import broadcast
from rapidresponse.areas import find_area
from rapidresponse.models import Alert, AlertStatus, Responder, StaffRole
from tests.browser.conftest import (
    TIMEOUT_MS,
    Live,
    no_sideways_scroll,
    sign_in,
    wait_until_connected,
)
from tests.dispatch.test_alerts import confirmed_incident
from tests.dispatch.test_verification_e2e import ANA, REPORTERS, SIGHTINGS
from tests.factories import add_many_subscribers, add_on_shift_responder
from tests.twilio_fake import RecordedRequest
from tests.web.staff_helpers import add_account

SUBSCRIBERS = 30
SENDING_MS = 30_000  # the whole broadcast, through the workers and the local Twilio


def area_id(live: Live, slug: str) -> int:
    with live.services.database.session() as session:
        area = find_area(session, slug)
        assert area is not None, slug
        return area.id


@pytest.mark.slow
@pytest.mark.sends_through_api
def test_a_dispatcher_sees_a_report_arrive_and_sends_the_alert(
    page: Page, live: Live, artifacts: Path
) -> None:
    services = live.services
    add_on_shift_responder(services, "Ana", ANA, "cully")
    add_many_subscribers(services, area_id(live, "cully"), SUBSCRIBERS)
    dispatcher = add_account(services, StaffRole.DISPATCHER)

    sign_in(page, services, dispatcher)
    expect(page).to_have_url(re.compile(r"/board$"))
    wait_until_connected(page)
    expect(page.locator("li.incident-card")).to_have_count(0)
    page.evaluate("window.__marker = 1")  # gone if the page reloads

    # A neighbour texts the hotline; the board shows it without a reload.
    assert live.text(REPORTERS[0], SIGHTINGS[0]) is not None
    card = page.locator("li.incident-card")
    expect(card).to_have_count(1, timeout=TIMEOUT_MS)
    incident_id = card.get_attribute("data-incident-id")
    code = card.locator("a.code").inner_text().strip()
    card = page.locator(f'li.incident-card[data-incident-id="{incident_id}"]')
    expect(card).to_contain_text("Cully")
    assert page.evaluate("window.__marker") == 1
    page.screenshot(path=artifacts / "board-report-arrived.png", full_page=True)

    # The workers page Ana; she goes, and confirms. The card follows, still without reload.
    live.wait_for("the page to Ana", lambda: bool(live.sent_to(ANA)))
    [paged] = live.sent_to(ANA)
    assert paged.startswith(f"{code}: possible sighting in Cully")
    assert live.text(ANA, f"{code} GO") is not None
    assert live.text(ANA, f"{code} CONFIRM 3 vans, agents in vests") == (
        f"Recorded for {code}: CONFIRMED. Thank you."
    )
    expect(card).to_have_attribute("data-state", "confirmed", timeout=TIMEOUT_MS)

    # ALERT_POLICY=approve: a worker drafts the alert, and it waits for the dispatcher.
    alert_card = page.locator("li.alert-card")
    expect(alert_card).to_have_count(1, timeout=TIMEOUT_MS)
    expect(alert_card).to_have_attribute("data-status", "draft")
    expect(alert_card).to_contain_text(code)
    assert page.evaluate("window.__marker") == 1
    page.screenshot(path=artifacts / "board-confirmed.png", full_page=True)
    assert [m for m in live.fake.messages if m.body.startswith("ALERT")] == []

    alert_id = alert_card.get_attribute("data-alert-id")
    alert_card.locator("a").click()
    page.wait_for_url(f"**/board/alerts/{alert_id}")
    wait_until_connected(page)
    expect(page.locator(".audience")).to_contain_text(f"Goes to {SUBSCRIBERS} subscribers")

    # Approving reloads the page, which reads the record once when its socket connects.
    # Twilio holds the sends until then, so nothing can finish between that read and the
    # socket joining: after it, the page may not re-read, and what moves is moved by
    # events alone.
    sends_may_leave = threading.Event()

    def hold_the_sends(request: RecordedRequest) -> None:
        sends_may_leave.wait(SENDING_MS / 1000)

    live.fake.policy = hold_the_sends
    with page.expect_navigation():
        page.once("dialog", lambda dialog: dialog.accept())  # "Send to 30 people in Cully?"
        page.get_by_role("button", name="Approve and send").click()
    wait_until_connected(page)
    expect(page.locator("#live")).to_have_attribute("data-synced", re.compile(r"^\d+$"))
    page.route("**/live", lambda route: route.abort())
    sends_may_leave.set()

    # The workers' progress events move the bar and its numbers.
    percent = page.locator(".progress .percent")
    expect(percent).to_have_attribute("data-percent", "100", timeout=SENDING_MS)
    expect(percent).to_have_text("100%")
    counts = page.locator(".progress .counts")
    expect(counts).to_contain_text(f"Recipients: {SUBSCRIBERS} · sent: {SUBSCRIBERS}")
    expect(counts).to_contain_text("waiting: 0")

    # The record agrees.
    page.unroute("**/live")
    page.reload()
    expect(page.locator("article.alert-detail")).to_have_attribute("data-status", "complete")
    expect(counts).to_contain_text("waiting: 0")
    page.screenshot(path=artifacts / "alert-sent.png", full_page=True)

    with services.database.session() as session:
        sent = session.get_one(Alert, int(alert_id or 0))
        assert sent.status == AlertStatus.COMPLETE
        texts = set(broadcast.texts_of(services.cipher, sent).values())
    alerts = [m for m in live.fake.messages if m.to != ANA]
    assert len(alerts) == len({m.to for m in alerts}) == SUBSCRIBERS  # one each
    assert {m.body for m in alerts} == texts  # English and Spanish, as approved


# The engine.io polling handshake, then a Socket.IO connect, then the server's answer:
# "40..." if it accepted the connection, "44..." if it refused it.
SOCKET_CONNECT = """async () => {
  const base = "/socket.io/?EIO=4&transport=polling";
  const opened = await (await fetch(base)).text();
  const sid = JSON.parse(opened.slice(1)).sid;
  await fetch(base + "&sid=" + sid, { method: "POST", body: "40" });
  return await (await fetch(base + "&sid=" + sid)).text();
}"""


def test_a_responder_cannot_open_dispatcher_pages(page: Page, live: Live) -> None:
    services = live.services
    add_on_shift_responder(services, "Ana", ANA, "cully")
    with services.database.session() as session:
        responder_id = session.scalars(select(Responder.id)).one()
    responder = add_account(services, StaffRole.RESPONDER, responder_id=responder_id)
    incident_id = confirmed_incident(services, area_id(live, "cully"))

    sign_in(page, services, responder)
    expect(page).to_have_url(re.compile(r"/my$"))
    expect(page.locator("h1")).to_have_text("My dispatches")

    for path in (
        "/board",
        "/board/live",
        f"/board/incidents/{incident_id}",
        "/people",
        "/audit",
    ):
        response = page.goto(path)
        assert response is not None and response.status == 403, path
        assert page.url.endswith(path)  # not sent elsewhere: refused
        expect(page.locator("body")).to_contain_text("Forbidden")
        expect(page.locator("#live, .incident-card, .alert-card, table")).to_have_count(0)

    # Nor does the socket take a responder's session.
    page.goto("/my")
    answer = page.evaluate(SOCKET_CONNECT)
    assert answer.startswith("44"), answer


def forge_and_submit(page: Page, form: str) -> None:
    """Change the form's CSRF token (a token of the right shape, wrongly signed) and
    submit it, in one step: the board's live refresh may redraw the form meanwhile."""
    page.evaluate(
        """(selector) => {
          const form = document.querySelector(selector);
          const input = form.querySelector('input[name="csrf_token"]');
          const tail = input.value.endsWith("AAAA") ? "BBBB" : "AAAA";
          input.value = input.value.slice(0, -4) + tail;
          form.requestSubmit();
        }""",
        form,
    )


def test_a_forged_csrf_token_is_refused(page: Page, live: Live) -> None:
    services = live.services
    add_many_subscribers(services, area_id(live, "cully"), 3)
    incident_id = confirmed_incident(services, area_id(live, "cully"))
    alert_id = draft_for_incident(services, incident_id)
    assert alert_id is not None
    dispatcher = add_account(services, StaffRole.DISPATCHER)
    sign_in(page, services, dispatcher)

    page.goto(f"/board/alerts/{alert_id}")
    wait_until_connected(page)
    detail = page.locator("article.alert-detail")
    expect(detail).to_have_attribute("data-status", "draft")
    expect(page.locator("#approve-form")).to_have_count(1)

    approve_url = f"{live.url}/board/alerts/{alert_id}/approve"
    page.once("dialog", lambda dialog: dialog.accept())  # "Send to 3 people in Cully?"
    with page.expect_response(approve_url) as posted:
        forge_and_submit(page, "#approve-form")
    page.wait_for_url(approve_url)
    assert posted.value.status == 400
    expect(page.locator("body")).to_contain_text("Bad Request")

    with services.database.session() as session:
        assert session.get_one(Alert, alert_id).status == AlertStatus.DRAFT
    page.goto(f"/board/alerts/{alert_id}")
    expect(detail).to_have_attribute("data-status", "draft")
    expect(page.locator(".approvals")).to_have_text("Approvals: 0 of 1")

    # Signing out with a forged token does not sign out either.
    with page.expect_response(f"{live.url}/logout") as posted:
        forge_and_submit(page, 'form[action="/logout"]')
    page.wait_for_url(f"{live.url}/logout")
    assert posted.value.status == 400
    expect(page.locator("body")).to_contain_text("Bad Request")
    response = page.goto("/board")
    assert response is not None and response.status == 200
    expect(page).to_have_url(re.compile(r"/board$"))
    expect(page.locator(".who")).to_contain_text(dispatcher.email)
    assert live.fake.requests == []


# Cut the connection as a network drop does (the transport closes; the client itself
# reconnects), with a fixed delay long enough for the test to act while it is down.
DROP_CONNECTION = """() => {
  const manager = window.rrBoard.socket.io;
  manager.reconnectionDelay(3000).reconnectionDelayMax(3000).randomizationFactor(0);
  manager.engine.close();
}"""


def test_after_a_dropped_connection_the_board_resyncs_from_the_server(
    page: Page, live: Live
) -> None:
    services = live.services
    dispatcher = add_account(services, StaffRole.DISPATCHER)
    sign_in(page, services, dispatcher)
    wait_until_connected(page)
    board = page.locator("#live")
    expect(board.locator("li.incident-card")).to_have_count(0)
    # The re-read on connect has come back (on a loaded machine it can land after the drop).
    expect(board).to_have_attribute("data-synced", re.compile(r"^[0-9]+$"))
    page.evaluate("window.__marker = 1")  # gone if the page reloads

    page.evaluate(DROP_CONNECTION)
    expect(page.locator("#connection")).to_have_attribute("data-state", "disconnected")
    synced_before = board.get_attribute("data-synced")

    # A report arrives while the board is cut off: its event reaches nobody.
    assert live.text(REPORTERS[0], SIGHTINGS[0]) is not None
    assert page.evaluate("window.rrBoard.socket.connected") is False
    assert board.get_attribute("data-synced") == synced_before
    expect(board.locator("li.incident-card")).to_have_count(0)

    # The client reconnects by itself, and the page reads the record again; a re-read
    # nobody asked for does not count as the dispatcher's activity (the idle timeout).
    with page.expect_request("**/board/live", timeout=TIMEOUT_MS) as reread:
        wait_until_connected(page)
    assert reread.value.headers.get("x-board-refresh") == "background"
    expect(board.locator("li.incident-card")).to_have_count(1)
    expect(board.locator("li.incident-card")).to_contain_text("Cully")
    assert page.evaluate("window.__marker") == 1


@pytest.mark.parametrize(("lang", "busy_label"), [("en", "Busy, retrying"), ("es", "Ocupado")])
def test_a_busy_server_is_waited_out_and_the_board_catches_up(
    page: Page, live: Live, lang: str, busy_label: str
) -> None:
    """Re-reads the server cannot take now (503, Retry-After) are retried after a pause,
    the board saying so meanwhile; then it shows what it missed, without a reload."""
    services = live.services
    sign_in(page, services, add_account(services, StaffRole.DISPATCHER))
    page.goto(f"/board?lang={lang}")
    wait_until_connected(page)
    board = page.locator("#live")
    expect(board).to_have_attribute("data-synced", re.compile(r"^[0-9]+$"))
    page.evaluate("window.__marker = 1")
    refused = []

    def busy(route: Route) -> None:
        refused.append(route.request.url)
        route.fulfill(status=503, headers={"Retry-After": "1"}, body="busy")

    page.route("**/board/live", busy)
    assert live.text(REPORTERS[0], SIGHTINGS[0]) is not None
    connection = page.locator("#connection")
    expect(connection).to_have_attribute("data-state", "busy")
    expect(connection).to_contain_text(busy_label)
    expect(board.locator("li.incident-card")).to_have_count(0)
    page.unroute("**/board/live")
    expect(board.locator("li.incident-card")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(connection).to_have_attribute("data-state", "connected")
    assert refused and page.evaluate("window.__marker") == 1


@pytest.mark.parametrize("width", [1280, 390])
def test_the_map_outlines_load_as_an_image_the_page_allows(
    page: Page, live: Live, artifacts: Path, width: int
) -> None:
    """The outlines come as an image under the areas' revision (kept by the browser);
    the CSP lets it in, and it is drawn under the live map, on a phone too."""
    page.set_viewport_size({"width": width, "height": 900})
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security" in message.text else None
        ),
    )
    sign_in(page, live.services, add_account(live.services, StaffRole.DISPATCHER))
    with page.expect_response(lambda r: "/board/map/areas.svg" in r.url) as outlines:
        page.goto("/board")
    response = outlines.value
    assert response.status == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert "immutable" in response.headers["cache-control"]
    wait_until_connected(page)
    expect(page.locator("#live")).to_have_attribute("data-synced", re.compile(r"^[0-9]+$"))
    expect(page.locator("image.map-areas")).to_be_visible()
    # Both sizes in one turn of the page's own script: a re-read may replace the map.
    drawn, frame = page.evaluate(
        """() => ["image.map-areas", "svg.board-map-svg"].map(
            (selector) => document.querySelector(selector).getBoundingClientRect().width)"""
    )
    assert drawn > 0.8 * frame > 0
    assert refused == []
    page.screenshot(path=artifacts / f"board-map-{width}.png", full_page=True)


@pytest.mark.parametrize(
    ("lang", "width", "connected"), [("en", 1280, "Live"), ("es", 375, "En vivo")]
)
def test_a_hint_that_changes_nothing_shown_costs_a_304_and_the_next_change_is_drawn(
    page: Page, live: Live, lang: str, width: int, connected: str
) -> None:
    """The board's re-read names the fragment it shows (its ETag): a hint that changed
    nothing it shows is answered 304 and the page stays as it is; a report then arriving
    is read whole and drawn, without a reload."""
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(page, live.services, add_account(live.services, StaffRole.DISPATCHER))
    page.goto(f"/board?lang={lang}")
    wait_until_connected(page)
    board = page.locator("#live")
    expect(board).to_have_attribute("data-synced", re.compile(r"^[0-9]+$"))
    expect(page.locator("#connection")).to_contain_text(connected)
    page.evaluate("window.__marker = 1")
    before = board.inner_html()

    with page.expect_response(
        lambda r: r.url.endswith("/board/live") and r.status == 304, timeout=TIMEOUT_MS
    ) as unchanged:
        LivePublisher(live.services.redis_url).emit("incident_updated", {"incident_id": 999})
    asked = unchanged.value.request.headers
    assert asked.get("if-none-match") == unchanged.value.headers["etag"]
    assert asked.get("x-board-refresh") == "background"
    expect(board).to_have_attribute("data-synced", re.compile(r"^[0-9]+$"))
    assert board.inner_html() == before

    assert live.text(REPORTERS[0], SIGHTINGS[0]) is not None
    expect(board.locator("li.incident-card")).to_have_count(1, timeout=TIMEOUT_MS)
    expect(board.locator("li.incident-card")).to_contain_text("Cully")
    no_sideways_scroll(page)
    assert page.evaluate("window.__marker") == 1
