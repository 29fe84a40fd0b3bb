"""Storing region packs: areas are upserted by slug and never silently deleted."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from shapely.geometry import shape
from sqlalchemy import select
from sqlalchemy.orm import Session

from rapidresponse.models import Area
from rapidresponse.regions import AreaSpec

# Areas whose outlines come this close (degrees, about 300 m) count as adjacent.
ADJACENCY_MARGIN = 0.003


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


def unsaved_areas(specs: Sequence[AreaSpec]) -> list[Area]:
    """Rows for ``specs``, numbered from 1 and in no session: for a directory built
    without a database (benchmarks, tests)."""
    return [
        Area(
            id=n,
            slug=spec.slug,
            name=spec.name,
            aliases=list(spec.aliases),
            zips=list(spec.zips),
            geometry=spec.geojson(),
        )
        for n, spec in enumerate(specs, start=1)
    ]


def find_area(session: Session, text: str) -> Area | None:
    """An area by slug or exact (case-insensitive) name, for operators' commands."""
    wanted = text.strip().casefold()
    for area in session.scalars(select(Area).order_by(Area.id)):
        if wanted in (area.slug, area.name.casefold()):
            return area
    return None


MAX_ALIASES = 40
MAX_ALIAS_LENGTH = 80
_ZIP = re.compile(r"[0-9]{5}")
_SEPARATORS = re.compile(r"[\n,;]+")


class NamesRefused(ValueError):
    """What a coordinator typed for an area's other names cannot be used.

    ``reason`` is one of ``"zip"``, ``"too_long"``, ``"too_many"``: the web says it in
    the reader's language.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class AreaNames:
    aliases: tuple[str, ...]
    zips: tuple[str, ...]


def read_area_names(aliases: str, zips: str, name: str) -> AreaNames:
    """Aliases (one per line, or comma-separated) and ZIPs as a coordinator typed them.

    Blanks, repeats and copies of the name are dropped. A ZIP may belong to several
    areas: ``JOIN 97202`` then joins each of them.

    Raises:
        NamesRefused: a ZIP that is not five digits, an alias too long, too many aliases.
    """
    seen = {name.casefold()}
    kept: list[str] = []
    for alias in (" ".join(part.split()) for part in _SEPARATORS.split(aliases)):
        if alias and alias.casefold() not in seen:
            if len(alias) > MAX_ALIAS_LENGTH:
                raise NamesRefused(
                    "too_long", f"an alias is longer than {MAX_ALIAS_LENGTH} characters"
                )
            seen.add(alias.casefold())
            kept.append(alias)
    if len(kept) > MAX_ALIASES:
        raise NamesRefused("too_many", f"more than {MAX_ALIASES} aliases")
    codes: list[str] = []
    for code in (part.strip() for part in re.split(r"[\s,;]+", zips)):
        if not code:
            continue
        if not _ZIP.fullmatch(code):
            raise NamesRefused("zip", "a ZIP code is five digits")
        if code not in codes:
            codes.append(code)
    return AreaNames(tuple(kept), tuple(codes))


def adjacent_area_ids(session: Session, area_id: int) -> list[int]:
    """The areas whose outlines touch (or nearly touch) this one's, by id; none when it
    has no outline."""
    areas = session.scalars(select(Area).where(Area.geometry.is_not(None))).all()
    home = next((a for a in areas if a.id == area_id), None)
    if home is None or home.geometry is None:
        return []
    reach = shape(home.geometry).buffer(ADJACENCY_MARGIN)
    return [
        a.id
        for a in areas
        if a.id != area_id and a.geometry and reach.intersects(shape(a.geometry))
    ]
