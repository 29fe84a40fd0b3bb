"""A sealed deployment's web: the hotline takes texts it cannot read, every page says
"sealed", and what came in is stored and answered once the keys are back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import func, select

from dispatch import key_custody, status_queue
from dispatch.services import Services
from dispatch.spool import SEALED_FOLDER
from rapidresponse.areas import import_areas
from rapidresponse.config import ConfigError, Settings
from rapidresponse.keyring import Keyring, split_into_shares, write_wrapped
from rapidresponse.models import ProviderRedaction, Report, Subscriber, SubscriberStatus
from rapidresponse.regions import demo_region_path, load_region_file
from tests.dispatch.test_drills_e2e import production
from tests.factories import add_subscriber
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import PUBLIC_URL, new_sid, sign, twiml_message
from web.sealed import create_sealed_app
from web.sms import store_sealed_intake

KEY_NAMES = ("SECRET_KEY", "DATA_KEYS", "INDEX_KEY")
REPORTER = "+15035550160"
NEIGHBOUR = "+15035550161"
LEAVER = "+15035550162"
SIGHTING = "ICE agents at the Lents park, two unmarked vans"


def sealed_environment(environ: dict[str, str], keyring: Keyring) -> dict[str, str]:
    """Production with its keys in a sealed keyring, none in the environment."""
    instance = Path(environ["INSTANCE_PATH"])
    instance.mkdir(parents=True, exist_ok=True)
    write_wrapped(instance / "keyring.json", split_into_shares(keyring, 2, 3).wrapped)
    return {name: value for name, value in environ.items() if name not in KEY_NAMES}


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.generate()


@pytest.fixture
def environ(environ: dict[str, str], fake: FakeTwilio, keyring: Keyring) -> dict[str, str]:
    return sealed_environment(production(environ, fake), keyring)


@pytest.fixture
def sealed_settings(environ: dict[str, str]) -> Settings:
    return Settings.from_env(environ)


@pytest.fixture
def sealed_app(sealed_settings: Settings, redis_client: Redis) -> Flask:
    return create_sealed_app(sealed_settings, redis_client)


@pytest.fixture
def unsealed(
    sealed_settings: Settings, keyring: Keyring, redis_client: Redis
) -> Iterator[Services]:
    services = Services.build(sealed_settings.with_keyring(keyring))
    with services.database.session() as session:
        import_areas(session, load_region_file(demo_region_path()), "Portland")
    yield services
    from tests.conftest import _empty_tables

    _empty_tables(services.database)
    services.close()


def text(app: Flask, number: str, body: str) -> tuple[int, str | None]:
    params = {"From": number, "Body": body, "MessageSid": new_sid()}
    client = app.test_client()
    answer = client.post("/sms/inbound", data=params, headers={"X-Twilio-Signature": sign(params)})
    kept = twiml_message(answer.get_data(as_text=True)) if answer.status_code == 200 else None
    return answer.status_code, kept


def test_a_sealed_process_holds_no_key_and_builds_nothing_that_needs_one(
    sealed_settings: Settings, environ: dict[str, str]
) -> None:
    assert sealed_settings.custody == "sealed" and not sealed_settings.holds_keys
    assert sealed_settings.intake_public is not None
    with pytest.raises(ConfigError, match="no keys yet"):
        Services.build(sealed_settings)
    with pytest.raises(ConfigError, match="unset SECRET_KEY, DATA_KEYS and INDEX_KEY"):
        Settings.from_env({**environ, "DATA_KEYS": os.urandom(32).hex()})
    broken = Path(environ["INSTANCE_PATH"]) / "keyring.json"
    broken.write_text("{not json")
    with pytest.raises(ConfigError, match="KEYRING_FILE: the keyring file is damaged"):
        Settings.from_env(environ)


def test_every_page_says_sealed_in_both_languages(sealed_app: Flask) -> None:
    client = sealed_app.test_client()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.get_json()["status"] == "sealed"
    for method, path in (("GET", "/board"), ("GET", "/login"), ("POST", "/login"), ("GET", "/")):
        page = client.open(path, method=method)
        body = page.get_data(as_text=True)
        assert page.status_code == 503, path
        assert page.headers["X-Sealed"] == "1"  # the board reloads into this page
        assert "Sealed" in body and "Sellado" in body and 'name="viewport"' in body


def test_texts_while_sealed_are_answered_and_kept_unreadable(
    sealed_app: Flask, sealed_settings: Settings
) -> None:
    assert text(sealed_app, REPORTER, SIGHTING) == (
        200,
        "Received and saved. We cannot look at it right now; it will be handled as soon as "
        "we can. Text RIGHTS to know your rights.",
    )
    status, spanish = text(sealed_app, NEIGHBOUR, "UNIRSE Lents")
    assert status == 200 and spanish is not None and spanish.startswith("Recibido y guardado")
    assert text(sealed_app, NEIGHBOUR, "STOP") == (200, None)  # the carrier answers it
    status, rights = text(sealed_app, NEIGHBOUR, "DERECHOS")
    assert status == 200 and rights is not None and "derecho" in rights.lower()
    status, long_one = text(sealed_app, REPORTER, "x" * 10_000)
    assert status == 200 and long_one is not None

    folder = sealed_settings.spool_path / SEALED_FOLDER
    files = sorted(folder.iterdir())
    assert len(files) == 5  # 4 texts; RIGHTS is answered, only its id kept (to delete it)
    for path in files:
        stored = path.read_bytes()
        for secret in (SIGHTING, REPORTER, NEIGHBOUR, REPORTER[2:], "Lents"):
            assert secret.encode() not in stored

    unsigned = sealed_app.test_client().post(
        "/sms/inbound", data={"From": REPORTER, "Body": "hi", "MessageSid": new_sid()}
    )
    assert unsigned.status_code == 403
    params = {"From": "not a number", "Body": "hi", "MessageSid": new_sid()}
    wrong = sealed_app.test_client().post(
        "/sms/inbound", data=params, headers={"X-Twilio-Signature": sign(params)}
    )
    assert wrong.status_code == 400
    assert len(list(folder.iterdir())) == 5


def test_status_callbacks_wait_on_the_queue_and_reply_ids_are_sealed(
    sealed_app: Flask, sealed_settings: Settings, redis_client: Redis
) -> None:
    client = sealed_app.test_client()
    delivery = "a" * 32
    params = {"MessageSid": new_sid(), "MessageStatus": "delivered", "To": REPORTER}
    url = f"{PUBLIC_URL}/sms/status?delivery={delivery}"
    answer = client.post(
        f"/sms/status?delivery={delivery}",
        data=params,
        headers={"X-Twilio-Signature": sign(params, url)},
    )
    assert answer.status_code == 200 and status_queue.waiting(redis_client) == 1
    assert REPORTER.encode() not in b"".join(redis_client.lrange(status_queue.QUEUE_KEY, 0, -1))
    reply = {"MessageSid": new_sid(), "MessageStatus": "sent"}
    url = f"{PUBLIC_URL}/sms/status?redact=1"
    answer = client.post(
        "/sms/status?redact=1", data=reply, headers={"X-Twilio-Signature": sign(reply, url)}
    )
    assert answer.status_code == 200
    assert len(list((sealed_settings.spool_path / SEALED_FOLDER).iterdir())) == 1
    assert redis_client.hlen(key_custody.INTAKE_PENDING) == 1  # workers will wait for it
    bad = client.post(
        "/sms/status", data={"MessageStatus": "sent"}, headers={"X-Twilio-Signature": "x"}
    )
    assert bad.status_code == 403


@pytest.mark.sends_through_api
def test_after_the_unseal_what_came_in_is_stored_in_order_and_answered(
    sealed_app: Flask,
    unsealed: Services,
    keyring: Keyring,
    fake: FakeTwilio,
    redis_client: Redis,
) -> None:
    add_subscriber(unsealed, LEAVER)
    for number, body in (
        (NEIGHBOUR, "JOIN Lents"),
        (NEIGHBOUR, "YES"),
        (REPORTER, SIGHTING),
        (LEAVER, "STOP"),
        (LEAVER, "RIGHTS"),
    ):
        assert text(sealed_app, number, body)[0] == 200
    assert redis_client.hlen(key_custody.INTAKE_PENDING) == 1
    assert store_sealed_intake(unsealed, keyring) == 4
    assert not list((unsealed.settings.spool_path / SEALED_FOLDER).iterdir())
    assert redis_client.hlen(key_custody.INTAKE_PENDING) == 0  # the workers may send now

    with unsealed.database.session() as session:
        [report] = session.scalars(select(Report)).all()
        assert report.text_sealed is not None
        assert unsealed.cipher.decrypt(report.text_sealed, "report.text") == SIGHTING
        numbers = {unsealed.index.digest(n, "phone"): n for n in (NEIGHBOUR, REPORTER, LEAVER)}
        people = {
            numbers[row.phone_index]: row.status for row in session.scalars(select(Subscriber))
        }
        scheduled = session.scalar(select(func.count()).select_from(ProviderRedaction))
    assert people[NEIGHBOUR] is SubscriberStatus.ACTIVE
    assert people[LEAVER] is SubscriberStatus.OPTED_OUT  # the STOP kept while sealed
    assert REPORTER not in people
    # Deleted at Twilio in turn: the 4 texts, the RIGHTS, and the 3 answers sent late.
    assert scheduled == 8
    answered = [m.to for m in fake.messages]
    assert NEIGHBOUR in answered and answered.count(REPORTER) == 1
    assert LEAVER not in answered  # the carrier confirmed the STOP; we say nothing more


@pytest.mark.sends_through_api
def test_a_release_cut_short_is_finished_by_the_next_round_without_doubles(
    sealed_app: Flask, unsealed: Services, keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    for number, body in ((REPORTER, "ICE at 82nd and Foster"), (NEIGHBOUR, "two vans, Lents")):
        assert text(sealed_app, number, body)[0] == 200
    calls = {"n": 0}
    keep = unsealed.spool.keep

    def full_disk_once(*args: object, **kwargs: object) -> str:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("No space left on device")
        return keep(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(unsealed.spool, "keep", full_disk_once)
    assert store_sealed_intake(unsealed, keyring) == 0  # the second could not be kept
    folder = unsealed.settings.spool_path / SEALED_FOLDER
    assert len(list(folder.glob("*.msg"))) == 1  # put back, not lost
    assert store_sealed_intake(unsealed, keyring) == 2  # the first waited in the spool
    with unsealed.database.session() as session:
        assert session.scalar(select(func.count()).select_from(Report)) == 2
    assert store_sealed_intake(unsealed, keyring) == 0
