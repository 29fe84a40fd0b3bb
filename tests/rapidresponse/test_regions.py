"""Region packs: the bundled Portland demo and the GeoJSON parser."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from bench.city import make_city
from rapidresponse.regions import (
    AreaSpec,
    PropertyNames,
    RegionError,
    area_at,
    demo_region_path,
    load_region_file,
    parse_region,
    read_region,
    simplify_region,
    slugify,
)

ST_JOHNS = (-122.750, 45.590)
PACIFIC_OCEAN = (-125.0, 45.5)
SQUARE = [
    [[-122.60, 45.50], [-122.59, 45.50], [-122.59, 45.51], [-122.60, 45.51], [-122.60, 45.50]]
]


def feature(props: dict[str, Any] | None, geometry: Any = None) -> dict[str, Any]:
    """A GeoJSON feature with a small square polygon unless told otherwise."""
    if geometry is None:
        geometry = {"type": "Polygon", "coordinates": SQUARE}
    return {"type": "Feature", "properties": props, "geometry": geometry}


def collection(*features: dict[str, Any]) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features)}


@pytest.fixture(scope="module")
def demo_areas() -> list[AreaSpec]:
    return load_region_file(demo_region_path())


@pytest.fixture(scope="module")
def demo_raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(demo_region_path().read_text(encoding="utf-8"))
    return data


# --- the bundled demo pack ------------------------------------------------------------


def test_demo_pack_parses_to_at_least_fourteen_areas(demo_areas: list[AreaSpec]) -> None:
    assert len(demo_areas) >= 14


def test_every_demo_area_is_a_valid_polygon(demo_areas: list[AreaSpec]) -> None:
    for area in demo_areas:
        assert area.geometry.is_valid, area.slug
        assert area.geometry.geom_type in ("Polygon", "MultiPolygon")
        assert area.geometry.area > 0


def test_demo_polygons_are_simple_hand_drawn_shapes(demo_raw: dict[str, Any]) -> None:
    for item in demo_raw["features"]:
        ring = item["geometry"]["coordinates"][0]
        assert 6 <= len(ring) - 1 <= 12, item["properties"]["name"]


def test_no_two_demo_areas_overlap(demo_areas: list[AreaSpec]) -> None:
    for a, b in itertools.combinations(demo_areas, 2):
        assert a.geometry.intersection(b.geometry).area == pytest.approx(0.0, abs=1e-12), (
            a.slug,
            b.slug,
        )


def test_every_demo_area_lists_at_least_one_zip(demo_areas: list[AreaSpec]) -> None:
    for area in demo_areas:
        assert area.zips, area.slug
        assert all(len(z) == 5 and z.isdigit() and z.startswith("972") for z in area.zips)


def test_demo_slugs_are_unique(demo_areas: list[AreaSpec]) -> None:
    slugs = [area.slug for area in demo_areas]
    assert len(slugs) == len(set(slugs))


def test_demo_collection_is_labelled_approximate(demo_raw: dict[str, Any]) -> None:
    assert demo_raw["name"] == "Portland, Oregon (approximate demo)"
    note = demo_raw["note"].lower()
    assert "approximate" in note
    assert "not official" in note
    assert "rapidresponse region import" in note
    assert all(item["properties"]["approximate"] is True for item in demo_raw["features"])


def test_demo_pack_includes_the_neighborhoods_organizers_asked_for(
    demo_areas: list[AreaSpec],
) -> None:
    slugs = {area.slug for area in demo_areas}
    assert {"st-johns", "cully", "lents", "gateway-hazelwood", "old-town-chinatown"} <= slugs


def test_demo_aliases_cover_common_spellings(demo_areas: list[AreaSpec]) -> None:
    by_slug = {area.slug: area for area in demo_areas}
    assert {"St Johns", "Saint Johns"} <= set(by_slug["st-johns"].aliases)
    assert "Chinatown" in by_slug["old-town-chinatown"].aliases
    assert "The Pearl" in by_slug["pearl-district"].aliases


def test_area_geojson_is_a_storable_mapping(demo_areas: list[AreaSpec]) -> None:
    stored = demo_areas[0].geojson()
    assert stored["type"] == "Polygon"
    assert json.loads(json.dumps(stored))["coordinates"]


# --- point look-up --------------------------------------------------------------------


def test_a_point_in_st_johns_resolves_to_st_johns(demo_areas: list[AreaSpec]) -> None:
    found = area_at(*ST_JOHNS, demo_areas)
    assert found is not None
    assert found.name == "St. Johns"


def test_a_point_in_the_pacific_ocean_resolves_to_nothing(demo_areas: list[AreaSpec]) -> None:
    assert area_at(*PACIFIC_OCEAN, demo_areas) is None


def test_a_point_on_a_boundary_counts_as_inside(demo_areas: list[AreaSpec]) -> None:
    st_johns = next(area for area in demo_areas if area.slug == "st-johns")
    lon, lat = st_johns.geometry.exterior.coords[0]
    assert area_at(lon, lat, demo_areas) == st_johns


def test_a_non_finite_point_resolves_to_nothing(demo_areas: list[AreaSpec]) -> None:
    assert area_at(float("nan"), 45.5, demo_areas) is None


# --- custom property names ------------------------------------------------------------


def test_custom_property_names_with_a_comma_separated_alias_string_work() -> None:
    data = collection(
        feature({"NAME": "  Cully  ", "ALIASES": "El Cully,  Cully Blvd ;; ,", "ZIP": "97211"}),
    )
    names = PropertyNames(name="NAME", slug=None, aliases="ALIASES", zips="ZIP")
    [area] = parse_region(data, names)
    assert area.name == "Cully"
    assert area.slug == "cully"
    assert area.aliases == ("El Cully", "Cully Blvd")
    assert area.zips == ("97211",)


def test_a_missing_slug_is_derived_from_the_name_with_accents_stripped() -> None:
    [area] = parse_region(collection(feature({"name": "Peña  Heights / Norte"})))
    assert area.slug == "pena-heights-norte"
    assert slugify("St. Johns") == "st-johns"


def test_whitespace_is_normalised_and_blank_or_repeated_aliases_are_dropped() -> None:
    props = {
        "name": "Old\tTown  Chinatown",
        "aliases": ["  China\ntown ", "", "   ", "CHINA  TOWN"],
    }
    [area] = parse_region(collection(feature(props)))
    assert area.name == "Old Town Chinatown"
    assert area.aliases == ("China town",)


def test_zips_may_be_a_semicolon_separated_string() -> None:
    [area] = parse_region(collection(feature({"name": "Lents", "zips": "97266; 97236"})))
    assert area.zips == ("97266", "97236")


def test_a_multipolygon_is_accepted() -> None:
    multi = {"type": "MultiPolygon", "coordinates": [SQUARE]}
    [area] = parse_region(collection(feature({"name": "Islands"}, multi)))
    assert area.geometry.geom_type == "MultiPolygon"


# --- malformed input ------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "region.geojson"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_file_that_is_not_json_is_a_region_error(tmp_path: Path) -> None:
    with pytest.raises(RegionError, match=r"not valid JSON.*line 1"):
        load_region_file(write(tmp_path, "{not json"))


def test_a_missing_file_is_a_region_error(tmp_path: Path) -> None:
    with pytest.raises(RegionError, match="cannot read region file"):
        load_region_file(tmp_path / "nope.geojson")


def test_a_file_that_is_not_utf8_is_a_region_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.geojson"
    path.write_bytes('{"name": "Peña"}'.encode("latin-1"))
    with pytest.raises(RegionError, match="not UTF-8"):
        load_region_file(path)


def test_a_file_over_fifty_megabytes_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("rapidresponse.regions.MAX_REGION_FILE_BYTES", 10)
    with pytest.raises(RegionError, match="larger than"):
        load_region_file(write(tmp_path, json.dumps(collection(feature({"name": "x"})))))


def test_a_json_list_is_not_a_feature_collection() -> None:
    with pytest.raises(RegionError, match="got a JSON array"):
        parse_region([1, 2, 3])  # type: ignore[arg-type]


def test_a_single_feature_is_not_a_feature_collection() -> None:
    with pytest.raises(RegionError, match="FeatureCollection, found type 'Feature'"):
        parse_region(feature({"name": "Cully"}))


def test_an_empty_collection_is_a_region_error() -> None:
    with pytest.raises(RegionError, match="empty"):
        parse_region(collection())


def test_a_point_geometry_is_rejected_naming_the_feature() -> None:
    point = {"type": "Point", "coordinates": [-122.6, 45.5]}
    data = collection(feature({"name": "Cully"}), feature({"name": "Lents"}, point))
    with pytest.raises(RegionError, match=r"feature 1 \('Lents'\): unsupported geometry type"):
        parse_region(data)


def test_a_missing_name_lists_the_properties_the_feature_does_have() -> None:
    data = collection(feature({"MAPLABEL": "Cully", "OBJECTID": 7}))
    with pytest.raises(RegionError, match="feature 0") as caught:
        parse_region(data)
    message = str(caught.value)
    assert "missing name property 'name'" in message
    assert "'MAPLABEL'" in message
    assert "'OBJECTID'" in message


def test_a_duplicate_slug_names_both_features() -> None:
    data = collection(feature({"name": "Cully"}), feature({"name": "CULLY!"}))
    with pytest.raises(RegionError, match=r"feature 1.*duplicate slug 'cully'.*feature 0"):
        parse_region(data)


@pytest.mark.parametrize("bad_zip", ["9721", "97211-1234", "ABCDE", "972111"])
def test_a_bad_zip_names_the_feature(bad_zip: str) -> None:
    data = collection(feature({"name": "Cully", "zips": ["97211", bad_zip]}))
    with pytest.raises(RegionError, match=r"feature 0 \('Cully'\): invalid ZIP code"):
        parse_region(data)


def test_projected_coordinates_are_explained() -> None:
    projected = {
        "type": "Polygon",
        "coordinates": [
            [[7650000, 690000], [7660000, 690000], [7660000, 700000], [7650000, 690000]]
        ],
    }
    with pytest.raises(RegionError, match="EPSG:4326"):
        parse_region(collection(feature({"name": "Cully"}, projected)))


def test_a_self_intersecting_bowtie_is_repaired_by_make_valid() -> None:
    bowtie = {
        "type": "Polygon",
        "coordinates": [
            [
                [-122.60, 45.50],
                [-122.58, 45.52],
                [-122.58, 45.50],
                [-122.60, 45.52],
                [-122.60, 45.50],
            ]
        ],
    }
    assert not Polygon(bowtie["coordinates"][0]).is_valid
    [area] = parse_region(collection(feature({"name": "Bowtie"}, bowtie)))
    assert area.geometry.is_valid
    assert area.geometry.geom_type == "MultiPolygon"
    assert area.geometry.area == pytest.approx(0.0002)


def test_a_degenerate_polygon_that_cannot_be_repaired_is_a_region_error() -> None:
    flat = {
        "type": "Polygon",
        "coordinates": [[[-122.6, 45.5], [-122.5, 45.5], [-122.4, 45.5], [-122.6, 45.5]]],
    }
    with pytest.raises(RegionError, match="does not repair to a polygon"):
        parse_region(collection(feature({"name": "Flat"}, flat)))


# --- robustness -----------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
numbers = st.integers(-400, 400) | st.floats(allow_nan=True, allow_infinity=True)
positions = st.lists(numbers, min_size=0, max_size=3)
rings = st.lists(positions, max_size=6)
near_geometries = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Polygon", "MultiPolygon", "Point", "LineString", 3]),
        "coordinates": st.one_of(
            st.lists(rings, max_size=2),
            st.lists(st.lists(rings, max_size=2), max_size=2),
            json_values,
        ),
    }
)
near_properties = st.dictionaries(
    st.sampled_from(["name", "slug", "aliases", "zips", "NAME"]),
    json_values | st.lists(st.text(max_size=6), max_size=3),
    max_size=5,
)
near_features = st.fixed_dictionaries(
    {
        "type": st.just("Feature"),
        "properties": near_properties | json_values,
        "geometry": near_geometries | json_values,
    }
)
near_collections = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["FeatureCollection", "Feature", None]),
        "features": st.lists(near_features | json_values, max_size=4) | json_values,
    }
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(near_collections | st.dictionaries(st.text(max_size=8), json_values))
def test_arbitrary_json_never_raises_anything_but_region_error(data: dict[str, Any]) -> None:
    message = ""
    try:
        areas = parse_region(data)
    except RegionError as exc:
        message = str(exc)
        areas = []
    assert message or areas, "either a helpful error or at least one area"
    assert all(area.geometry.is_valid for area in areas)


# --- real city files: feature by feature, swapped axes, simplification ------------------


def test_a_real_file_imports_what_it_can_and_says_what_it_left_out() -> None:
    broken = {"type": "Polygon", "coordinates": [[[-122.6, 45.5], [-122.5, 45.5]]]}
    data = collection(
        feature({"name": "Cully"}),
        feature({"name": "CULLY!"}),  # a duplicate
        feature({"name": "Lents"}, broken),
        feature({"NAME": "no name property"}),
        feature({"name": "Kenton"}),
    )
    reading = read_region(data)
    assert [area.name for area in reading.areas] == ["Cully", "Kenton"]
    assert [skip.index for skip in reading.skipped] == [1, 2, 3]
    assert "duplicate slug 'cully'" in reading.skipped[0].reason
    assert "feature 2 ('Lents')" in reading.skipped[1].reason
    assert "missing name property" in reading.skipped[2].reason


def test_a_file_with_no_usable_feature_is_refused_with_reasons() -> None:
    with pytest.raises(RegionError, match="no feature could be used: feature 0"):
        read_region(collection(feature({"NAME": "x"})))


def test_swapped_latitude_and_longitude_are_named() -> None:
    swapped = [[[45.50, -122.60], [45.50, -122.59], [45.51, -122.59], [45.50, -122.60]]]
    with pytest.raises(RegionError, match=r"look swapped \(GeoJSON wants \[longitude, latitude\]"):
        parse_region(
            collection(feature({"name": "Cully"}, {"type": "Polygon", "coordinates": swapped}))
        )


def test_simplifying_keeps_shared_borders_shared() -> None:
    city = read_region(make_city(detail_m=20)).areas
    simpler, report = simplify_region(city, meters=5)
    assert [change.slug for change in report] == [area.slug for area in city]
    before = sum(change.vertices_before for change in report)
    after = sum(change.vertices_after for change in report)
    assert after < before * 0.8
    assert all(abs(change.area_change) < 0.01 for change in report)
    # No overlap between neighbours (areas add up to their union), no gap opened (the
    # union is the city's), every outline valid.
    union = shapely.union_all([area.geometry for area in simpler]).area
    assert sum(area.geometry.area for area in simpler) == pytest.approx(union, rel=1e-9)
    assert union == pytest.approx(shapely.union_all([a.geometry for a in city]).area, rel=1e-9)
    assert all(area.geometry.is_valid for area in simpler)


def test_simplifying_by_nothing_changes_nothing() -> None:
    city = read_region(make_city(detail_m=200)).areas
    assert simplify_region(city, meters=0) == (city, [])
