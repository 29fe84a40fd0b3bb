"""Storing region packs: areas are upserted by slug and never silently deleted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from rapidresponse.models import Area
from rapidresponse.regions import AreaSpec


@dataclass(frozen=True)
class ImportSummary:
    added: int
    updated: int
    kept: tuple[str, ...]  # slugs in the database but not in the file (still subscribed to)


def import_areas(session: Session, specs: Sequence[AreaSpec], region: str) -> ImportSummary:
    """Add new areas and update known ones (matched by slug) from a parsed region pack.

    Areas missing from the file are kept, because subscribers and incidents refer to
    them; the summary lists them so an operator can decide.
    """
    existing = {area.slug: area for area in session.scalars(select(Area))}
    added = updated = 0
    for spec in specs:
        area = existing.pop(spec.slug, None)
        if area is None:
            area = Area(slug=spec.slug)
            session.add(area)
            added += 1
        else:
            updated += 1
        area.name, area.region = spec.name, region
        area.aliases, area.zips = list(spec.aliases), list(spec.zips)
        area.geometry = spec.geojson()
    session.flush()
    return ImportSummary(added=added, updated=updated, kept=tuple(sorted(existing)))


def find_area(session: Session, text: str) -> Area | None:
    """An area by slug or exact (case-insensitive) name, for operators' commands."""
    wanted = text.strip().casefold()
    for area in session.scalars(select(Area).order_by(Area.id)):
        if wanted in (area.slug, area.name.casefold()):
            return area
    return None
