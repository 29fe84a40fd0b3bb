"""The board map: projection, markers, tiles and the tile-server setting."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

import pytest

from rapidresponse.mapping import (
    MAX_TILES,
    AreaShape,
    BoardMap,
    IncidentPoint,
    MapArea,
    MapTile,
    build_map,
    tile_origin,
)
from rapidresponse.models import IncidentState
from rapidresponse.regions import demo_region_path, load_region_file

OSM = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def square(lon: float, lat: float, size: float = 0.01) -> dict[str, Any]:
    """A GeoJSON square with its south-west corner at (lon, lat)."""
    ring = [
        [lon, lat],
        [lon + size, lat],
        [lon + size, lat + size],
        [lon, lat + size],
        [lon, lat],
    ]
    return {"type": "Polygon", "coordinates": [ring]}


def incident(
    id: int,
    area_id: int | None = None,
    lat: float | None = None,
    lon: float | None = None,
    state: str = "reported",
) -> IncidentPoint:
    return IncidentPoint(
        id=id, code=f"K{id:03d}", state=state, area_id=area_id, latitude=lat, longitude=lon
    )


# A 2x2 grid of neighbourhoods in Portland: 1 north-west, 2 north-east, 3 south-west,
# 4 south-east.
GRID = (
    AreaShape(1, "Northwest", square(-122.70, 45.52)),
    AreaShape(2, "Northeast", square(-122.68, 45.52)),
    AreaShape(3, "Southwest", square(-122.70, 45.50)),
    AreaShape(4, "Southeast", square(-122.68, 45.50)),
)


def points(path: str) -> list[tuple[float, float]]:
    numbers = [float(n) for n in NUMBER.findall(path)]
    assert len(numbers) % 2 == 0, path
    return list(zip(numbers[::2], numbers[1::2], strict=True))


def bbox(path: str) -> tuple[float, float, float, float]:
    xs, ys = zip(*points(path), strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def area_named(board: BoardMap, name: str) -> MapArea:
    return next(area for area in board.areas if area.name == name)


def inside(x: float, y: float, box: tuple[float, float, float, float]) -> bool:
    return box[0] <= x <= box[2] and box[1] <= y <= box[3]


# --- projection ----------------------------------------------------------------------


def test_north_is_up_and_east_is_right() -> None:
    board = build_map(GRID, [])
    nw, ne = area_named(board, "Northwest"), area_named(board, "Northeast")
    sw, se = area_named(board, "Southwest"), area_named(board, "Southeast")
    assert nw.label_y < sw.label_y and ne.label_y < se.label_y
    assert ne.label_x > nw.label_x and se.label_x > sw.label_x
    assert bbox(nw.path)[3] <= bbox(sw.path)[1] + 0.2  # the north row lies wholly above
    assert bbox(nw.path)[2] <= bbox(ne.path)[0] + 0.2


def test_the_map_fills_the_width_with_a_margin_and_keeps_the_aspect_ratio() -> None:
    board = build_map(GRID, [], width=800)
    assert board.width == 800
    everything = [point for area in board.areas for point in points(area.path)]
    xs, ys = zip(*everything, strict=True)
    assert 0 < min(xs) < 80 and 720 < max(xs) < 800
    assert min(ys) > 0 and max(ys) < board.height
    # The grid is 0.03 degrees wide and high, and at this latitude Mercator stretches
    # latitude by 1/cos(45.515): a shape about 0.7 : 1, not square.
    drawn_ratio = (max(xs) - min(xs)) / (max(ys) - min(ys))
    assert drawn_ratio == pytest.approx(math.cos(math.radians(45.515)), rel=0.01)


def test_paths_are_closed_and_rounded_to_one_decimal() -> None:
    board = build_map(GRID, [])
    for area in board.areas:
        assert area.path.startswith("M") and area.path.endswith("Z")
        assert all(len(n.partition(".")[2]) <= 1 for n in NUMBER.findall(area.path))
        assert len(points(area.path)) == 4  # the closing point is "Z", not repeated


def test_a_hole_and_every_part_of_a_multipolygon_are_drawn() -> None:
    outer = square(-122.70, 45.50, 0.04)["coordinates"][0]
    hole = square(-122.69, 45.51, 0.01)["coordinates"][0]
    islands = {
        "type": "MultiPolygon",
        "coordinates": [
            square(-122.64, 45.50)["coordinates"],
            square(-122.62, 45.52)["coordinates"],
        ],
    }
    board = build_map(
        [
            AreaShape(1, "Donut", {"type": "Polygon", "coordinates": [outer, hole]}),
            AreaShape(2, "Islands", islands),
        ],
        [],
    )
    assert area_named(board, "Donut").path.count("M") == 2
    assert area_named(board, "Islands").path.count("M") == 2


def test_areas_without_a_usable_geometry_are_skipped() -> None:
    bowtie = {
        "type": "Polygon",
        "coordinates": [[[-122.6, 45.5], [-122.59, 45.51], [-122.59, 45.5], [-122.6, 45.51]]],
    }
    areas = [
        *GRID,
        AreaShape(5, "No boundary", None),
        AreaShape(6, "A point", {"type": "Point", "coordinates": [-122.6, 45.5]}),
        AreaShape(7, "Garbage", {"type": "Polygon", "coordinates": "nonsense"}),
        AreaShape(8, "Bowtie", bowtie),
    ]
    board = build_map(areas, [incident(1, area_id=5)])
    names = [area.name for area in board.areas]
    assert names[:4] == ["Northwest", "Northeast", "Southwest", "Southeast"]
    assert "No boundary" not in names and "A point" not in names and "Garbage" not in names
    assert board.unplaced == (1,)  # its area is not drawn, and it has no location


# --- markers -------------------------------------------------------------------------


def test_an_incident_with_a_location_is_drawn_there() -> None:
    board = build_map(GRID, [incident(1, lat=45.525, lon=-122.675)])
    (marker,) = board.markers
    assert inside(marker.x, marker.y, bbox(area_named(board, "Northeast").path))
    assert board.unplaced == ()


def test_an_incident_with_only_an_area_is_drawn_inside_that_area() -> None:
    incidents = [incident(n, area_id=1 + n % 4) for n in range(12)]
    board = build_map(GRID, incidents)
    assert len(board.markers) == 12
    for marker in board.markers:
        area_id = 1 + marker.incident_id % 4
        (area,) = (area for area in board.areas if area.id == area_id)
        assert inside(marker.x, marker.y, bbox(area.path)), (marker, area.name)


def test_incidents_sharing_a_spot_do_not_cover_each_other() -> None:
    board = build_map(GRID, [incident(n, area_id=2) for n in range(6)])
    spots = {(marker.x, marker.y) for marker in board.markers}
    assert len(spots) == 6
    first = next(marker for marker in board.markers if marker.incident_id == 0)
    ne = area_named(board, "Northeast")
    assert (first.x, first.y) == (ne.label_x, ne.label_y)  # the first stays on the spot
    two_with_one_location = build_map(
        GRID, [incident(1, lat=45.525, lon=-122.675), incident(2, lat=45.525, lon=-122.675)]
    )
    a, b = two_with_one_location.markers
    assert (a.x, a.y) != (b.x, b.y)


def test_incidents_that_cannot_be_placed_are_listed() -> None:
    incidents = [
        incident(9),  # neither location nor area
        incident(3, area_id=99),  # an area the map does not know
        incident(7, lat=40.7, lon=-74.0),  # New York: far off this map
        incident(5, lat=45.505, lon=None, area_id=None),  # half a location
        incident(1, area_id=3),  # placed
    ]
    board = build_map(GRID, incidents)
    assert board.unplaced == (3, 5, 7, 9)
    assert [marker.incident_id for marker in board.markers] == [1]


def test_an_impossible_location_falls_back_to_the_area() -> None:
    broken = [
        incident(1, area_id=4, lat=math.nan, lon=-122.675),
        incident(2, area_id=4, lat=45.505, lon=math.inf),
        incident(3, area_id=4, lat=123.0, lon=-122.675),
    ]
    board = build_map(GRID, broken)
    assert board.unplaced == ()
    se = bbox(area_named(board, "Southeast").path)
    assert all(inside(marker.x, marker.y, se) for marker in board.markers)


def test_incident_counts_per_area() -> None:
    incidents = [
        incident(1, area_id=1),
        incident(2, area_id=1, lat=45.525, lon=-122.695),
        incident(3, area_id=4),
        incident(4),
    ]
    counts = {area.name: area.incident_count for area in build_map(GRID, incidents).areas}
    assert counts == {"Northwest": 2, "Northeast": 0, "Southwest": 0, "Southeast": 1}


def test_markers_carry_the_plain_state_even_from_the_enum() -> None:
    point = replace(incident(1, area_id=1), state=IncidentState.FALSE_ALARM)
    (marker,) = build_map(GRID, [point]).markers
    assert marker.state == "false_alarm"
    assert marker.code == "K001"


def test_incidents_needing_action_are_drawn_last_so_they_sit_on_top() -> None:
    states = ["reported", "closed", "confirmed", "false_alarm"]
    board = build_map(GRID, [incident(n, area_id=1, state=s) for n, s in enumerate(states)])
    drawn = [marker.state for marker in board.markers]
    assert drawn[0] == "closed" and drawn[-1] == "confirmed"


# --- empty input and determinism -----------------------------------------------------


def test_no_areas_is_an_empty_map_with_every_incident_unplaced() -> None:
    board = build_map([], [incident(2, lat=45.5, lon=-122.6), incident(1, area_id=1)], tile_url=OSM)
    assert board.width == 640 and 0 < board.height <= 640
    assert board.areas == () and board.markers == () and board.tiles == ()
    assert board.unplaced == (1, 2)
    assert build_map([], []) == replace(board, unplaced=())
    assert build_map([AreaShape(1, "Nowhere", None)], []).areas == ()


def test_a_bad_width_is_refused() -> None:
    with pytest.raises(ValueError, match="width"):
        build_map(GRID, [], width=0)


def test_the_same_input_in_any_order_gives_the_same_map() -> None:
    incidents = [incident(n, area_id=1 + n % 4, state="dispatched") for n in range(10)]
    incidents.append(incident(42, lat=45.515, lon=-122.685))
    first = build_map(GRID, incidents, tile_url=OSM)
    assert build_map(GRID, incidents, tile_url=OSM) == first
    assert build_map(GRID, list(reversed(incidents)), tile_url=OSM) == first


def test_one_very_small_area_still_gets_a_map() -> None:
    tiny = build_map([AreaShape(1, "Block", square(-122.6, 45.5, 0.00001))], [incident(1, 1)])
    assert tiny.height > 0 and tiny.areas[0].path and len(tiny.markers) == 1
    xs, ys = zip(*points(tiny.areas[0].path), strict=True)
    assert all(math.isfinite(v) for v in xs + ys)


def test_a_long_thin_region_is_padded_not_stretched() -> None:
    strip = {
        "type": "Polygon",
        "coordinates": [[[-122.7, 45.0], [-122.69, 45.0], [-122.69, 46.0], [-122.7, 46.0]]],
    }
    board = build_map([AreaShape(1, "Strip", strip)], [], width=600)
    assert board.height <= 2 * 600


# --- tiles ---------------------------------------------------------------------------


def slippy_tile(lat: float, lon: float, zoom: int) -> tuple[int, int]:
    """The OpenStreetMap wiki's formula, written independently of the module."""
    n = 2**zoom
    lat_rad = math.radians(lat)
    return (
        int((lon + 180.0) / 360.0 * n),
        int((1.0 - math.asinh(math.tan(lat_rad)) / math.pi) / 2.0 * n),
    )


def zoom_of(tile: MapTile) -> int:
    return int(tile.href.split("/")[-3])


def test_no_tiles_unless_a_tile_server_is_configured() -> None:
    assert build_map(GRID, []).tiles == ()
    assert build_map(GRID, [], tile_url=None).tiles == ()


def test_tiles_cover_the_whole_map_at_about_256_pixels() -> None:
    board = build_map(GRID, [], tile_url=OSM)
    assert board.tiles
    assert len({zoom_of(tile) for tile in board.tiles}) == 1
    size = board.tiles[0].size
    assert 256 / math.sqrt(2) - 1 <= size <= 256 * math.sqrt(2) + 1
    for tile in board.tiles:
        assert re.fullmatch(r"https://tile\.openstreetmap\.org/\d+/\d+/\d+\.png", tile.href)
        assert tile.size == size
    # Every point of the view lies on some tile.
    for x in range(0, board.width + 1, 8):
        for y in range(0, board.height + 1, 8):
            assert any(inside(x, y, (t.x, t.y, t.x + t.size, t.y + t.size)) for t in board.tiles)
    # And no tile lies wholly outside it.
    for t in board.tiles:
        assert t.x < board.width and t.y < board.height
        assert t.x + t.size > 0 and t.y + t.size > 0


def test_tiles_line_up_with_the_areas() -> None:
    lat, lon = 45.515, -122.685
    board = build_map(GRID, [incident(1, lat=lat, lon=lon)], tile_url=OSM)
    (marker,) = board.markers
    zoom = zoom_of(board.tiles[0])
    column, row = slippy_tile(lat, lon, zoom)
    (tile,) = (t for t in board.tiles if t.href.endswith(f"/{zoom}/{column}/{row}.png"))
    assert inside(marker.x, marker.y, (tile.x, tile.y, tile.x + tile.size, tile.y + tile.size))


def test_the_tile_count_is_capped_by_lowering_the_zoom() -> None:
    wide = build_map(GRID, [], tile_url=OSM, width=5000)
    assert 0 < len(wide.tiles) <= MAX_TILES
    assert wide.tiles[0].size > 256 * math.sqrt(2)  # the zoom had to come down
    few = build_map(GRID, [], tile_url=OSM, max_tiles=2)
    assert 0 < len(few.tiles) <= 2
    assert zoom_of(few.tiles[0]) < zoom_of(build_map(GRID, [], tile_url=OSM).tiles[0])


def test_the_template_keeps_its_query_string() -> None:
    board = build_map(GRID, [], tile_url="https://tiles.example.org:8443/osm/{z}/{x}/{y}?key=abc")
    assert all(
        re.fullmatch(r"https://tiles\.example\.org:8443/osm/\d+/\d+/\d+\?key=abc", t.href)
        for t in board.tiles
    )


# --- the tile server setting ---------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "origin"),
    [
        (OSM, "https://tile.openstreetmap.org"),
        ("http://localhost:8080/tiles/{z}/{x}/{y}.png", "http://localhost:8080"),
        (
            "HTTPS://Tiles.Example.ORG/{z}/{y}/{x}@2x.png?api_key=s3cret",
            "https://tiles.example.org",
        ),
        ("https://[::1]:9000/{z}/{x}/{y}", "https://[::1]:9000"),
    ],
)
def test_tile_origin_of_good_templates(template: str, origin: str) -> None:
    assert tile_origin(template) == origin


def test_no_template_has_no_origin() -> None:
    assert tile_origin(None) is None
    assert tile_origin("") is None


@pytest.mark.parametrize(
    "template",
    [
        "ftp://tiles.example.org/{z}/{x}/{y}.png?key=s3cret",
        "javascript:alert('{z}{x}{y}s3cret')",
        "tiles.example.org/{z}/{x}/{y}.png?key=s3cret",
        "https://tiles.example.org/{z}/{x}.png?key=s3cret",
        "https://tiles.example.org/tile.png?key=s3cret",
        "https://{s}.tile.example.org/{z}/{x}/{y}.png?key=s3cret",
        "https://tiles.example.org/{z}/{x}/{y}/{r}.png?key=s3cret",
        "https://tiles.example.org/{z}/{x}/{y}.png?key={s3cret",
        "https://user:s3cret@tiles.example.org/{z}/{x}/{y}.png",
        "https://tiles.example.org:99999/{z}/{x}/{y}.png?key=s3cret",
        "https://tiles.example.org; script-src *; /{z}/{x}/{y}?key=s3cret",
        "https://tiles.example.org/{z}/{x}/{y}.png?key=s3cret\r\nSet-Cookie: a",
        "https:///{z}/{x}/{y}.png?key=s3cret",
    ],
)
def test_tile_origin_refuses_bad_templates_without_repeating_them(template: str) -> None:
    with pytest.raises(ValueError, match="tile URL template") as raised:
        tile_origin(template)
    assert "s3cret" not in str(raised.value)


def test_build_map_refuses_a_bad_template_too() -> None:
    with pytest.raises(ValueError, match="tile URL template"):
        build_map(GRID, [], tile_url="https://tiles.example.org/{z}/{x}.png")
    with pytest.raises(ValueError, match="tile URL template"):
        build_map([], [], tile_url="ftp://tiles.example.org/{z}/{x}/{y}.png")


# --- the demo region -----------------------------------------------------------------


def test_every_demo_area_is_drawn_with_finite_numbers() -> None:
    specs = load_region_file(demo_region_path())
    areas = [AreaShape(n, spec.name, spec.geojson()) for n, spec in enumerate(specs, start=1)]
    incidents = [incident(n, area_id=n) for n in range(1, len(areas) + 1)]
    board = build_map(areas, incidents, tile_url=OSM)
    assert len(board.areas) == len(specs) > 0
    assert board.unplaced == ()
    numbers: list[float] = [board.width, board.height]
    for area in board.areas:
        assert area.path and len(points(area.path)) >= 3, area.name
        numbers += [value for point in points(area.path) for value in point]
        numbers += [area.label_x, area.label_y]
        assert 0 <= area.label_x <= board.width and 0 <= area.label_y <= board.height
    for marker in board.markers:
        numbers += [marker.x, marker.y]
        area = next(a for a in board.areas if a.id == marker.incident_id)
        assert inside(marker.x, marker.y, bbox(area.path)), area.name
    for tile in board.tiles:
        numbers += [tile.x, tile.y, tile.size]
    assert all(math.isfinite(value) for value in numbers)
    assert 0 < len(board.tiles) <= MAX_TILES


def test_a_drill_has_its_own_marker_and_is_no_incident_of_its_area() -> None:
    real = incident(1, area_id=1, lat=45.525, lon=-122.695)
    drill = replace(incident(2, area_id=2, lat=45.525, lon=-122.675), drill=True)
    board = build_map(GRID, [real, drill])
    markers = {marker.incident_id: marker for marker in board.markers}
    assert (markers[1].drill, markers[2].drill) == (False, True)
    assert area_named(board, "Northwest").incident_count == 1
    assert area_named(board, "Northeast").incident_count == 0  # nothing real there
