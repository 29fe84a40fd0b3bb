"""Fifty boards re-reading at once cost one render, and never more than a few at a time.

Before, every hint made every open board re-render every incident, recount every alert
and redraw the map: 50 boards slowed a broadcast 5-6x and the webhooks with it.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dispatch.live import LivePublisher, live_version
from dispatch.services import Services
from rapidresponse.models import StaffRole
from tests.web.staff_helpers import add_account, sign_in
from web import board as board_module
from web import shared_render
from web.shared_render import Busy, Rendered, RenderGate, SharedRender


def slow_render(calls: list[int], seconds: float = 0.2) -> str:
    calls.append(1)
    time.sleep(seconds)
    return f"render {len(calls)}"


def test_boards_asking_at_once_share_one_render() -> None:
    shared, calls = SharedRender(RenderGate()), []
    with ThreadPoolExecutor(20) as pool:
        pages = list(pool.map(lambda _: shared.get("en", 7, lambda: slow_render(calls)), range(20)))
    assert calls == [1]
    assert set(pages) == {"render 1"}


def test_a_new_version_or_another_language_renders_again() -> None:
    shared, calls = SharedRender(RenderGate()), []
    assert shared.get("en", 7, lambda: slow_render(calls, 0)) == "render 1"
    assert shared.get("en", 7, lambda: slow_render(calls, 0)) == "render 1"
    assert shared.get("es", 7, lambda: slow_render(calls, 0)) == "render 2"
    assert shared.get("en", 8, lambda: slow_render(calls, 0)) == "render 3"


def test_a_render_is_kept_only_a_few_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(shared_render.time, "monotonic", lambda: clock[0])
    shared, calls = SharedRender(RenderGate()), []
    shared.get("en", 7, lambda: slow_render(calls, 0))
    clock[0] += shared_render.MAX_AGE_SECONDS  # "2 min ago" must become "3 min ago"
    assert shared.get("en", 7, lambda: slow_render(calls, 0)) == "render 2"


def test_without_a_version_nothing_is_shared() -> None:
    shared, calls = SharedRender(RenderGate()), []
    shared.get("en", None, lambda: slow_render(calls, 0))
    shared.get("en", None, lambda: slow_render(calls, 0))
    assert len(calls) == 2


def test_a_full_gate_answers_busy_instead_of_queueing() -> None:
    gate = RenderGate(at_once=1, wait=0.1)
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with gate.turn():
            inside.set()
            leave.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert inside.wait(5)
    try:
        with pytest.raises(Busy), gate.turn():
            pass
    finally:
        leave.set()
        holder.join()
    with gate.turn():  # free again
        pass


# --- through the app ---------------------------------------------------------------------


@pytest.fixture
def two_dispatchers(app: Flask, services: Services) -> list[FlaskClient]:
    clients = []
    for n in range(2):
        client = app.test_client()
        sign_in(client, services, add_account(services, StaffRole.DISPATCHER, f"d{n}@x.org"))
        clients.append(client)
    return clients


def test_two_boards_share_the_render_until_a_hint_is_published(
    two_dispatchers: list[FlaskClient], services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(board_module, "shared_live", SharedRender(RenderGate()))
    renders: list[int] = []
    real = board_module._board_context

    def counted() -> dict[str, object]:
        renders.append(1)
        return real()

    monkeypatch.setattr(board_module, "_board_context", counted)
    first, second = two_dispatchers
    pages = [c.get("/board/live").get_data(as_text=True) for c in (first, second)]
    assert len(renders) == 1 and pages[0] == pages[1]
    before = live_version(services.redis)
    LivePublisher(services.redis_url).emit("incident_opened", {"incident_id": 1})
    assert live_version(services.redis) == (before or 0) + 1
    second.get("/board/live")
    assert len(renders) == 2


def test_a_busy_board_is_told_when_to_come_back(
    two_dispatchers: list[FlaskClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy() -> Rendered:
        raise Busy

    class Full(SharedRender):
        def rendered(self, *_args: object) -> Rendered:  # type: ignore[override]
            return busy()

    monkeypatch.setattr(board_module, "shared_live", Full(RenderGate()))
    response = two_dispatchers[0].get("/board/live")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(shared_render.RETRY_AFTER_SECONDS)
    spanish = two_dispatchers[1].get("/board/live?lang=es")
    assert spanish.status_code == 503 and "Ocupado" in spanish.get_data(as_text=True)


def test_the_shared_fragment_carries_nothing_of_one_person() -> None:
    """One render is served to every board: a form (and its CSRF token) or anything of
    the person asking must never be in it. The incident and alert fragments have forms,
    and are not shared."""
    from pathlib import Path

    templates = Path(board_module.__file__).parent / "templates" / "board"
    shared = ["_live.html", "_map.html", "_macros.html"]
    for name in shared:
        source = (templates / name).read_text()
        for personal in ("csrf_token", "<form", "current_staff", "g.staff", "session"):
            assert personal not in source, f"{name} has {personal}: it is shared by every board"
