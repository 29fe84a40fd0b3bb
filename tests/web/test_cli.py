"""The rapidresponse command: init-db, region import, responder add, user add, routes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from bench.city import make_city, write_city
from dispatch.services import Services
from rapidresponse.crypto import Purpose
from rapidresponse.models import Area, Responder, StaffUser
from rapidresponse.passwords import verify_password
from rapidresponse.regions import LARGE_REGION_FILE_BYTES, demo_region_path
from web.cli import cli


def invoke(environ: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=environ, input=stdin, catch_exceptions=False)


@pytest.fixture
def region(services: Services, environ: dict[str, str]) -> None:
    assert invoke(environ, "region", "import", str(demo_region_path())).exit_code == 0


def count(services: Services, model: type) -> int:
    with services.database.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_init_db_can_run_again(services: Services, environ: dict[str, str]) -> None:
    for _ in range(2):
        result = invoke(environ, "init-db")
        assert result.exit_code == 0 and "up to date" in result.output


def test_the_demo_region_imports_and_reimports(services: Services, environ: dict[str, str]) -> None:
    first = invoke(environ, "region", "import", str(demo_region_path()))
    assert first.exit_code == 0
    assert first.output.startswith("20 areas added, 0 updated")
    again = invoke(environ, "region", "import", str(demo_region_path()))
    assert again.output.startswith("0 areas added, 20 updated")
    assert count(services, Area) == 20


def test_a_city_file_with_other_property_names_imports(
    services: Services, environ: dict[str, str], tmp_path: Path
) -> None:
    square = [
        [[-122.70, 45.50], [-122.69, 45.50], [-122.69, 45.51], [-122.70, 45.51], [-122.70, 45.50]]
    ]
    city = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": square},
                "properties": {"MAPLABEL": "South Burlingame", "ZIPCODES": "97239; 97219"},
            }
        ],
    }
    path = tmp_path / "neighborhoods.geojson"
    path.write_text(json.dumps(city))
    result = invoke(
        environ,
        "region",
        "import",
        str(path),
        "--name-property",
        "MAPLABEL",
        "--zips-property",
        "ZIPCODES",
        "--slug-property",
        "",
        "--aliases-property",
        "",
    )
    assert result.exit_code == 0, result.output
    with services.database.session() as session:
        area = session.scalars(select(Area)).one()
    assert (area.slug, area.name, area.zips, area.region) == (
        "south-burlingame",
        "South Burlingame",
        ["97239", "97219"],
        "neighborhoods",
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"type": "Feature"}', "FeatureCollection"),
    ],
)
def test_a_bad_region_file_is_a_clear_error(
    services: Services, environ: dict[str, str], tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.geojson"
    path.write_text(content)
    result = invoke(environ, "region", "import", str(path))
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and message in result.output
    assert "Traceback" not in result.output
    assert count(services, Area) == 0


def test_a_responder_is_stored_sealed(
    services: Services, environ: dict[str, str], region: None
) -> None:
    result = invoke(
        environ,
        "responder",
        "add",
        "--name",
        "Dana",
        "--phone",
        "(503) 555-0188",
        "--area",
        "cully",
        "--area",
        "Lents",
        "--lang",
        "es",
    )
    assert result.exit_code == 0, result.output
    assert "•••-0188" in result.output and "5550188" not in result.output
    with services.database.session() as session:
        responder = session.scalars(select(Responder)).one()
        assert (
            services.cipher.decrypt(responder.phone_sealed, Purpose.RESPONDER_PHONE)
            == "+15035550188"
        )
        assert sorted(area.slug for area in responder.areas) == ["cully", "lents"]
        assert responder.language.value == "es"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--phone", "12"], "not a valid phone number"),
        (["--phone", "call me maybe"], "not a phone number"),
        (["--phone", "503-555-0188", "--area", "atlantis"], "no area called 'atlantis'"),
    ],
)
def test_bad_responder_input_is_refused(
    services: Services, environ: dict[str, str], region: None, args: list[str], message: str
) -> None:
    base = {"--name": "Dana", "--phone": "503-555-0188", "--area": "cully"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    flat = [part for item in {**base, **given}.items() for part in item]
    result = invoke(environ, "responder", "add", *flat)
    assert result.exit_code == 2 and message in result.output
    assert count(services, Responder) == 0


def test_a_responder_number_cannot_be_added_twice(
    services: Services, environ: dict[str, str], region: None
) -> None:
    args = ["responder", "add", "--name", "Dana", "--phone", "503-555-0188", "--area", "cully"]
    assert invoke(environ, *args).exit_code == 0
    again = invoke(environ, *args[:-3], "+1 503 555 0188", "--area", "cully")
    assert again.exit_code == 1 and "already exists" in again.output


def test_a_user_gets_a_generated_password_shown_once(
    services: Services, environ: dict[str, str]
) -> None:
    result = invoke(environ, "user", "add", "--email", "Maria@Example.org", "--role", "dispatcher")
    assert result.exit_code == 0, result.output
    password = result.output.split("Password (shown once): ")[1].strip()
    with services.database.session() as session:
        user = session.scalars(select(StaffUser)).one()
    assert user.email == "maria@example.org" and user.role.value == "dispatcher"
    assert user.password_hash.startswith("$argon2id$")
    assert verify_password(user.password_hash, password)


def test_a_responder_account_is_linked_to_its_responder(
    services: Services, environ: dict[str, str]
) -> None:
    from tests.web.test_access import build_world

    world = build_world(services)
    result = invoke(
        environ, "user", "add", "--email", "rosa@example.org", "--role", "responder",
        "--responder-id", str(world.responder_id),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with services.database.session() as session:
        user = session.scalars(select(StaffUser)).one()
    assert user.responder_id == world.responder_id and user.totp_enrolled_at is None


def test_a_user_password_can_come_from_stdin(services: Services, environ: dict[str, str]) -> None:
    result = invoke(
        environ,
        "user",
        "add",
        "--email",
        "a@example.org",
        "--role",
        "coordinator",
        "--password-file",
        "-",
        stdin="correct horse battery\n",
    )
    assert result.exit_code == 0 and "shown once" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "nobody", "--role", "dispatcher"], "not an email address"),
        (["--email", "a@example.org", "--role", "admin"], "Invalid value for '--role'"),
        (
            ["--email", "a@example.org", "--role", "responder", "--responder-id", "999"],
            "no responder has that id",
        ),
    ],
)
def test_bad_user_input_is_refused(
    services: Services, environ: dict[str, str], args: list[str], message: str
) -> None:
    result = invoke(environ, "user", "add", *args)
    assert result.exit_code in (1, 2) and message in result.output
    assert count(services, StaffUser) == 0


def test_a_short_password_is_refused(services: Services, environ: dict[str, str]) -> None:
    result = invoke(
        environ,
        "user",
        "add",
        "--email",
        "a@example.org",
        "--role",
        "dispatcher",
        "--password-file",
        "-",
        stdin="short\n",
    )
    assert result.exit_code == 1 and "at least 12 characters" in result.output


def test_routes_come_free_with_flask(services: Services, environ: dict[str, str]) -> None:
    result = invoke(environ, "routes")
    assert result.exit_code == 0 and "/healthz" in result.output


def test_a_city_file_imports_feature_by_feature_and_reports_its_simplification(
    services: Services, environ: dict[str, str], tmp_path: Path
) -> None:
    city = make_city(detail_m=30)
    city["features"].append(dict(city["features"][0]))  # a duplicate, as real files have
    path = tmp_path / "city.geojson"
    path.write_text(json.dumps(city))
    result = invoke(environ, "region", "import", str(path))
    assert result.exit_code == 0, result.output
    areas = len(city["features"]) - 1
    assert result.output.startswith(f"{areas} areas added, 0 updated.")
    assert "1 feature(s) left out:" in result.output
    assert f"feature {areas} ('Alameda'): duplicate slug 'alameda'" in result.output
    assert "Boundaries simplified to 5 m, shared borders kept together" in result.output
    assert "alameda" in result.output.split("area change")[1]  # a line per area
    assert count(services, Area) == areas


def test_a_large_file_kept_at_full_detail_gets_a_warning(
    services: Services, environ: dict[str, str], tmp_path: Path
) -> None:
    path = write_city(tmp_path / "big.geojson", detail_m=8)
    assert path.stat().st_size > LARGE_REGION_FILE_BYTES
    result = invoke(environ, "region", "import", str(path), "--simplify-meters", "0")
    assert result.exit_code == 0, result.output
    assert "Warning: this file is" in result.output and "--simplify-meters 5" in result.output


def test_web_says_when_the_socket_port_is_taken(environ: dict[str, str]) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        busy = taken.getsockname()[1]
        result = CliRunner().invoke(
            cli,
            [
                "web",
                "--port",
                str(busy + 1 if busy < 65535 else busy - 1),
                "--socket-port",
                str(busy),
            ],
            env=environ,
        )
    assert result.exit_code == 2
    assert f"port {busy} (the boards' sockets) is in use" in result.output
    same = CliRunner().invoke(cli, ["web", "--port", "5300", "--socket-port", "5300"], env=environ)
    assert same.exit_code == 2 and "must differ from --port" in same.output


def test_the_audit_checkpoint_and_verify_commands(
    services: Services, environ: dict[str, str]
) -> None:
    from rapidresponse import audit
    from tests.rapidresponse.test_audit_checkpoint import rewrite_whole_chain

    assert invoke(environ, "audit", "checkpoint").exit_code == 1  # nothing recorded yet
    with services.database.session() as session:
        for n in range(3):
            audit.record(session, actor="operator:cli", action="incident.closed", subject=f"i:{n}")
    kept = invoke(environ, "audit", "checkpoint").output.strip()
    assert kept.startswith("rr-audit:3:")
    intact = invoke(environ, "audit", "verify", "--against", kept)
    assert intact.exit_code == 0 and "matches every checkpoint" in intact.output
    assert invoke(environ, "audit", "verify", "--against", "nonsense").exit_code == 2

    rewrite_whole_chain(services.database, position=2)
    assert invoke(environ, "audit", "verify").exit_code == 0  # the chain alone cannot tell
    caught = invoke(environ, "audit", "verify", "--against", kept)
    assert caught.exit_code == 1 and "rewritten since" in caught.output
