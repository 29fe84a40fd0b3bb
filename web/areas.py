"""Areas: how people name each neighbourhood, edited by coordinators.

A city's boundary file has names only; people text "Gateway", "centro", "97266". Here a
coordinator adds an area's aliases and ZIPs (a ZIP may belong to several areas), every
change audited; the hotline uses them from the next text on (the change gives the areas
a new revision, and every process rebuilds its directory). "Try a message" shows where
the hotline would place a report and what JOIN would subscribe to.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from rapidresponse import audit
from rapidresponse.areas import AreaNames, NamesRefused, read_area_names
from rapidresponse.board import subscriber_counts
from rapidresponse.directory import AreaDirectory
from rapidresponse.models import Area
from rapidresponse.staff import Permission
from web.auth import requires, signed_in
from web.context import services

bp = Blueprint("areas", __name__)

MAX_TRIAL_CHARS = 300


@dataclass(frozen=True)
class Trial:
    """Where the hotline would place ``text``, and what ``JOIN text`` would join."""

    text: str
    placed: str | None
    joins: tuple[str, ...]
    suggestions: tuple[str, ...]


@bp.get("/areas")
@requires(Permission.VIEW_PEOPLE)
def index() -> ResponseReturnValue:
    found = services()
    with found.database.session() as session:
        areas = session.scalars(select(Area).order_by(Area.name)).all()
        rows = [(a.id, a.name, a.region, list(a.aliases), list(a.zips)) for a in areas]
        totals = {audience.area_id: audience.total for audience in subscriber_counts(session)}
    typed = (request.args.get("text") or "").strip()[:MAX_TRIAL_CHARS]
    trial = _try(found.area_directory(), typed) if typed else None
    return render_template("areas/index.html", areas=rows, totals=totals, trial=trial)


def _try(directory: AreaDirectory, text: str) -> Trial:
    placed = directory.mentioned_in(text)
    joins: list[str] = []
    suggestions: tuple[str, ...] = ()
    for _words, found in directory.resolve_list(text):
        joins.extend(place.name for place in found.places if place.name not in joins)
        suggestions = suggestions or found.choices
    return Trial(text, placed.name if placed else None, tuple(joins), suggestions)


@bp.get("/areas/<int:area_id>")
@requires(Permission.MANAGE_AREAS)
def edit(area_id: int) -> ResponseReturnValue:
    return _edit_page(area_id)


@bp.post("/areas/<int:area_id>")
@requires(Permission.MANAGE_AREAS)
def save(area_id: int) -> ResponseReturnValue:
    aliases, zips = request.form.get("aliases", ""), request.form.get("zips", "")
    refused: NamesRefused | None = None
    with services().database.session() as session:
        area = session.get(Area, area_id)
        if area is None:
            abort(404)
        try:
            names = read_area_names(aliases, zips, area.name)
        except NamesRefused as error:
            refused = error
        else:
            _apply(session, area, names)
    if refused is not None:  # drawn after the transaction: one database session at a time
        flash(_refusal(refused))
        return _edit_page(area_id, 400, aliases=aliases, zips=zips)
    flash(_("Saved. The hotline uses these names from the next text on."))
    return redirect(url_for("areas.index"), code=303)


def _apply(session: Session, area: Area, names: AreaNames) -> None:
    before = (len(area.aliases), len(area.zips))
    area.aliases, area.zips = list(names.aliases), list(names.zips)
    audit.record(
        session,
        actor=signed_in().actor,
        action="area.names_changed",
        subject=f"area:{area.id}",
        details={
            "aliases": [before[0], len(names.aliases)],
            "zips": list(names.zips),
        },
    )


def _refusal(error: NamesRefused) -> str:
    if error.reason == "zip":
        return str(_("A ZIP code is five digits. Nothing was changed."))
    if error.reason == "too_long":
        return str(_("An alias is too long. Nothing was changed."))
    return str(_("Too many aliases. Nothing was changed."))


def _edit_page(
    area_id: int, status: int = 200, *, aliases: str | None = None, zips: str | None = None
) -> ResponseReturnValue:
    with services().database.session() as session:
        area = session.get(Area, area_id)
        if area is None:
            abort(404)
        form = {
            "id": area.id,
            "name": area.name,
            "aliases": "\n".join(area.aliases) if aliases is None else aliases,
            "zips": " ".join(area.zips) if zips is None else zips,
        }
    return render_template("areas/edit.html", area=form), status
