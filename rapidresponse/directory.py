"""Finding the area someone means: by name, alias, slug or ZIP, with 'did you mean' help."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import shapely.prepared
from shapely.geometry import shape

from rapidresponse.commands import normalize
from rapidresponse.models import Area
from rapidresponse.regions import first_covering

MAX_SUGGESTIONS = 3
# Shorter names would match ordinary words in a report: "hand" (an alias of
# Hosford-Abernethy), "king" (MLK Blvd crosses many neighborhoods).
MIN_NAME_LENGTH = 5
_ZIP = re.compile(r"\b\d{5}\b")
# Words people put before a place name: "UNIRSE a Cully", "JOIN in Lents".
LEADING_WORDS = frozenset({"a", "al", "de", "del", "en", "in", "to", "at"})
# How alike a misspelling must be to be offered (difflib ratio): "kenten" → "kenton".
SUGGESTION_CUTOFF = 0.72


@dataclass(frozen=True)
class Resolution:
    """Exactly one of: ``area`` found, several ``choices`` to pick from, or nothing."""

    area: Area | None = None
    choices: tuple[str, ...] = ()


class AreaDirectory:
    """Every way people name the areas, normalised (case, accents, punctuation, spacing)."""

    def __init__(self, areas: Iterable[Area]) -> None:
        self._areas = list(areas)
        self._shapes: list[tuple[Area, Any]] | None = None
        self._by_key: dict[str, list[Area]] = {}
        for area in self._areas:
            for name in (area.name, area.slug.replace("-", " "), *area.aliases, *area.zips):
                self._add(normalize(name), area)

    def _add(self, key: str, area: Area) -> None:
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

    def _lookup(self, key: str) -> list[Area]:
        return self._by_key.get(key) or self._by_key.get(key.replace(" ", ""), [])

    def mentioned_in(self, text: str) -> Area | None:
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

    def at(self, longitude: float, latitude: float) -> Area | None:
        """The area whose polygon covers the point (a web pin, a Twilio location)."""
        return first_covering(longitude, latitude, self._polygons())

    def _polygons(self) -> list[tuple[Area, Any]]:
        if self._shapes is None:
            self._shapes = [
                (area, shapely.prepared.prep(shape(area.geometry)))
                for area in self._areas
                if area.geometry
            ]
        return self._shapes

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
