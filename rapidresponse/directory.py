"""Finding the area someone means: by name, alias, slug or ZIP, with 'did you mean' help.

Built once per process and kept (``AreaCatalog``): a city's boundary file can be many
megabytes, and a text to the hotline must never wait for it to be parsed again.
"""

from __future__ import annotations

import difflib
import math
import re
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import shapely
import shapely.prepared
from shapely.geometry import shape
from sqlalchemy import Connection, event, select, text
from sqlalchemy.orm import Session

from rapidresponse.commands import normalize
from rapidresponse.models import Area, area_revision

MAX_SUGGESTIONS = 3
# Shorter names would match ordinary words in a report: "hand" (an alias of
# Hosford-Abernethy), "king" (MLK Blvd crosses many neighborhoods).
MIN_NAME_LENGTH = 5
_ZIP = re.compile(r"\b\d{5}\b")
# Words people put before a place name: "UNIRSE a Cully", "JOIN in Lents".
LEADING_WORDS = frozenset({"a", "al", "de", "del", "en", "in", "to", "at"})
# How alike a misspelling must be to be offered (difflib ratio): "kenten" → "kenton".
SUGGESTION_CUTOFF = 0.72


class AreaLike(Protocol):
    """What the directory reads of an area: a stored ``Area`` row, or a test's stand-in."""

    @property
    def id(self) -> int: ...
    @property
    def slug(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def aliases(self) -> Sequence[str]: ...
    @property
    def zips(self) -> Sequence[str]: ...
    @property
    def geometry(self) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Place:
    """An area as the directory keeps it: plain values, usable after its session is gone."""

    id: int
    slug: str
    name: str


@dataclass(frozen=True)
class Resolution:
    """Exactly one of: ``area`` found, several ``choices`` to pick from, or nothing."""

    area: Place | None = None
    choices: tuple[str, ...] = ()


class _Polygons:
    """Area outlines in an STRtree: a point is tested only against the few whose box holds it."""

    def __init__(self, outlines: list[tuple[Place, dict[str, Any]]]) -> None:
        self.places = [place for place, _ in outlines]
        geometries = [shape(geojson) for _, geojson in outlines]
        self.prepared = [shapely.prepared.prep(geometry) for geometry in geometries]
        self.tree = shapely.STRtree(geometries)

    def covering(self, longitude: float, latitude: float) -> Place | None:
        if not (math.isfinite(longitude) and math.isfinite(latitude)):
            return None  # a broken browser or phone location is in no area
        point = shapely.Point(longitude, latitude)
        # The tree returns boxes that hold the point; the first (by area order) whose
        # outline covers it, boundary included, wins, as before the tree.
        for index in sorted(int(i) for i in self.tree.query(point)):
            if self.prepared[index].covers(point):
                return self.places[index]
        return None


class AreaDirectory:
    """Every way people name the areas, normalised (case, accents, punctuation, spacing)."""

    def __init__(self, areas: Iterable[AreaLike], *, outlines: bool = True) -> None:
        self._by_key: dict[str, list[Place]] = {}
        self._outlines: list[tuple[Place, dict[str, Any]]] = []
        self._polygons: _Polygons | None = None
        self._polygons_lock = threading.Lock()
        for area in areas:
            place = Place(area.id, area.slug, area.name)
            for name in (area.name, area.slug.replace("-", " "), *area.aliases, *area.zips):
                self._add(normalize(name), place)
            if outlines and area.geometry:
                self._outlines.append((place, area.geometry))

    def _add(self, key: str, area: Place) -> None:
        for variant in {key, key.replace(" ", "")}:
            if variant and area not in self._by_key.setdefault(variant, []):
                self._by_key[variant].append(area)

    def resolve(self, text: str) -> Resolution:
        key = normalize(text)
        found = self._lookup(key)
        first, _, rest = key.partition(" ")
        if not found and first in LEADING_WORDS and rest:  # "UNIRSE a Cully", "JOIN in Lents"
            key, found = rest, self._lookup(rest)
        if len(found) == 1:
            return Resolution(area=found[0])
        if found:  # a ZIP that spans several neighborhoods
            return Resolution(choices=tuple(area.name for area in found[:MAX_SUGGESTIONS]))
        return Resolution(choices=self._suggestions(key))

    def _lookup(self, key: str) -> list[Place]:
        return self._by_key.get(key) or self._by_key.get(key.replace(" ", ""), [])

    def mentioned_in(self, text: str) -> Place | None:
        """The one area a free-text report names (a ZIP, a name, an alias), if exactly one.

        "ICE van on 42nd in Cully near 97218" → Cully. Two different areas named, or a ZIP
        shared by several, is left for a dispatcher to place.
        """
        words = normalize(text)
        for number in _ZIP.findall(words):
            candidates = self._by_key.get(number, [])
            if len(candidates) == 1:
                return candidates[0]
        padded = f" {words} "
        named = {
            area.id: area
            for key, areas in self._by_key.items()
            if len(key) >= MIN_NAME_LENGTH
            and not key.isdigit()
            and len(areas) == 1
            and f" {key} " in padded
            for area in areas
        }
        return next(iter(named.values())) if len(named) == 1 else None

    def at(self, longitude: float, latitude: float) -> Place | None:
        """The area whose polygon covers the point (a web pin, a Twilio location)."""
        return self.polygons().covering(longitude, latitude)

    def polygons(self) -> _Polygons:
        """The outlines, parsed and indexed on first use (the catalog does it up front)."""
        with self._polygons_lock:
            if self._polygons is None:
                self._polygons = _Polygons(self._outlines)
            return self._polygons

    def _suggestions(self, key: str) -> tuple[str, ...]:
        if not key or key.isdigit():
            return ()
        close = difflib.get_close_matches(key, list(self._by_key), n=10, cutoff=SUGGESTION_CUTOFF)
        names: list[str] = []
        for match in close:
            for area in self._by_key[match]:
                if area.name not in names:
                    names.append(area.name)
        return tuple(names[:MAX_SUGGESTIONS])

    def example(self) -> str:
        """A ZIP to show in help texts (a real one from this region)."""
        zips = sorted(k for k in self._by_key if k.isdigit())
        return zips[0] if zips else "97211"


# --- one directory per process ---------------------------------------------------------

# Any change to an area, by any code path that goes through the ORM, gives the areas a
# new revision (an upsert both SQLite and PostgreSQL speak, in the same transaction).
_WRITE_REVISION = text(
    "INSERT INTO area_revision (id, revision) VALUES (1, :revision) "
    "ON CONFLICT (id) DO UPDATE SET revision = excluded.revision"
)


def _areas_changed(_mapper: Any, connection: Connection, _target: Any) -> None:
    connection.execute(_WRITE_REVISION, {"revision": uuid.uuid4().hex})


for _change in ("after_insert", "after_update", "after_delete"):
    event.listen(Area, _change, _areas_changed)


def current_revision(session: Session) -> str | None:
    """The areas' current revision (None before any area was ever stored)."""
    revision = session.scalar(select(area_revision.c.revision).where(area_revision.c.id == 1))
    return None if revision is None else str(revision)


class AreaCatalog:
    """The process's ``AreaDirectory``, rebuilt only when the areas' revision changes.

    ``refresh`` is called with a read-only session before the webhook opens its write
    transaction, so a boundary file is parsed (once) while nothing is locked; the write
    transaction then uses ``directory`` as it is.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revision: str | None = None
        self._directory: AreaDirectory | None = None

    def refresh(self, session: Session) -> AreaDirectory:
        revision = current_revision(session)
        current = self._directory
        if current is not None and revision == self._revision:
            return current
        with self._lock:  # one thread rebuilds; the others wait for its result
            if self._directory is None or revision != self._revision:
                built = AreaDirectory(session.scalars(select(Area).order_by(Area.id)))
                built.polygons()
                self._directory, self._revision = built, revision
            return self._directory
