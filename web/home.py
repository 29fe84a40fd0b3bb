"""The landing page: what this service is and where to go."""

from __future__ import annotations

from flask import Blueprint, render_template

from web.context import services

bp = Blueprint("home", __name__)


@bp.get("/")
def index() -> str:
    settings = services().settings
    return render_template("home.html", simulator=settings.sms_backend == "simulator")
