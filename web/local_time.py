"""Times on staff pages in the deployment's time zone (TIMEZONE); UTC only on hover."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import Flask
from markupsafe import Markup, escape


def local_clock(zone: ZoneInfo, at: datetime, today: datetime | None = None) -> str:
    """ "10:52" today, "2026-12-02 10:52" on another day (both local)."""
    local = at.astimezone(zone)
    now = (today or datetime.now(UTC)).astimezone(zone)
    return local.strftime("%H:%M" if local.date() == now.date() else "%Y-%m-%d %H:%M")


def init_app(app: Flask, timezone: str) -> None:
    zone = ZoneInfo(timezone)

    def clock(at: datetime | None) -> Markup:
        if at is None:
            return Markup("")
        exact = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        return Markup('<time datetime="{}" title="{}">{}</time>').format(
            at.astimezone(UTC).isoformat(), exact, escape(local_clock(zone, at))
        )

    app.jinja_env.filters["clock"] = clock
