"""Areas are parsed once per process: lookups cost microseconds and never hold a lock.

The catalog keeps one ``AreaDirectory`` (names, aliases, ZIPs, and the outlines in an
STRtree) and rebuilds it only when the areas' revision in the database changes, which
any change to an area through the ORM does in its own transaction.
"""

from __future__ import annotations

import random
import threading

import pytest
from sqlalchemy import event, func, select, text

from dispatch.services import Services
from rapidresponse import directory as directory_module
from rapidresponse.areas import import_areas
from rapidresponse.db import Database
from rapidresponse.models import Area
from rapidresponse.regions import demo_region_path, first_covering, load_region_file
from tests.web.sms_helpers import Phone


@pytest.fixture
def portland(services: Services) -> Services:
    with services.database.session() as session:
        import_areas(session, load_region_file(demo_region_path()), "Portland")
    return services


def count_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times outlines were parsed and indexed (one entry per build)."""
    builds: list[int] = []
    real = directory_module._Polygons.__init__

    def counting(self: directory_module._Polygons, outlines: list[object]) -> None:
        builds.append(len(outlines))
        real(self, outlines)  # type: ignore[arg-type]

    monkeypatch.setattr(directory_module._Polygons, "__init__", counting)
    return builds


def test_the_directory_is_built_once_and_kept(
    portland: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds = count_parses(monkeypatch)
    first = portland.area_directory()
    assert [first is portland.area_directory() for _ in range(50)] == [True] * 50
    assert builds == [len(load_region_file(demo_region_path()))]


def test_any_change_to_an_area_rebuilds_it(
    portland: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = portland.area_directory()
    assert before.resolve("Mississippi Avenue").area is None
    with portland.database.session() as session:
        king = session.scalars(select(Area).where(Area.slug == "king")).one()
        king.aliases = [*king.aliases, "Mississippi Avenue"]
    after = portland.area_directory()
    assert after is not before
    found = after.resolve("Mississippi Avenue").area
    assert found is not None and found.slug == "king"


def test_a_rolled_back_change_keeps_the_directory(portland: Services) -> None:
    before = portland.area_directory()

    def add_then_fail() -> None:
        with portland.database.session() as session:
            session.add(Area(slug="nowhere", name="Nowhere"))
            session.flush()
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        add_then_fail()
    assert portland.area_directory() is before


def test_the_hotline_parses_no_outline_per_text(
    alice: Phone, twilio_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    twilio_services.area_directory()  # the process's first text builds it; this is that
    builds = count_parses(monkeypatch)
    for n in range(5):
        assert alice.text(f"agents on NE 42nd in Cully, van {n}") is not None
    assert alice.text("JOIN Lents") is not None
    assert builds == []


def test_the_tree_finds_what_a_full_scan_finds(portland: Services) -> None:
    found = portland.area_directory()
    specs = load_region_file(demo_region_path())
    west, south, east, north = (
        min(s.geometry.bounds[0] for s in specs) - 0.01,
        min(s.geometry.bounds[1] for s in specs) - 0.01,
        max(s.geometry.bounds[2] for s in specs) + 0.01,
        max(s.geometry.bounds[3] for s in specs) + 0.01,
    )
    chance = random.Random(14)
    for _ in range(2_000):
        lon, lat = chance.uniform(west, east), chance.uniform(south, north)
        expected = first_covering(lon, lat, ((s.slug, s.geometry) for s in specs))
        place = found.at(lon, lat)
        assert (place.slug if place else None) == expected, (lon, lat)


@pytest.mark.parametrize("point", [(float("nan"), 45.5), (-122.6, float("inf"))])
def test_a_broken_point_is_in_no_area(portland: Services, point: tuple[float, float]) -> None:
    assert portland.area_directory().at(*point) is None


def test_reading_takes_no_write_lock(database: Database) -> None:
    """A read-only session reads beside a writer that holds the lock.

    On SQLite a session that began IMMEDIATE would wait the whole busy timeout (15 s)
    and fail with "database is locked": the writer here holds on for longer than that.
    PostgreSQL readers never wait for writers; the test holds there too.
    """
    writer_holds_the_lock = threading.Event()
    reader_done = threading.Event()

    def writer() -> None:
        with database.session() as session:
            session.execute(text("UPDATE areas SET name = name WHERE id = -1"))
            writer_holds_the_lock.set()
            reader_done.wait(30)

    thread = threading.Thread(target=writer)
    thread.start()
    assert writer_holds_the_lock.wait(10)
    try:
        with database.reading() as session:
            assert session.scalar(select(func.count()).select_from(Area)) == 0
    finally:
        reader_done.set()
        thread.join()


def revision_reads(database: Database) -> list[str]:
    """The statements that read the areas' revision, as they run."""
    reads: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "area_revision" in statement and statement.lstrip().upper().startswith("SELECT"):
            reads.append(statement)

    event.listen(database.engine, "before_cursor_execute", seen)
    return reads


def test_the_revision_is_read_at_most_once_a_second(portland: Services) -> None:
    """Each text checks that its directory is current; the database is asked once per
    RECHECK_SECONDS, not once per text (a statement on every text, under the lock)."""
    catalog, database = portland.areas, portland.database
    built = portland.area_directory()
    reads = revision_reads(database)
    for _ in range(20):
        with database.session() as session:
            assert catalog.is_current(session, built)
    assert len(reads) <= 1


def test_a_change_by_another_process_is_seen_within_a_second(
    portland: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    catalog, database = portland.areas, portland.database
    built = portland.area_directory()
    with database.session() as session:
        assert catalog.is_current(session, built)
    # Another process's region import: a new revision this process did not write.
    with database.engine.begin() as connection:
        connection.execute(text("UPDATE area_revision SET revision = 'elsewhere'"))
    clock = [directory_module.time.monotonic()]
    monkeypatch.setattr(directory_module.time, "monotonic", lambda: clock[0])
    with database.session() as session:
        assert catalog.is_current(session, built)  # trusted for up to a second
    clock[0] += directory_module.RECHECK_SECONDS
    with database.session() as session:
        assert not catalog.is_current(session, built)
    rebuilt = portland.area_directory()
    assert rebuilt is not built
    with database.session() as session:
        assert catalog.is_current(session, rebuilt)


def test_a_change_in_this_process_is_seen_at_once(portland: Services) -> None:
    catalog, database = portland.areas, portland.database
    built = portland.area_directory()
    with database.session() as session:
        assert catalog.is_current(session, built)
    with database.session() as session:
        king = session.scalars(select(Area).where(Area.slug == "king")).one()
        king.aliases = [*king.aliases, "Alberta Arts"]
    with database.session() as session:
        assert not catalog.is_current(session, built)
