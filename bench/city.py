"""A city's neighbourhood file, made up but shaped like a real open-data export.

About a hundred areas that tile the city exactly (every border shared by its two sides,
vertex for vertex), borders that wander like streets and creeks do, and as much detail
as asked: a city's export at full detail runs to several megabytes. Names are Portland's
official neighbourhood names, so text placement meets the same streets-and-words
trouble a real file brings (Russell, Multnomah, King, Reed, Woodstock...). There are no
aliases and no ZIPs, as in a city's file.

Used by the inbound benchmark and by the region import tests.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import shapely
from shapely.geometry import LineString, MultiLineString, Point, box, mapping

# Portland, Oregon, roughly: west, south, east, north.
BOUNDS = (-122.84, 45.43, -122.47, 45.65)

NAMES = """Alameda|Arbor Lodge|Ardenwald-Johnson Creek|Argay|Arlington Heights|Arnold Creek|
Ashcreek|Beaumont-Wilshire|Boise|Brentwood-Darlington|Bridgeton|Bridlemile|Brooklyn|Buckman|
Cathedral Park|Centennial|Collins View|Concordia|Creston-Kenilworth|Crestwood|Cully|Downtown|
East Columbia|Eastmoreland|Eliot|Far Southwest|Forest Park|Foster-Powell|Glenfair|
Goose Hollow|Grant Park|Hayden Island|Hayhurst|Hazelwood|Healy Heights|Hillsdale|Hillside|
Hollywood|Homestead|Hosford-Abernethy|Humboldt|Irvington|Kenton|Kerns|King|Laurelhurst|Lents|
Linnton|Lloyd District|Madison South|Maplewood|Markham|Marshall Park|Mill Park|Montavilla|
Mt. Scott-Arleta|Mt. Tabor|Multnomah|North Tabor|Northwest District|Northwest Heights|
Old Town Chinatown|Overlook|Parkrose|Parkrose Heights|Pearl District|Piedmont|
Pleasant Valley|Portsmouth|Powellhurst-Gilbert|Reed|Richmond|Rose City Park|Roseway|Russell|
Sabin|Sellwood-Moreland|South Burlingame|South Portland|South Tabor|Southwest Hills|
St. Johns|Sullivan's Gulch|Sumner|Sunderland|Sunnyside|Sylvan-Highlands|Vernon|
West Portland Park|Wilkes|Woodland Park|Woodlawn|Woodstock|University Park|Hillsboro Ridge|
Wellington|Errol Heights|Lower Brentwood"""


def area_names() -> list[str]:
    return [name.strip() for name in NAMES.replace("\n", "").split("|") if name.strip()]


def make_city(seed: int = 1, detail_m: float = 60.0, wander_m: float = 25.0) -> dict[str, Any]:
    """The city as a GeoJSON FeatureCollection (a dict).

    Args:
        seed: the same seed gives the same city.
        detail_m: distance between boundary points; 60 m gives about 0.8 MB for the
            whole city, 5 m about 10 MB.
        wander_m: how far a border strays from a straight line.
    """
    chance = random.Random(seed)
    names = area_names()
    west, south, east, north = BOUNDS
    outline = box(west, south, east, north)
    seeds = shapely.MultiPoint(
        [Point(chance.uniform(west, east), chance.uniform(south, north)) for _ in names]
    )
    edges = shapely.voronoi_polygons(seeds, extend_to=outline, only_edges=True)
    inside = shapely.intersection(edges, outline)
    step = detail_m / 111_320.0
    wander = wander_m / 111_320.0
    borders = [_wandering(line, step, wander, chance) for line in _lines(inside)]
    borders.extend(_lines(outline.boundary.segmentize(step)))
    # Noded first (where a border meets another, both get the point), so that every
    # cell closes and two neighbours share each border point for point.
    noded = shapely.union_all(borders)
    pieces = sorted(shapely.get_parts(shapely.polygonize(_lines(noded))), key=_size)[-len(names) :]
    pieces.sort(key=lambda piece: (round(piece.centroid.y, 4), round(piece.centroid.x, 4)))
    features = [
        {"type": "Feature", "properties": {"name": name}, "geometry": mapping(piece)}
        for name, piece in zip(names, pieces, strict=False)
    ]
    # Through JSON and back: lists, not tuples, exactly as a file would be read.
    collection: dict[str, Any] = json.loads(
        json.dumps({"type": "FeatureCollection", "features": features})
    )
    return collection


def _size(piece: Any) -> float:
    return float(piece.area)


def write_city(path: Path, **options: Any) -> Path:
    path.write_text(json.dumps(make_city(**options)))
    return path


def _lines(geometry: Any) -> list[LineString]:
    if isinstance(geometry, LineString):
        return [geometry]
    if isinstance(geometry, MultiLineString):
        return list(geometry.geoms)
    return [line for part in shapely.get_parts(geometry) for line in _lines(part)]


def _wandering(line: LineString, step: float, wander: float, chance: random.Random) -> LineString:
    """The line with a point every ``step``, each pushed sideways (the ends stay put, so
    the borders still meet), as a real border follows streets and creeks."""
    count = max(2, math.ceil(line.length / step) + 1)
    (x0, y0), (x1, y1) = line.coords[0], line.coords[-1]
    length = math.hypot(x1 - x0, y1 - y0) or 1.0
    normal = (-(y1 - y0) / length, (x1 - x0) / length)
    phase, waves = chance.uniform(0, math.tau), chance.randint(2, 6)
    points = []
    for n in range(count):
        t = n / (count - 1)
        offset = wander * math.sin(math.pi * t) * math.sin(phase + waves * math.pi * t)
        offset += wander * 0.2 * chance.uniform(-1, 1) * math.sin(math.pi * t)
        points.append(
            (x0 + (x1 - x0) * t + normal[0] * offset, y0 + (y1 - y0) * t + normal[1] * offset)
        )
    return LineString(points)
