"""Finding areas by what people type, and by where a point falls."""

from __future__ import annotations

import pytest

from rapidresponse.areas import unsaved_areas
from rapidresponse.directory import AreaDirectory
from rapidresponse.models import Area
from rapidresponse.regions import demo_region_path, load_region_file, slugify


@pytest.fixture(scope="module")
def directory() -> AreaDirectory:
    return AreaDirectory(unsaved_areas(load_region_file(demo_region_path())))


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
    assert {place.name for place in found.areas} == {"St. Johns", "Portsmouth"}


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


# Names as a city's official file has them: no aliases, no ZIPs, some of them also the
# names of streets (Russell, Foster, Powell, Woodstock), a county (Multnomah) or words.
OFFICIAL_NAMES = [
    "Cully",
    "Lents",
    "Kenton",
    "Eliot",
    "Russell",
    "Multnomah",
    "King",
    "Reed",
    "Woodstock",
    "Mt. Tabor",
    "St. Johns",
    "Sellwood-Moreland",
    "Foster-Powell",
    "Mt. Scott-Arleta",
    "Montavilla",
    "Hosford-Abernethy",
]


@pytest.fixture(scope="module")
def official() -> AreaDirectory:
    return AreaDirectory(
        Area(id=n, slug=slugify(name), name=name, aliases=[], zips=[], geometry=None)
        for n, name in enumerate(OFFICIAL_NAMES, start=1)
    )


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("ICE near Mount Tabor park", "Mt. Tabor"),
        ("agents in St. John's by the bridge", "St. Johns"),
        ("saint johns", "St. Johns"),
        ("ICE in Sellwood right now", "Sellwood-Moreland"),
        ("Sellwood", "Sellwood-Moreland"),
        ("ICE in Mount Scott", "Mt. Scott-Arleta"),
        ("migra en el barrio Woodstock", "Woodstock"),
        ("Woodstock", "Woodstock"),
        ("ICE in King, 3 vans", "King"),
        ("ICE at the Cully Safeway", "Cully"),
        ("Russell neighborhood, two agents", "Russell"),
        ("ICE in Lents near SE Foster Rd", "Lents"),
        ("ICE in Lents, van seen later at Montavilla", "Lents"),  # the one in a place context
        ("agents at Woodstock Blvd and 52nd in Reed", "Reed"),
    ],
)
def test_official_names_place_ordinary_messages(
    official: AreaDirectory, text: str, name: str
) -> None:
    found = official.mentioned_in(text)
    assert found is not None and found.name == name


@pytest.mark.parametrize(
    "text",
    [
        "ICE at the Multnomah County courthouse",  # the courthouse is downtown
        "N Russell St by Mississippi",  # that corner is in Eliot
        "vans on SE Foster Rd",  # Foster Rd crosses several neighborhoods
        "agents on Powell",
        "agents at Woodstock Blvd and 52nd",
        "a van on MLK Jr Blvd by King Jr",
        "the king of the block called it in",
        "ICE at Reed College",  # short names count only in a place context
        "from Kenton to Cully",  # two areas: a dispatcher decides
    ],
)
def test_streets_counties_and_words_place_nothing(official: AreaDirectory, text: str) -> None:
    assert official.mentioned_in(text) is None


@pytest.mark.parametrize(
    ("typed", "name"),
    [
        ("Mount Tabor", "Mt. Tabor"),
        ("St. John's", "St. Johns"),
        ("Sellwood", "Sellwood-Moreland"),
        ("moreland", "Sellwood-Moreland"),
        ("king", "King"),
        ("REED", "Reed"),
    ],
)
def test_join_finds_official_names_however_written(
    official: AreaDirectory, typed: str, name: str
) -> None:
    found = official.resolve(typed)
    assert found.area is not None and found.area.name == name


def test_a_list_of_areas_resolves_each(official: AreaDirectory) -> None:
    for typed in ("Cully, Lents", "Cully and Lents", "Cully y Lents", "Cully & Lents"):
        found = official.resolve_list(typed)
        assert [r.area.name for _, r in found if r.area] == ["Cully", "Lents"], typed
