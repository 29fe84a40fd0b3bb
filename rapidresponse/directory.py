"""Finding the area someone means: by name, alias, slug or ZIP, with 'did you mean' help."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

from rapidresponse.commands import normalize
from rapidresponse.models import Area

MAX_SUGGESTIONS = 3
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
        self._by_key: dict[str, list[Area]] = {}
        for area in areas:
            for name in (area.name, area.slug.replace("-", " "), *area.aliases, *area.zips):
                self._add(normalize(name), area)

    def _add(self, key: str, area: Area) -> None:
        for variant in {key, key.replace(" ", "")}:
            if variant and area not in self._by_key.setdefault(variant, []):
                self._by_key[variant].append(area)

    def resolve(self, text: str) -> Resolution:
        key = normalize(text)
        found = self._by_key.get(key) or self._by_key.get(key.replace(" ", ""), [])
        if len(found) == 1:
            return Resolution(area=found[0])
        if found:  # a ZIP that spans several neighborhoods
            return Resolution(choices=tuple(area.name for area in found[:MAX_SUGGESTIONS]))
        return Resolution(choices=self._suggestions(key))

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
