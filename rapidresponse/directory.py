"""Finding the area someone means: by name, alias, slug or ZIP, with 'did you mean' help.

Built once per process and kept (``AreaCatalog``): a city's boundary file can be many
megabytes, and a text to the hotline must never wait for it to be parsed again.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import threading
import time
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
# A one-word name this short is an ordinary word too often ("hand", an alias of
# Hosford-Abernethy; "King", "Reed"): in a report it counts only in a place context.
SHORT_NAME = 5
# Words people put before a place name: "UNIRSE a Cully", "JOIN in Lents".
LEADING_WORDS = frozenset({"a", "al", "de", "del", "en", "in", "to", "at"})
# Written either way: "Mount Tabor" / "Mt. Tabor", "Saint Johns" / "St. John's".
SAME_WORD = {"mount": "mt", "saint": "st", "sainte": "ste", "santa": "sta"}
_APOSTROPHES = re.compile(r"['\u2018\u2019`\u00b4]")
# A name followed by one of these is a street or a county, not the neighborhood:
# "N Russell St", "Multnomah County courthouse", "Woodstock Blvd", "MLK Jr Blvd".
STREET_AFTER = frozenset(
    [
        "st",
        "street",
        "ave",
        "av",
        "avenue",
        "blvd",
        "boulevard",
        "rd",
        "road",
        "dr",
        "drive",
        "way",
        "ln",
        "lane",
        "ct",
        "court",
        "pl",
        "place",
        "hwy",
        "highway",
        "pkwy",
        "parkway",
        "ter",
        "terrace",
        "cir",
        "circle",
        "loop",
        "county",
        "co",
        "jr",
        "bridge",
    ]
)
# ...and so is one after a street direction or "on": "SE Foster", "on Powell".
STREET_BEFORE = frozenset(
    [
        "n",
        "ne",
        "nw",
        "s",
        "se",
        "sw",
        "e",
        "w",
        "north",
        "northeast",
        "northwest",
        "south",
        "southeast",
        "southwest",
        "east",
        "west",
        "on",
        "calle",
        "avenida",
    ]
)
# A place context: "in Russell", "cerca de Lents", "the Russell neighborhood".
PLACE_BEFORE = frozenset(
    ["in", "en", "near", "around", "inside", "barrio", "neighborhood", "cerca", "de", "del"]
)
NAMING_BEFORE = frozenset(["barrio", "neighborhood", "neighbourhood", "colonia"])
PLACE_AFTER = frozenset(["neighborhood", "neighbourhood", "area", "barrio", "district"])
# "JOIN Cully, Lents", "JOIN Cully and Lents", "UNIRSE Cully y Lents".
_LIST = re.compile(r"\s*(?:[,;&+/]|\band\b|\by\b)\s*", re.IGNORECASE)
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
    """At most one of: ``area`` found; ``areas``, all that a shared ZIP covers; or
    ``choices``, names close to what was typed. None of them: nothing like it."""

    area: Place | None = None
    areas: tuple[Place, ...] = ()
    choices: tuple[str, ...] = ()

    @property
    def places(self) -> tuple[Place, ...]:
        return (self.area,) if self.area is not None else self.areas


def fold(text: str) -> str:
    """``text`` as a key: normalised, apostrophes dropped, "Mount"/"Saint" as "Mt"/"St"."""
    words = normalize(_APOSTROPHES.sub("", text)).split()
    return " ".join(SAME_WORD.get(word, word) for word in words)


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
        parts: list[tuple[str, Place]] = []
        self._names: set[str] = set()
        for area in areas:
            place = Place(area.id, area.slug, area.name)
            self._names.add(fold(area.name))
            for name in (area.name, area.slug.replace("-", " "), *area.aliases, *area.zips):
                self._add(fold(name), place)
            parts.extend((fold(part), place) for part in _name_parts(area.name))
            if outlines and area.geometry:
                self._outlines.append((place, area.geometry))
        # "Sellwood" for Sellwood-Moreland: a part of a name, where no name claims it.
        # Parts are often streets too (Foster, Powell): in a report, only in a context.
        self._weak = {key for key, _ in parts if key not in self._by_key}
        for key, place in parts:
            if key in self._weak:
                self._add(key, place)
        self._longest = max((len(key.split()) for key in self._by_key), default=1)

    def _add(self, key: str, area: Place) -> None:
        for variant in {key, key.replace(" ", "")}:
            if variant and area not in self._by_key.setdefault(variant, []):
                self._by_key[variant].append(area)

    def resolve(self, text: str) -> Resolution:
        key = fold(text)
        found = self._lookup(key)
        first, _, rest = key.partition(" ")
        if not found and first in LEADING_WORDS and rest:  # "UNIRSE a Cully", "JOIN in Lents"
            key, found = rest, self._lookup(rest)
        if len(found) == 1:
            return Resolution(area=found[0])
        if found:  # a ZIP that spans several neighborhoods
            return Resolution(areas=tuple(found))
        return Resolution(choices=self._suggestions(key))

    def resolve_list(self, text: str) -> list[tuple[str, Resolution]]:
        """Each area of "Cully, Lents" or "Cully and Lents", with the words it came from.

        The whole text is tried first, so a name with "and" in it stays one name.
        """
        whole = self.resolve(text)
        pieces = [piece for piece in _LIST.split(text) if piece.strip()]
        if whole.places or len(pieces) < 2:
            return [(text, whole)]
        return [(piece, self.resolve(piece)) for piece in pieces]

    def _lookup(self, key: str) -> list[Place]:
        return self._by_key.get(key) or self._by_key.get(key.replace(" ", ""), [])

    def mentioned_in(self, text: str) -> Place | None:
        """The one area a free-text report names (a name, an alias, a ZIP), if exactly one.

        Whole words only, the longest name at each place in the text. A name that is
        part of a street or county ("N Russell St", "Multnomah County") does not count;
        a short or partial name counts only in a place context ("in King", "Sellwood
        neighborhood") or alone. Two areas named: the one named in a place context, if
        only one is; otherwise it is left for a dispatcher to place.
        """
        words = fold(text).split()
        named: dict[int, tuple[Place, bool]] = {}
        start = 0
        while start < len(words):
            found = self._name_at(words, start)
            if found is None:
                start += 1
                continue
            length, places, context = found
            if len(places) == 1:  # a ZIP several areas share places nothing
                place = places[0]
                named[place.id] = (place, context or named.get(place.id, (place, False))[1])
            start += length
        if len(named) == 1:
            return next(iter(named.values()))[0]
        in_context = [place for place, context in named.values() if context]
        return in_context[0] if len(in_context) == 1 else None

    def _name_at(self, words: list[str], start: int) -> tuple[int, list[Place], bool] | None:
        """The longest name that starts at ``words[start]`` and counts there, if any."""
        for length in range(min(self._longest, len(words) - start), 0, -1):
            key = " ".join(words[start : start + length])
            places = self._by_key.get(key)
            if not places:
                continue
            before = words[start - 1] if start else ""
            after = words[start + length] if start + length < len(words) else ""
            if after in STREET_AFTER or before in STREET_BEFORE:
                return None  # a street or a county: no shorter name here counts either
            alone = length == len(words)
            named_as_place = before in NAMING_BEFORE or after in PLACE_AFTER or alone
            in_context = named_as_place or before in PLACE_BEFORE
            short = " " not in key and not key.isdigit() and len(key) < SHORT_NAME
            if short and key not in self._names and not named_as_place:
                return None  # a short alias ("HAND") needs more than "in": "in hand"
            if (short or key in self._weak) and not in_context:
                return None
            return length, places, in_context
        return None

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


def _name_parts(name: str) -> list[str]:
    """The parts of a joined name: "Sellwood-Moreland" → Sellwood, Moreland."""
    parts = [part.strip() for part in re.split(r"\s*[-/]\s*", name) if part.strip()]
    return parts if len(parts) > 1 else []


# --- one directory per process ---------------------------------------------------------

# Any change to an area, by any code path that goes through the ORM, gives the areas a
# new revision (an upsert both SQLite and PostgreSQL speak, in the same transaction).
_WRITE_REVISION = text(
    "INSERT INTO area_revision (id, revision) VALUES (1, :revision) "
    "ON CONFLICT (id) DO UPDATE SET revision = excluded.revision"
)


# How long a directory is trusted without asking the database for the revision: a change
# made by another process (a region import, another web process) reaches this one's
# texts within this; a change made in this process, at once.
RECHECK_SECONDS = 1.0
# Counts the changes to areas made by this process (next() is atomic under the GIL).
_changes_here = itertools.count()
_last_change_here = 0


def changes_made_here() -> int:
    """How many changes to areas this process has made (a cache key for what shows them:
    another process's change is seen when the cache next asks the database)."""
    return _last_change_here


def _areas_changed(_mapper: Any, connection: Connection, _target: Any) -> None:
    global _last_change_here
    connection.execute(_WRITE_REVISION, {"revision": uuid.uuid4().hex})
    _last_change_here = next(_changes_here) + 1


for _change in ("after_insert", "after_update", "after_delete"):
    event.listen(Area, _change, _areas_changed)


def current_revision(session: Session) -> str | None:
    """The areas' current revision (None before any area was ever stored)."""
    revision = session.scalar(select(area_revision.c.revision).where(area_revision.c.id == 1))
    return None if revision is None else str(revision)


class AreaCatalog:
    """The process's ``AreaDirectory``, rebuilt only when the areas' revision changes.

    ``refresh`` is called with a read-only session before a write transaction that needs
    it, so a boundary file is parsed (once) while nothing is locked. The webhook uses the
    ``cached`` directory and checks, inside its transaction, that it ``is_current``; if
    not, it starts again after a ``refresh``. That check asks the database at most once
    per RECHECK_SECONDS (one statement saved on every text), and at once after this
    process changed an area itself.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._revision: str | None = None
        self._directory: AreaDirectory | None = None
        self._checked_at = -math.inf  # time.monotonic() of the last revision read
        self._changes_seen = -1  # _last_change_here at that read

    def cached(self) -> AreaDirectory | None:
        return self._directory

    def is_current(self, session: Session, directory: AreaDirectory) -> bool:
        """Whether ``directory`` is still what the areas in the database describe."""
        with self._lock:
            built, revision = self._directory, self._revision
            recent = time.monotonic() - self._checked_at < RECHECK_SECONDS
            trusted = recent and self._changes_seen == _last_change_here
        if directory is not built:
            return False
        if trusted:
            return True
        changes, asked_at = _last_change_here, time.monotonic()
        if current_revision(session) != revision:
            return False
        self._checked(directory, changes, asked_at)
        return True

    def refresh(self, session: Session) -> AreaDirectory:
        changes, asked_at = _last_change_here, time.monotonic()
        revision = current_revision(session)
        current = self._directory
        if current is not None and revision == self._revision:
            self._checked(current, changes, asked_at)
            return current
        with self._lock:  # one thread rebuilds; the others wait for its result
            if self._directory is None or revision != self._revision:
                built = AreaDirectory(session.scalars(select(Area).order_by(Area.id)))
                built.polygons()
                self._directory, self._revision = built, revision
                self._checked_at, self._changes_seen = asked_at, changes
            return self._directory

    def _checked(self, directory: AreaDirectory, changes: int, asked_at: float) -> None:
        """Record that ``directory`` was found current by a read made at ``asked_at``."""
        with self._lock:
            if self._directory is directory and asked_at > self._checked_at:
                self._checked_at, self._changes_seen = asked_at, changes
