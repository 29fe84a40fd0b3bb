"""A board re-reading what it shows already is answered 304 before Flask.

200 boards and a hint a second were 200 requests a second through Flask's routing and
session check (~2 ms of web CPU each), most of them for a broadcast's progress, whose
counts the socket brings anyway. A board now sends the ETag of the fragment it shows,
which leaves the counts out; a current tag is answered 304 without the app.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask, request_started
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select, update

from dispatch.live import LivePublisher
from dispatch.services import Services
from rapidresponse.models import Delivery, DeliveryStatus
from tests.web.test_access import World
from tests.web.test_board import cully_id, open_incident
from web import board as board_module
from web.shared_render import RenderGate, SharedRender, shape_tag

BACKGROUND = {"X-Board-Refresh": "background"}


@pytest.fixture(autouse=True)
def fresh_renders(monkeypatch: pytest.MonkeyPatch, app: Flask) -> None:
    """A render cache of this test's own (the module's is shared by every app)."""
    shared = SharedRender(RenderGate())
    monkeypatch.setattr(board_module, "shared_live", shared)
    monkeypatch.setattr(_middleware(app), "shared", shared)


def _middleware(app: Flask) -> object:
    webhooks = app.wsgi_app
    return webhooks.app  # type: ignore[attr-defined]


@pytest.fixture
def flask_requests(app: Flask) -> Iterator[list[str]]:
    """The paths of the requests that reached Flask."""
    seen: list[str] = []

    def record(sender: Flask, **_extra: object) -> None:
        from flask import request

        seen.append(request.path)

    request_started.connect(record, app)
    yield seen
    request_started.disconnect(record, app)


def tag_of(client: FlaskClient, **headers: str) -> str:
    response = client.get("/board/live", headers={**BACKGROUND, **headers})
    assert response.status_code == 200
    return str(response.headers["ETag"])


def hint(services: Services, event: str, data: dict[str, int]) -> None:
    LivePublisher(services.redis_url).emit(event, data)


def test_a_reread_of_the_fragment_shown_is_answered_304_without_flask(
    dispatcher: FlaskClient, flask_requests: list[str]
) -> None:
    tag = tag_of(dispatcher)
    assert flask_requests == ["/board/live"]
    again = dispatcher.get("/board/live", headers={**BACKGROUND, "If-None-Match": tag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == tag
    assert again.headers["Cache-Control"] == "no-store"
    assert again.headers["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" in again.headers
    assert flask_requests == ["/board/live"]  # the 304 never reached the app


def test_a_broadcasts_progress_alone_keeps_the_tag(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    tag = tag_of(dispatcher)
    with services.database.session() as session:
        first = session.scalars(
            select(Delivery.id).where(Delivery.alert_id == world.alert_id).limit(1)
        ).one()
        session.execute(
            update(Delivery).where(Delivery.id == first).values(status=DeliveryStatus.SENT)
        )
    hint(services, "alert_progress", {"alert_id": world.alert_id})
    again = dispatcher.get("/board/live", headers={**BACKGROUND, "If-None-Match": tag})
    assert again.status_code == 304  # the socket's event brought the count
    whole = dispatcher.get("/board/live", headers=BACKGROUND).get_data(as_text=True)
    assert '<span data-count="sent">1</span>' in whole  # and the record has it
    assert shape_tag(whole) == tag.strip('"')


def test_anything_else_that_changes_makes_a_new_fragment(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    tag = tag_of(dispatcher)
    open_incident(services, cully_id(services), code="Q4W8")
    hint(services, "incident_opened", {"incident_id": 2})
    again = dispatcher.get("/board/live", headers={**BACKGROUND, "If-None-Match": tag})
    assert again.status_code == 200
    assert "Q4W8" in again.get_data(as_text=True)
    assert again.headers["ETag"] != tag


def test_a_language_has_its_own_tag(dispatcher: FlaskClient, world: World) -> None:
    english = tag_of(dispatcher)
    spanish = dispatcher.get(
        "/board/live?lang=es", headers={**BACKGROUND, "If-None-Match": english}
    )
    assert spanish.status_code == 200 and spanish.headers["ETag"] != english


def test_a_persons_touch_or_a_stale_tag_goes_to_the_app(
    dispatcher: FlaskClient, world: World, flask_requests: list[str]
) -> None:
    tag = tag_of(dispatcher)
    touched = dispatcher.get("/board/live", headers={"If-None-Match": tag})
    assert touched.status_code == 200  # through Flask: it keeps the session alive
    for sent in ('"0123456789abcdef0123456789abcdef"', "*", f'{tag}, {tag[:-2]}x"', "garbage"):
        answered = dispatcher.get("/board/live", headers={**BACKGROUND, "If-None-Match": sent})
        assert answered.status_code == 200, sent
    assert len(flask_requests) == 6


def test_a_304_needs_a_staff_session_cookie_this_app_signed(
    app: Flask, dispatcher: FlaskClient, world: World
) -> None:
    tag = tag_of(dispatcher)
    conditional = {**BACKGROUND, "If-None-Match": tag}
    stranger = app.test_client()
    assert stranger.get("/board/live", headers=conditional).status_code != 304
    other_key = URLSafeTimedSerializer("not this app's key", salt="cookie-session")
    forged = other_key.dumps({"staff_token": "x" * 43})
    stranger.set_cookie("session", forged)
    assert stranger.get("/board/live", headers=conditional).status_code != 304
    ours = app.session_interface.get_signing_serializer(app)  # type: ignore[attr-defined]
    stranger.set_cookie("session", ours.dumps({"lang": "es"}))  # a visitor, not staff
    assert stranger.get("/board/live", headers=conditional).status_code != 304
    stranger.set_cookie("session", "%%%not-a-cookie")
    assert stranger.get("/board/live", headers=conditional).status_code != 304


def test_without_redis_every_reread_goes_to_the_app(
    dispatcher: FlaskClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = tag_of(dispatcher)
    from web import live_reread

    monkeypatch.setattr(live_reread, "live_version", lambda _redis: None)
    again = dispatcher.get("/board/live", headers={**BACKGROUND, "If-None-Match": tag})
    assert again.status_code == 304  # told by the app, which rendered afresh to know


def test_the_tag_leaves_out_the_counts_and_nothing_else() -> None:
    bar = (
        '<div class="progress" data-alert-id="4"><progress max="{total}" value="{done}" '
        'aria-label="Broadcast progress"></progress><span class="percent" '
        'data-percent="{pc}">{pc}%</span><span class="counts">sent: '
        '<span data-count="sent">{done}</span></span></div>{extra}'
    )
    one = shape_tag(bar.format(total=30, done=3, pc=10, extra=""))
    assert one == shape_tag(bar.format(total=30, done=30, pc=100, extra=""))
    assert one != shape_tag(bar.format(total=30, done=30, pc=100, extra="<li>K7P2</li>"))
    assert one != shape_tag(bar.format(total=30, done=3, pc=10, extra="").replace("4", "5"))


def test_a_board_that_heard_a_hint_takes_any_render_made_since(
    dispatcher: FlaskClient, services: Services, world: World
) -> None:
    """Reports arriving many a second publish many hints; each board asks for a render
    at least as new as the hint it heard, so one render serves them all."""
    renders: list[int] = []
    real = board_module._board_context

    def counted() -> dict[str, object]:
        renders.append(1)
        return real()

    tag = tag_of(dispatcher)
    heard_by_the_board = 0
    for n in range(3):
        hint(services, "incident_updated", {"incident_id": n})
        heard_by_the_board = int(services.redis.get("rr:live-version") or 0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(board_module, "_board_context", counted)
        conditional = {
            **BACKGROUND,
            "If-None-Match": tag,
            "X-Live-Version": str(heard_by_the_board),
        }
        assert dispatcher.get("/board/live", headers=conditional).status_code == 304
        assert len(renders) == 1  # a render since the hint, made once
        hint(services, "incident_updated", {"incident_id": 9})  # one the board has not heard
        again = dispatcher.get("/board/live", headers=conditional)
        assert again.status_code == 304 and len(renders) == 1  # the render still serves it
        whole = dispatcher.get("/board/live", headers=BACKGROUND)
        assert whole.status_code == 200 and len(renders) == 2  # a whole read: the newest


@pytest.mark.parametrize("sent", ["0", "-3", "12abc", "9" * 40, ""])
def test_a_heard_version_that_is_no_count_is_ignored(
    dispatcher: FlaskClient, world: World, sent: str
) -> None:
    tag = tag_of(dispatcher)
    conditional = {**BACKGROUND, "If-None-Match": tag, "X-Live-Version": sent}
    assert dispatcher.get("/board/live", headers=conditional).status_code == 304


def test_a_heard_version_from_the_future_is_the_newest(
    dispatcher: FlaskClient, world: World
) -> None:
    tag = tag_of(dispatcher)
    conditional = {**BACKGROUND, "If-None-Match": tag, "X-Live-Version": "999999999"}
    assert dispatcher.get("/board/live", headers=conditional).status_code == 304  # by the app
