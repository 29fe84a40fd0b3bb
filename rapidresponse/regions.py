"""Region packs: parse GeoJSON neighborhood boundaries into area specs.

A *region pack* is a GeoJSON ``FeatureCollection`` in which every feature is
one neighborhood (an "area" that members can subscribe to and that alerts can
be routed to).  This module is deliberately pure: it knows nothing about the
database, web app or SMS provider, so it can be used by the CLI importer, the
web UI and the tests alike.

Every problem with the input is reported as a :class:`RegionError` whose
message names the offending feature, so that an organizer importing their
city's open-data file gets an actionable message rather than a traceback.
"""

from __future__ import annotations

import json
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import shapely
from shapely.geometry import (
    GeometryCollection,
    MultiPolygon,
    Point,
    Polygon,
    mapping,
    shape,
)

T = TypeVar("T")

__all__ = [
    "LARGE_REGION_FILE_BYTES",
    "MAX_REGION_FILE_BYTES",
    "AreaSpec",
    "PropertyNames",
    "RegionError",
    "RegionReading",
    "Simplification",
    "Skipped",
    "area_at",
    "demo_region_path",
    "first_covering",
    "load_region_file",
    "load_region_reading",
    "parse_region",
    "read_region",
    "simplify_region",
    "slugify",
]

#: Region files larger than this are rejected before parsing.
MAX_REGION_FILE_BYTES = 50 * 1024 * 1024

_ACCEPTED_GEOMETRY_TYPES = ("Polygon", "MultiPolygon")
_LIST_SEPARATORS = re.compile(r"[,;]")
_WHITESPACE = re.compile(r"\s+")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_ZIP = re.compile(r"[0-9]{5}")


class RegionError(ValueError):
    """A region pack could not be read or contains an invalid feature."""


@dataclass(frozen=True)
class PropertyNames:
    """Which feature properties hold each piece of area information.

    Cities name these differently in their open-data files (Portland's
    official file uses ``NAME``, others use ``MAPLABEL`` or
    ``neighborhood``).  Set an optional member to ``None`` to ignore it.

    Attributes:
        name: Property holding the display name (required on every feature).
        slug: Property holding a unique id; derived from the name if absent.
        aliases: Property holding alternative names, as a list or a
            comma/semicolon-separated string.
        zips: Property holding 5-digit ZIP codes, as a list or a
            comma/semicolon-separated string.
    """

    name: str = "name"
    slug: str | None = "slug"
    aliases: str | None = "aliases"
    zips: str | None = "zips"


@dataclass(frozen=True)
class AreaSpec:
    """One parsed neighborhood.

    Attributes:
        slug: Lowercase hyphenated unique id, e.g. ``"st-johns"``.
        name: Canonical display name, e.g. ``"St. Johns"``.
        aliases: Other names people might text, whitespace-normalised.
        zips: 5-digit ZIP codes the area lies in.
        geometry: A valid shapely ``Polygon`` or ``MultiPolygon`` (lon/lat).
    """

    slug: str
    name: str
    aliases: tuple[str, ...]
    zips: tuple[str, ...]
    geometry: Any

    def __post_init__(self) -> None:
        """Prepare the geometry so repeated point look-ups are fast."""
        shapely.prepare(self.geometry)

    def geojson(self) -> dict[str, Any]:
        """Return the geometry as a GeoJSON mapping, suitable for storage.

        Returns:
            A ``{"type": ..., "coordinates": ...}`` dict.
        """
        result: dict[str, Any] = dict(mapping(self.geometry))
        return result


def slugify(text: str) -> str:
    """Turn a display name into a lowercase hyphenated slug.

    Accents are stripped (``"Peña"`` -> ``"pena"``) and every run of
    non-alphanumeric characters becomes a single hyphen.

    Args:
        text: Any name.

    Returns:
        The slug; empty if ``text`` has no ASCII letters or digits.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    ascii_only = decomposed.encode("ascii", "ignore").decode("ascii")
    return _NON_ALNUM.sub("-", ascii_only.lower()).strip("-")


def demo_region_path() -> Path:
    """Return the path of the bundled approximate Portland demo pack."""
    return Path(__file__).resolve().parent / "data" / "regions" / "portland.geojson"


def load_region_file(
    path: str | os.PathLike[str], names: PropertyNames = PropertyNames()
) -> list[AreaSpec]:
    """Read a UTF-8 GeoJSON file and parse it with :func:`parse_region`.

    Args:
        path: File to read.
        names: Which feature properties hold name, slug, aliases and ZIPs.

    Returns:
        The parsed areas, in file order.

    Raises:
        RegionError: If the file is unreadable, too large, not UTF-8, not
            JSON, or not a valid region pack.
    """
    shown = os.fspath(path)
    data = _load_json(path)
    try:
        return parse_region(data, names)
    except RegionError as exc:
        raise RegionError(f"{shown}: {exc}") from exc


def _load_json(path: str | os.PathLike[str]) -> Any:
    """The decoded JSON of a region file, or a RegionError saying what is wrong with it."""
    shown = os.fspath(path)
    limit_mb = MAX_REGION_FILE_BYTES // (1024 * 1024)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_REGION_FILE_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: e.g. NUL byte in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise RegionError(f"cannot read region file {shown!r}: {reason}") from exc
    if len(raw) > MAX_REGION_FILE_BYTES:
        raise RegionError(
            f"region file {shown!r} is larger than {limit_mb} MB; "
            "simplify the boundaries or split the file"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise RegionError(
            f"region file {shown!r} is not UTF-8 text (bad byte at offset {exc.start})"
        ) from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegionError(
            f"region file {shown!r} is not valid JSON: {exc.msg} "
            f"at line {exc.lineno}, column {exc.colno}"
        ) from exc
    except RecursionError as exc:
        raise RegionError(f"region file {shown!r} is nested too deeply to parse") from exc


def parse_region(data: Mapping[str, Any], names: PropertyNames = PropertyNames()) -> list[AreaSpec]:
    """Parse a GeoJSON FeatureCollection into area specs.

    Args:
        data: Decoded GeoJSON.
        names: Which feature properties hold name, slug, aliases and ZIPs.

    Returns:
        One :class:`AreaSpec` per feature, in collection order.

    Raises:
        RegionError: If the collection or any feature is malformed, a
            geometry is not (repairably) polygonal, a ZIP is invalid, or two
            features share a slug.
    """
    reading = _read_features(_collection_features(data), names, strict=True)
    return reading.areas


def _collection_features(data: object) -> list[Any]:
    """The features of a FeatureCollection, or why it is not one."""
    if not isinstance(data, Mapping):
        raise RegionError(
            f"region data must be a GeoJSON FeatureCollection object, got a JSON {_json_kind(data)}"
        )
    kind = data.get("type")
    if kind != "FeatureCollection":
        found = f"type {kind!r}" if isinstance(kind, str) else "no 'type' member"
        raise RegionError(f"region data must be a GeoJSON FeatureCollection, found {found}")
    features = data.get("features")
    if not isinstance(features, list):
        raise RegionError("FeatureCollection has no 'features' list")
    if not features:
        raise RegionError("FeatureCollection is empty: it contains no features")
    return features


@dataclass(frozen=True)
class Skipped:
    """A feature left out of an import, and why (the reason names it and its index)."""

    index: int
    reason: str


@dataclass(frozen=True)
class RegionReading:
    """What a region file gave: the areas to import, and the features left out."""

    areas: list[AreaSpec]
    skipped: list[Skipped]


def read_region(data: Mapping[str, Any], names: PropertyNames = PropertyNames()) -> RegionReading:
    """Like :func:`parse_region`, but a bad or duplicate feature is left out with its
    reason instead of refusing the whole file (a real city file often has one).

    Raises:
        RegionError: the file is not a FeatureCollection, or no feature can be used.
    """
    reading = _read_features(_collection_features(data), names, strict=False)
    if not reading.areas:
        reasons = "; ".join(skip.reason for skip in reading.skipped[:3])
        raise RegionError(f"no feature could be used: {reasons}")
    return reading


def load_region_reading(
    path: str | os.PathLike[str], names: PropertyNames = PropertyNames()
) -> RegionReading:
    """Read a GeoJSON file as :func:`read_region` does (feature by feature)."""
    shown = os.fspath(path)
    try:
        return read_region(_load_json(path), names)
    except RegionError as exc:
        raise RegionError(f"{shown}: {exc}") from exc


def _read_features(features: list[Any], names: PropertyNames, *, strict: bool) -> RegionReading:
    areas: list[AreaSpec] = []
    skipped: list[Skipped] = []
    seen: dict[str, int] = {}
    for index, feature in enumerate(features):
        try:
            area = _parse_feature(index, feature, names)
            if area.slug in seen:
                raise RegionError(
                    f"feature {index} ({area.name!r}): duplicate slug {area.slug!r}, "
                    f"already used by feature {seen[area.slug]}"
                )
        except RegionError as exc:
            if strict:
                raise
            skipped.append(Skipped(index, str(exc)))
            continue
        seen[area.slug] = index
        areas.append(area)
    return RegionReading(areas, skipped)


#: Above this a region file is worth simplifying: every lookup and map is slower.
LARGE_REGION_FILE_BYTES = 2 * 1024 * 1024
#: Metres per degree of latitude (and of longitude at the equator), for tolerances.
METERS_PER_DEGREE = 111_320.0


@dataclass(frozen=True)
class Simplification:
    """How much one area changed: its vertices, and its area (a fraction, signed)."""

    slug: str
    vertices_before: int
    vertices_after: int
    area_change: float


def simplify_region(
    areas: Sequence[AreaSpec], meters: float
) -> tuple[list[AreaSpec], list[Simplification]]:
    """Simplify every boundary at once, as a coverage: a border two areas share stays one
    line (simplified alike on both sides), so no gap or overlap opens between them.

    ``meters`` is roughly the size of the detail removed. An area that would not stay a
    valid polygon keeps its own boundary, simplified alone (topology preserved).
    """
    if meters <= 0 or not areas:
        return list(areas), []
    tolerance = meters / METERS_PER_DEGREE
    simplified = shapely.coverage_simplify([area.geometry for area in areas], tolerance)
    result: list[AreaSpec] = []
    report: list[Simplification] = []
    for area, geometry in zip(areas, simplified, strict=True):
        if not isinstance(geometry, (Polygon, MultiPolygon)) or geometry.is_empty:
            geometry = None
        elif not geometry.is_valid:
            geometry = _polygonal_part(shapely.make_valid(geometry))
        if geometry is None or geometry.area <= 0:
            geometry = area.geometry.simplify(tolerance, preserve_topology=True)
        before, after = (
            shapely.get_num_coordinates(area.geometry),
            shapely.get_num_coordinates(geometry),
        )
        change = (geometry.area - area.geometry.area) / area.geometry.area
        result.append(replace(area, geometry=geometry))
        report.append(Simplification(area.slug, int(before), int(after), float(change)))
    return result, report


def area_at(point_lon: float, point_lat: float, areas: Sequence[AreaSpec]) -> AreaSpec | None:
    """Find the area containing a point (a point on a boundary counts).

    Args:
        point_lon: Longitude in WGS84 degrees.
        point_lat: Latitude in WGS84 degrees.
        areas: Areas to search; the first match in this order wins.

    Returns:
        The matching area, or ``None`` if the point is in none of them.
    """
    return first_covering(point_lon, point_lat, ((area, area.geometry) for area in areas))


def first_covering(
    point_lon: float, point_lat: float, candidates: Iterable[tuple[T, Any]]
) -> T | None:
    """The first item whose (plain or prepared) geometry covers the point, boundary included.

    Shared by region packs and stored areas, so both treat odd points alike: a point
    that is not finite (a broken browser or phone location) is in no area.
    """
    if not (math.isfinite(point_lon) and math.isfinite(point_lat)):
        return None
    point = Point(point_lon, point_lat)
    return next((item for item, geometry in candidates if geometry.covers(point)), None)


# --------------------------------------------------------------------------
# helpers


def _json_kind(value: object) -> str:
    """Describe a decoded JSON value's type in JSON terms."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _normalise_space(text: str) -> str:
    """Collapse runs of whitespace to single spaces and trim the ends."""
    return _WHITESPACE.sub(" ", text).strip()


def _parse_feature(index: int, feature: object, names: PropertyNames) -> AreaSpec:
    """Parse one feature, reporting problems against its index."""
    where = f"feature {index}"
    if not isinstance(feature, Mapping):
        raise RegionError(
            f"{where}: expected a GeoJSON Feature object, got a {_json_kind(feature)}"
        )
    props_raw = feature.get("properties")
    if props_raw is None:
        props: Mapping[str, Any] = {}
    elif isinstance(props_raw, Mapping):
        props = props_raw
    else:
        raise RegionError(f"{where}: 'properties' must be an object, got a {_json_kind(props_raw)}")

    name = _read_name(where, props, names.name)
    where = f"feature {index} ({name!r})"
    slug = _read_slug(where, props, names.slug, name)
    aliases = _read_aliases(where, props, names.aliases, name)
    zips = _read_zips(where, props, names.zips)
    geometry = _read_geometry(where, feature.get("geometry"))
    return AreaSpec(slug=slug, name=name, aliases=aliases, zips=zips, geometry=geometry)


def _read_name(where: str, props: Mapping[str, Any], key: str) -> str:
    """Read and normalise the required display name."""
    value = props.get(key)
    if value is None:
        available = ", ".join(repr(str(k)) for k in props) or "none"
        raise RegionError(
            f"{where}: missing name property {key!r}; this feature has properties: "
            f"{available} (choose the right one with the name property option)"
        )
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise RegionError(f"{where}: name property {key!r} must be text, got a {_json_kind(value)}")
    name = _normalise_space(str(value))
    if not name:
        raise RegionError(f"{where}: name property {key!r} is blank")
    return name


def _read_slug(where: str, props: Mapping[str, Any], key: str | None, name: str) -> str:
    """Read the slug property, or derive a slug from the name."""
    value = props.get(key) if key is not None else None
    if value is None or value == "":
        slug = slugify(name)
        if not slug:
            raise RegionError(
                f"{where}: cannot derive a slug from the name (no letters or digits "
                "in the Latin alphabet); add a slug property"
            )
        return slug
    if not isinstance(value, str):
        raise RegionError(f"{where}: slug property {key!r} must be text, got a {_json_kind(value)}")
    slug = slugify(value)
    if not slug:
        raise RegionError(f"{where}: slug {value!r} contains no letters or digits")
    return slug


def _split_list(where: str, label: str, key: str, value: object) -> list[str]:
    """Read a list-or-delimited-string property into stripped strings."""
    if value is None:
        return []
    items: Iterable[object]
    if isinstance(value, str):
        items = _LIST_SEPARATORS.split(value)
    elif isinstance(value, list):
        items = value
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    else:
        raise RegionError(
            f"{where}: {label} property {key!r} must be a list or a comma-separated "
            f"string, got a {_json_kind(value)}"
        )
    result: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise RegionError(
                f"{where}: {label} property {key!r} contains a {_json_kind(item)}; expected text"
            )
        text = _normalise_space(str(item))
        if text:
            result.append(text)
    return result


def _read_aliases(
    where: str, props: Mapping[str, Any], key: str | None, name: str
) -> tuple[str, ...]:
    """Read aliases, dropping blanks, duplicates and copies of the name."""
    if key is None:
        return ()
    seen = {name.casefold()}
    aliases: list[str] = []
    for alias in _split_list(where, "aliases", key, props.get(key)):
        folded = alias.casefold()
        if folded not in seen:
            seen.add(folded)
            aliases.append(alias)
    return tuple(aliases)


def _read_zips(where: str, props: Mapping[str, Any], key: str | None) -> tuple[str, ...]:
    """Read ZIP codes, requiring each to be exactly five digits."""
    if key is None:
        return ()
    zips: list[str] = []
    for zip_code in _split_list(where, "zips", key, props.get(key)):
        if not _ZIP.fullmatch(zip_code):
            raise RegionError(f"{where}: invalid ZIP code {zip_code!r}; expected 5 digits")
        if zip_code not in zips:
            zips.append(zip_code)
    return tuple(zips)


def _read_geometry(where: str, raw: object) -> Any:
    """Build a valid polygonal shapely geometry from a GeoJSON geometry."""
    if raw is None:
        raise RegionError(f"{where}: has no geometry")
    if not isinstance(raw, Mapping):
        raise RegionError(f"{where}: geometry must be an object, got a {_json_kind(raw)}")
    geom_type = raw.get("type")
    if geom_type not in _ACCEPTED_GEOMETRY_TYPES:
        shown = repr(geom_type) if isinstance(geom_type, str) else "missing"
        raise RegionError(
            f"{where}: unsupported geometry type {shown}; only Polygon and "
            "MultiPolygon boundaries can be used as areas"
        )
    polygons = _check_coordinates(where, geom_type, raw.get("coordinates"))
    try:
        geometry = shapely.force_2d(shape({"type": "MultiPolygon", "coordinates": polygons}))
        if geom_type == "Polygon":
            geometry = geometry.geoms[0]
    except Exception as exc:  # shapely raises many types for malformed input
        raise RegionError(f"{where}: malformed {geom_type} coordinates ({exc})") from exc

    if not geometry.is_valid:
        try:
            repaired = shapely.make_valid(geometry)
        except Exception as exc:  # GEOS errors on pathological input
            raise RegionError(f"{where}: invalid {geom_type} that could not be repaired") from exc
        geometry = _polygonal_part(repaired)
        if geometry is None or not geometry.is_valid:
            raise RegionError(
                f"{where}: invalid {geom_type} (e.g. self-intersecting) that does not "
                "repair to a polygon"
            )
    if geometry.area <= 0:
        raise RegionError(f"{where}: {geom_type} has zero area")
    return geometry


def _check_coordinates(where: str, geom_type: str, raw: object) -> list[list[list[list[float]]]]:
    """Check a Polygon/MultiPolygon coordinate array; return it as MultiPolygon form.

    Validating the structure up front keeps shapely from seeing NaNs, booleans
    or ragged arrays (which it reports with warnings or obscure errors).
    """
    polygons_raw = [raw] if geom_type == "Polygon" else raw
    if not isinstance(polygons_raw, list) or not polygons_raw:
        raise RegionError(f"{where}: {geom_type} has no coordinates")
    polygons: list[list[list[list[float]]]] = []
    for polygon_raw in polygons_raw:
        if not isinstance(polygon_raw, list) or not polygon_raw:
            raise RegionError(f"{where}: {geom_type} contains a polygon with no rings")
        rings: list[list[list[float]]] = []
        for ring_raw in polygon_raw:
            if not isinstance(ring_raw, list) or len(ring_raw) < 3:
                raise RegionError(
                    f"{where}: {geom_type} ring must be a list of at least 3 positions"
                )
            rings.append([_check_position(where, position) for position in ring_raw])
        polygons.append(rings)
    return polygons


def _check_position(where: str, position: object) -> list[float]:
    """Check one ``[lon, lat]`` position (extra dimensions are dropped)."""
    if not isinstance(position, list) or len(position) < 2:
        raise RegionError(f"{where}: each position must be a [longitude, latitude] pair")
    lon, lat = position[0], position[1]
    for value in (lon, lat):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RegionError(f"{where}: coordinate {value!r} is not a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise RegionError(f"{where}: coordinate {value!r} is not a finite number")
    if -90 <= lon <= 90 and 90 < abs(lat) <= 180:
        raise RegionError(
            f"{where}: position [{lon}, {lat}] has a latitude beyond 90: the coordinates "
            "look swapped (GeoJSON wants [longitude, latitude]); export the file again "
            "with longitude first (ogr2ogr: -oo/-lco settings or -s_srs/-t_srs EPSG:4326)"
        )
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise RegionError(
            f"{where}: position [{lon}, {lat}] is outside longitude/latitude range; "
            "the file looks projected - re-export it as WGS84 (EPSG:4326)"
        )
    return [float(lon), float(lat)]


def _polygonal_part(geometry: Any) -> Any:
    """Return the polygonal part of a repaired geometry, or None."""
    if isinstance(geometry, (Polygon, MultiPolygon)):
        return None if geometry.is_empty else geometry
    if isinstance(geometry, GeometryCollection):
        polygons: list[Any] = []
        for part in geometry.geoms:
            if isinstance(part, Polygon):
                polygons.append(part)
            elif isinstance(part, MultiPolygon):
                polygons.extend(part.geoms)
        polygons = [p for p in polygons if not p.is_empty]
        if not polygons:
            return None
        merged = shapely.unary_union(polygons)
        return merged if isinstance(merged, (Polygon, MultiPolygon)) else None
    return None
