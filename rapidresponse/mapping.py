"""A server-rendered map for the dispatchers' live board.

The board must work without JavaScript and, by default, without asking any third party
for anything (a tile server learns who is watching which neighbourhood, and when).  So
this module turns area boundaries and incidents into plain numbers for an inline SVG:
one path per area, one dot per incident, and optionally the background tiles of a
tile server the organisers chose themselves (``MAP_TILE_URL``).

Positions use Web Mercator, the projection of every slippy-map tile server, so the
optional tiles line up with the areas.  Internally coordinates go through three stages:
longitude/latitude, *world units* (the whole Mercator square is 0..1 on both axes, y
down, exactly as tile numbers count) and SVG units (the ``viewBox`` of the page).

This module is pure: no web framework, so the board, the tests and a CLI can all use it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import numpy.typing as npt
import shapely
from shapely.errors import ShapelyError
from shapely.geometry import MultiPolygon, Polygon, shape

__all__ = [
    "MAX_TILES",
    "AreaShape",
    "BoardMap",
    "IncidentPoint",
    "MapArea",
    "MapMarker",
    "MapTile",
    "build_map",
    "tile_origin",
]

#: Most tiles one map may ask for; beyond it the zoom is lowered (fewer, blurrier tiles).
MAX_TILES = 64
#: The deepest zoom tile servers commonly offer.
MAX_ZOOM = 19
#: Tile edge in screen pixels that the zoom is chosen for.
TILE_PIXELS = 256

_MAX_LATITUDE = 85.0511287798  # Web Mercator's square ends here
_MARGIN = 0.05  # of the box's larger side, on every side, so edges are not flush
_MIN_SPAN = 1e-6  # world units (~40 m): a degenerate box still gets a scale
_MIN_ASPECT, _MAX_ASPECT = 0.25, 2.0  # height/width; a thin region is padded, not stretched
_EMPTY_ASPECT = 0.75
_SPIRAL_STEP = 10.0  # SVG units; markers are circles of radius 7
_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))
# Markers drawn later sit on top: settled incidents first, the ones needing action last.
_DRAW_ORDER = {
    "closed": 0,
    "false_alarm": 1,
    "unverified": 2,
    "dispatched": 3,
    "reported": 4,
    "confirmed": 5,
}
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")
_REQUIRED_PLACEHOLDERS = frozenset({"{z}", "{x}", "{y}"})
_HOST_AND_PORT = re.compile(
    r"(?P<host>[a-z0-9]([a-z0-9.-]*[a-z0-9])?|\[[0-9a-f:.]+\])(:(?P<port>[0-9]{1,5}))?"
)
_UNSAFE_CHARACTERS = re.compile(r"[\s\x00-\x1f\x7f\"'<>\\]")

_Coordinates = npt.NDArray[np.float64]


@dataclass(frozen=True)
class AreaShape:
    """An area as the map needs it; ``geometry`` is GeoJSON in longitude/latitude."""

    id: int
    name: str
    geometry: dict[str, Any] | None


@dataclass(frozen=True)
class IncidentPoint:
    """An incident as the map needs it; a location, an area, both or neither."""

    id: int
    code: str
    state: str
    area_id: int | None
    latitude: float | None
    longitude: float | None
    drill: bool = False  # a drill's: its own marker, and no real count of its area


@dataclass(frozen=True)
class MapArea:
    """One area outline: ``path`` is an SVG path ``d`` in viewBox units."""

    id: int
    name: str
    path: str
    label_x: float
    label_y: float
    incident_count: int


@dataclass(frozen=True)
class MapMarker:
    """One incident dot, in viewBox units."""

    incident_id: int
    code: str
    state: str
    x: float
    y: float
    drill: bool = False


@dataclass(frozen=True)
class MapTile:
    """One background tile: an ``<image>`` at (x, y), ``size`` wide and high."""

    href: str
    x: float
    y: float
    size: float


@dataclass(frozen=True)
class BoardMap:
    """Everything the template draws; ``unplaced`` lists incidents with no spot on it."""

    width: int
    height: int
    areas: tuple[MapArea, ...]
    markers: tuple[MapMarker, ...]
    tiles: tuple[MapTile, ...]
    unplaced: tuple[int, ...]


@dataclass(frozen=True)
class _Frame:
    """Which part of the world the SVG shows, and at what scale (SVG units per world unit)."""

    min_x: float
    min_y: float
    scale: float
    width: int
    height: int

    def to_svg(self, world: _Coordinates) -> _Coordinates:
        """World units to viewBox units (shapely.transform calls this with an (N, 2) array)."""
        svg: _Coordinates = (world - np.array([self.min_x, self.min_y])) * self.scale
        return svg

    def contains(self, x: float, y: float) -> bool:
        """Whether a viewBox point is visible; points off the picture are not drawn."""
        return 0.0 <= x <= self.width and 0.0 <= y <= self.height


# --------------------------------------------------------------------------
# public API


def build_map(
    areas: Sequence[AreaShape],
    incidents: Sequence[IncidentPoint],
    *,
    tile_url: str | None = None,
    width: int = 640,
    max_tiles: int = MAX_TILES,
) -> BoardMap:
    """Lay out areas, incidents and (if a tile server is configured) tiles for one SVG.

    The view is the bounding box of all area geometries plus a margin; incidents outside
    it are not stretched to fit (one wrong phone location would shrink every area to a
    dot) but listed in ``unplaced``, like incidents with neither location nor area.
    The result depends only on the input, never on its order, so a page that refreshes
    does not shuffle markers around.

    Raises:
        ValueError: If ``width`` or ``max_tiles`` is below 1, or ``tile_url`` is not a
            usable template (see :func:`tile_origin`).
    """
    if width < 1:
        raise ValueError("the map width must be at least 1")
    if max_tiles < 1:
        raise ValueError("the tile cap must be at least 1")
    tile_origin(tile_url)  # refuse a bad template even when there is nothing to draw
    shapes = [
        (area, world) for area in areas if (world := _world_geometry(area.geometry)) is not None
    ]
    if not shapes:
        return _empty_map(width, incidents)
    min_x, min_y, max_x, max_y = shapely.total_bounds([world for _area, world in shapes])
    frame = _frame_for((float(min_x), float(min_y), float(max_x), float(max_y)), width)
    counts = _incident_counts(incidents)
    anchors: dict[int, tuple[float, float]] = {}
    map_areas = []
    for area, world in shapes:
        map_area = _map_area(area, shapely.transform(world, frame.to_svg), counts)
        anchors.setdefault(area.id, (map_area.label_x, map_area.label_y))
        map_areas.append(map_area)
    markers, unplaced = _place_incidents(incidents, anchors, frame)
    tiles = _tiles(tile_url, frame, max_tiles) if tile_url else ()
    return BoardMap(
        width=frame.width,
        height=frame.height,
        areas=tuple(map_areas),
        markers=markers,
        tiles=tiles,
        unplaced=unplaced,
    )


def tile_origin(tile_url: str | None) -> str | None:
    """The ``scheme://host[:port]`` of a tile template, for the CSP ``img-src``.

    Called by the settings loader so that a bad ``MAP_TILE_URL`` stops the app at
    start-up rather than leaving dispatchers with a blank map.  The messages never
    repeat the URL: tile templates often carry an API key.

    Returns:
        The origin, or ``None`` when no template is configured (``None`` or empty).

    Raises:
        ValueError: If the template is not http(s), has no plain host (``{s}``
            subdomains cannot be named in a CSP), carries a user name or password,
            contains spaces or quotes, or lacks one of ``{z}``, ``{x}`` and ``{y}``.
    """
    if not tile_url:
        return None
    if _UNSAFE_CHARACTERS.search(tile_url):
        raise ValueError("the tile URL template must not contain spaces, quotes or backslashes")
    parts = urlsplit(tile_url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError("the tile URL template must start with http:// or https://")
    if "@" in parts.netloc:
        raise ValueError("the tile URL template must not contain a user name or password")
    netloc = parts.netloc.lower()
    found = _HOST_AND_PORT.fullmatch(netloc)
    if found is None or not 0 < int(found["port"] or 443) < 65536:
        raise ValueError(
            "the tile URL template must name a fixed host (and optional port); "
            "placeholders such as {s} are not allowed in the host"
        )
    _check_placeholders(tile_url)
    return f"{parts.scheme.lower()}://{netloc}"


# --------------------------------------------------------------------------
# geometry


def _world_geometry(geometry: Mapping[str, Any] | None) -> Any:
    """A stored GeoJSON boundary in world units, or None if it cannot be drawn.

    Stored geometries passed region-pack validation, but the board must never fail
    because one row was edited by hand: anything unusable is simply not drawn.
    """
    if not isinstance(geometry, Mapping) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        return None
    try:
        parsed = shapely.force_2d(shape(geometry))
        if not parsed.is_valid:
            parsed = _polygonal(shapely.make_valid(parsed))
    except (ShapelyError, ValueError, TypeError, KeyError, IndexError):
        return None
    if parsed is None or parsed.is_empty or not all(map(math.isfinite, parsed.bounds)):
        return None
    return shapely.transform(parsed, _lonlat_to_world)


def _polygonal(geometry: Any) -> Any:
    """The polygons of a repaired geometry (make_valid may add stray lines or points)."""
    if isinstance(geometry, (Polygon, MultiPolygon)):
        return geometry
    polygons = [part for part in getattr(geometry, "geoms", ()) if isinstance(part, Polygon)]
    return MultiPolygon(polygons) if polygons else None


def _lonlat_to_world(lonlat: _Coordinates) -> _Coordinates:
    """Web Mercator into the unit square, y growing southwards as tile rows do."""
    x = (lonlat[:, 0] + 180.0) / 360.0
    latitude = np.radians(np.clip(lonlat[:, 1], -_MAX_LATITUDE, _MAX_LATITUDE))
    y = 0.5 - np.log(np.tan(np.pi / 4.0 + latitude / 2.0)) / (2.0 * np.pi)
    return np.column_stack((x, y))


def _frame_for(bounds: tuple[float, float, float, float], width: int) -> _Frame:
    """Fit the world-unit box (plus margin) to ``width``, keeping a sane aspect ratio.

    A region that is very tall and thin (or wide and flat) is padded on the short side
    rather than given a page-long or sliver-thin map.
    """
    min_x, min_y, max_x, max_y = bounds
    span_x, span_y = max(max_x - min_x, _MIN_SPAN), max(max_y - min_y, _MIN_SPAN)
    margin = _MARGIN * max(span_x, span_y)
    span_x, span_y = span_x + 2 * margin, span_y + 2 * margin
    span_x = max(span_x, span_y / _MAX_ASPECT)
    span_y = max(span_y, span_x * _MIN_ASPECT)
    scale = width / span_x
    height = max(1, round(span_y * scale))
    center_x, center_y = (min_x + max_x) / 2, (min_y + max_y) / 2
    return _Frame(
        min_x=center_x - span_x / 2,
        min_y=center_y - height / scale / 2,
        scale=scale,
        width=width,
        height=height,
    )


def _empty_map(width: int, incidents: Sequence[IncidentPoint]) -> BoardMap:
    """Nothing to draw on (no area has a boundary): every incident is unplaced."""
    return BoardMap(
        width=width,
        height=max(1, round(width * _EMPTY_ASPECT)),
        areas=(),
        markers=(),
        tiles=(),
        unplaced=tuple(sorted(incident.id for incident in incidents)),
    )


# --------------------------------------------------------------------------
# areas


def _map_area(area: AreaShape, svg: Any, counts: Mapping[int, int]) -> MapArea:
    """An area's outline and label spot; the spot is inside the outline as drawn."""
    point = svg.representative_point()
    return MapArea(
        id=area.id,
        name=area.name,
        path=_svg_path(svg),
        label_x=round(point.x, 1),
        label_y=round(point.y, 1),
        incident_count=counts.get(area.id, 0),
    )


def _incident_counts(incidents: Sequence[IncidentPoint]) -> dict[int, int]:
    """How many real incidents each area has, drawn or not (a drill is no incident there)."""
    counts: dict[int, int] = {}
    for incident in incidents:
        if incident.area_id is not None and not incident.drill:
            counts[incident.area_id] = counts.get(incident.area_id, 0) + 1
    return counts


def _svg_path(geometry: Any) -> str:
    """An SVG path ``d`` for a Polygon/MultiPolygon; holes are separate subpaths.

    The stylesheet fills with ``evenodd``, so holes show whichever way rings turn.
    """
    polygons = geometry.geoms if isinstance(geometry, MultiPolygon) else (geometry,)
    rings = (ring for polygon in polygons for ring in (polygon.exterior, *polygon.interiors))
    return "".join(_ring_path(ring.coords) for ring in rings)


def _ring_path(coords: Sequence[tuple[float, float]]) -> str:
    """One closed subpath, dropping points that round onto their predecessor."""
    points: list[str] = []
    for x, y in coords:
        point = f"{_number(x)},{_number(y)}"
        if not points or points[-1] != point:
            points.append(point)
    if len(points) > 1 and points[0] == points[-1]:
        points.pop()  # "Z" closes the ring
    return f"M{'L'.join(points)}Z" if points else ""


def _number(value: float) -> str:
    """A coordinate with one decimal and no needless ``.0`` or ``-0``: pages stay small."""
    text = f"{value:.1f}".removesuffix(".0")
    return "0" if text == "-0" else text


# --------------------------------------------------------------------------
# incidents


def _place_incidents(
    incidents: Sequence[IncidentPoint],
    anchors: Mapping[int, tuple[float, float]],
    frame: _Frame,
) -> tuple[tuple[MapMarker, ...], tuple[int, ...]]:
    """Markers for the incidents that have a spot on the map, and the ids of the rest.

    Incidents sharing a spot (e.g. several without a location in one area) fan out on
    a small spiral, in id order, so each dot can still be seen and clicked.
    """
    spots: dict[tuple[float, float], list[IncidentPoint]] = {}
    unplaced: list[int] = []
    for incident in sorted(incidents, key=lambda item: item.id):
        spot = _spot(incident, anchors, frame)
        if spot is None:
            unplaced.append(incident.id)
        else:
            spots.setdefault(spot, []).append(incident)
    markers = [
        _marker(incident, x, y, index, frame)
        for (x, y), group in spots.items()
        for index, incident in enumerate(group)
    ]
    markers.sort(key=lambda marker: (_DRAW_ORDER.get(marker.state, 3), marker.incident_id))
    return tuple(markers), tuple(unplaced)


def _spot(
    incident: IncidentPoint, anchors: Mapping[int, tuple[float, float]], frame: _Frame
) -> tuple[float, float] | None:
    """Where an incident belongs: its own location, else its area's, else nowhere.

    A usable location off the picture is not moved into its area: a dot in the wrong
    place misleads a dispatcher more than an entry in the "not on the map" list.
    """
    lonlat = _location(incident)
    if lonlat is not None:
        x, y = (float(value) for value in frame.to_svg(_lonlat_to_world(np.array([lonlat])))[0])
        return (round(x, 1), round(y, 1)) if frame.contains(x, y) else None
    if incident.area_id is not None:
        return anchors.get(incident.area_id)
    return None


def _location(incident: IncidentPoint) -> tuple[float, float] | None:
    """The incident's (longitude, latitude), unless missing, half missing or impossible."""
    lat, lon = incident.latitude, incident.longitude
    if lat is None or lon is None or not (math.isfinite(lat) and math.isfinite(lon)):
        return None
    if abs(lat) > 90.0 or abs(lon) > 180.0:
        return None
    return (float(lon), float(lat))


def _marker(incident: IncidentPoint, x: float, y: float, index: int, frame: _Frame) -> MapMarker:
    """A marker at the ``index``-th place of the spiral around (x, y), kept on the map."""
    dx, dy = _spiral_offset(index)
    return MapMarker(
        incident_id=incident.id,
        code=incident.code,
        state=_state_name(incident.state),
        x=round(min(max(x + dx, 0.0), frame.width), 1),
        y=round(min(max(y + dy, 0.0), frame.height), 1),
        drill=incident.drill,
    )


def _spiral_offset(index: int) -> tuple[float, float]:
    """A sunflower (Vogel) spiral: even spacing however many share a spot; 0 stays put."""
    radius = _SPIRAL_STEP * math.sqrt(index)
    angle = index * _GOLDEN_ANGLE
    return (radius * math.cos(angle), radius * math.sin(angle))


def _state_name(state: object) -> str:
    """The plain state value, also for an ``IncidentState`` member.

    ``str()`` of a ``(str, Enum)`` member is ``"IncidentState.REPORTED"``, which would
    silently break the ``state-...`` CSS class.
    """
    value = getattr(state, "value", state)
    return str(value)


# --------------------------------------------------------------------------
# tiles


def _tiles(template: str, frame: _Frame, max_tiles: int) -> tuple[MapTile, ...]:
    """The tiles covering the view, at the zoom where a tile is about 256 px wide.

    If that takes more than ``max_tiles`` tiles (a big map of a big region), the zoom
    is lowered until it does not: each request tells the tile server where we look.
    """
    zoom = _ideal_zoom(frame.scale)
    columns, rows = _tile_ranges(frame, zoom)
    while len(columns) * len(rows) > max_tiles and zoom > 0:
        zoom -= 1
        columns, rows = _tile_ranges(frame, zoom)
    size = frame.scale / 2**zoom
    drawn = math.ceil((size + 0.1) * 10) / 10  # a hair of overlap hides seams from rounding
    return tuple(
        MapTile(
            href=_tile_href(template, zoom, column, row),
            x=round((column / 2**zoom - frame.min_x) * frame.scale, 1),
            y=round((row / 2**zoom - frame.min_y) * frame.scale, 1),
            size=drawn,
        )
        for row in rows
        for column in columns
    )


def _ideal_zoom(scale: float) -> int:
    """The zoom at which one tile spans about TILE_PIXELS viewBox units."""
    return min(max(round(math.log2(scale / TILE_PIXELS)), 0), MAX_ZOOM)


def _tile_ranges(frame: _Frame, zoom: int) -> tuple[range, range]:
    """Tile columns and rows (slippy-map numbering) that the frame overlaps."""
    count = 2**zoom
    max_x = frame.min_x + frame.width / frame.scale
    max_y = frame.min_y + frame.height / frame.scale

    def span(low: float, high: float) -> range:
        first = min(max(math.floor(low * count), 0), count - 1)
        last = min(max(math.ceil(high * count) - 1, first), count - 1)
        return range(first, last + 1)

    return span(frame.min_x, max_x), span(frame.min_y, max_y)


def _tile_href(template: str, zoom: int, column: int, row: int) -> str:
    """Fill in an XYZ template."""
    return template.replace("{z}", str(zoom)).replace("{x}", str(column)).replace("{y}", str(row))


def _check_placeholders(template: str) -> None:
    """Exactly the XYZ placeholders, each present; anything else would fetch nonsense."""
    found = set(_PLACEHOLDER.findall(template))
    if not found >= _REQUIRED_PLACEHOLDERS:
        raise ValueError("the tile URL template must contain {z}, {x} and {y}")
    rest = _PLACEHOLDER.sub("", template)
    if found - _REQUIRED_PLACEHOLDERS or "{" in rest or "}" in rest:
        raise ValueError("the tile URL template may only use the placeholders {z}, {x} and {y}")
