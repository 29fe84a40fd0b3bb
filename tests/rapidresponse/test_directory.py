"""Finding areas by what people type, and by where a point falls."""

from __future__ import annotations

import pytest

from rapidresponse.directory import AreaDirectory
from rapidresponse.models import Area
from rapidresponse.regions import demo_region_path, load_region_file


@pytest.fixture(scope="module")
def directory() -> AreaDirectory:
    areas = [
        Area(
            id=n,
            slug=spec.slug,
            name=spec.name,
            aliases=list(spec.aliases),
            zips=list(spec.zips),
            geometry=spec.geojson(),
        )
        for n, spec in enumerate(load_region_file(demo_region_path()), start=1)
    ]
    return AreaDirectory(areas)


@pytest.mark.parametrize(
    ("typed", "slug"),
    [
        ("Cully", "cully"),
        ("CULLY", "cully"),
        ("cully!", "cully"),
        ("St Johns", "st-johns"),
        ("saint johns", "st-johns"),
        ("St. Johns", "st-johns"),
        ("stjohns", "st-johns"),
        ("the pearl", "pearl-district"),
        ("Barrio Chino", "old-town-chinatown"),
        ("a Cully", "cully"),
        ("al Lents", "lents"),
        ("in Kenton", "kenton"),
        ("97230", "parkrose"),
    ],
)
def test_names_aliases_and_zips_resolve(directory: AreaDirectory, typed: str, slug: str) -> None:
    found = directory.resolve(typed)
    assert found.area is not None and found.area.slug == slug


def test_a_zip_shared_by_neighborhoods_offers_them(directory: AreaDirectory) -> None:
    found = directory.resolve("97203")
    assert found.area is None
    assert set(found.choices) == {"St. Johns", "Portsmouth"}


@pytest.mark.parametrize(
    ("typed", "expected"), [("Kenten", "Kenton"), ("Culy", "Cully"), ("Montavila", "Montavilla")]
)
def test_close_misspellings_are_suggested(
    directory: AreaDirectory, typed: str, expected: str
) -> None:
    found = directory.resolve(typed)
    assert found.area is None and expected in found.choices and len(found.choices) <= 3


@pytest.mark.parametrize("typed", ["Atlantis", "", "12345", "x" * 500])
def test_nonsense_resolves_to_nothing(directory: AreaDirectory, typed: str) -> None:
    assert directory.resolve(typed).area is None


def test_a_point_falls_in_its_neighborhood(directory: AreaDirectory) -> None:
    st_johns = next(
        spec for spec in load_region_file(demo_region_path()) if spec.slug == "st-johns"
    )
    centre = st_johns.geometry.representative_point()
    found = directory.at(centre.x, centre.y)
    assert found is not None and found.slug == "st-johns"


def test_a_point_outside_every_area_is_nowhere(directory: AreaDirectory) -> None:
    assert directory.at(-124.5, 45.5) is None  # the Pacific


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("ICE van at NE 42nd and Killingsworth in Cully", "cully"),
        ("agents near 97230 by the Fred Meyer", "parkrose"),
        ("two trucks in Montavilla on Stark", "montavilla"),
    ],
)
def test_a_report_text_names_its_area(directory: AreaDirectory, text: str, slug: str) -> None:
    found = directory.mentioned_in(text)
    assert found is not None and found.slug == slug


@pytest.mark.parametrize(
    "text",
    [
        "they had a list in hand",  # "HAND" is an alias of Hosford-Abernethy
        "on MLK and Killingsworth",  # MLK runs through King and many others
        "a van on Martin Luther King Blvd",
        "Cully and Lents",  # two areas named: a dispatcher decides
        "97203",  # a ZIP shared by St. Johns and Portsmouth
    ],
)
def test_ordinary_words_and_ambiguity_place_nothing(directory: AreaDirectory, text: str) -> None:
    assert directory.mentioned_in(text) is None


@pytest.mark.parametrize(("longitude", "latitude"), [(float("nan"), 45.5), (-122.6, float("inf"))])
def test_a_non_finite_point_is_in_no_stored_area(
    directory: AreaDirectory, longitude: float, latitude: float
) -> None:
    assert directory.at(longitude, latitude) is None
