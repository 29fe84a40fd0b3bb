"""The landing page: what this service is and where to go."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

bp = Blueprint("home", __name__)


@bp.get("/")
def index() -> str:
    # The simulator's links only where its pages exist (development, SMS_BACKEND=simulator).
    return render_template("home.html", simulator="simulator" in current_app.blueprints)
