"""A sealed production deployment, end to end, with real processes: `rapidresponse web`
(gunicorn), `rapidresponse worker`, the embedded Redis and SQLite under `instance/`,
Twilio at the local fake.

1. ``keys init`` makes a 2-of-3 keyring; the processes start sealed; texts arrive.
2. One share does not unseal; two do, and every waiting process gets the keys; what came
   in while sealed is stored; a worker started after the unseal gets its keys from the
   running processes, with no key file anywhere.
3. A panic seal in the middle of a broadcast: both workers stop within 5 s, nothing more
   reaches Twilio, the web goes back to sealed.
4. The seizure: a copy of `instance/` taken then (SQLite, the Redis append-only file, the
   wrapped keyring, the shred keys) is attacked the way a disk holder would: every
   key-sized value in every file tried as the data key, the index key (against every
   number of a 10,000-number block around the subscribers') and the shred keys' wrap
   key; none opens anything. The same attack against a development instance finds the
   keys, so it is an attack that works where keys are on the disk.
"""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from dispatch import alerts
from dispatch.processes import children_of
from dispatch.redis_conn import EmbeddedRedis
from dispatch.services import Services, install
from rapidresponse.areas import find_area, import_areas
from rapidresponse.config import Settings
from rapidresponse.crypto import BlindIndex, DecryptionError, FieldCipher, Purpose
from rapidresponse.db import Database
from rapidresponse.keyring import Keyring, read_wrapped, unwrap_with_shares
from rapidresponse.models import Alert, AlertStatus, Report, Subscriber, SubscriberStatus
from rapidresponse.regions import demo_region_path, load_region_file
from tests.demo_process import free_port
from tests.dispatch.conftest import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
from tests.dispatch.test_alerts import confirmed_incident
from tests.factories import add_many_subscribers
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import PUBLIC_URL, new_sid, sign, twiml_message
from web.sealed import create_sealed_app

pytestmark = [pytest.mark.slow, pytest.mark.sends_through_api]

REPORTER = "+15035550170"
NEIGHBOUR = "+15035550171"
SIGHTING = "ICE at the Lents Safeway, three agents in vests"
RECIPIENTS = 200
FIRST_NUMBER = 5551000  # the subscribers are +1503555 1000 ... 1199
SEAL_WITHIN = 5.0
IN_FLIGHT = 10  # SEND_CONCURRENCY: what a seal can cut in flight
PHRASE = re.compile(r"^  ([a-z]+(?: [a-z]+){19})$", re.MULTILINE)


@dataclass
class Deployment:
    env: dict[str, str]
    instance: Path
    logs: Path
    web_port: int
    processes: list[subprocess.Popen[bytes]]

    def cli(
        self, *args: str, stdin: str = "", timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "web.cli", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "web.cli", *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def health(self, port: int | None = None) -> str:
        try:
            answer = requests.get(f"http://127.0.0.1:{port or self.web_port}/healthz", timeout=5)
        except requests.RequestException:
            return "down"
        return str(answer.json().get("status", "?"))

    def text(self, number: str, body: str) -> str | None:
        params = {"From": number, "Body": body, "MessageSid": new_sid()}
        answer = requests.post(
            f"http://127.0.0.1:{self.web_port}/sms/inbound",
            data=params,
            headers={"X-Twilio-Signature": sign(params, f"{PUBLIC_URL}/sms/inbound")},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return twiml_message(answer.text)


def wait_for(what: str, check: object, timeout: float = 30) -> float:
    """Seconds until ``check()`` is true."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():  # type: ignore[operator]
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def deployment(
    tmp_path: Path, volatile_redis_url: str, cli_env: dict[str, str]
) -> Iterator[Deployment]:
    instance = tmp_path / "instance"
    logs = tmp_path / "logs"
    logs.mkdir()
    redis = EmbeddedRedis(instance / "redis")  # its files live in instance/, like the demo's
    env = {
        name: value
        for name, value in cli_env.items()
        if name not in ("SECRET_KEY", "DATA_KEYS", "INDEX_KEY", "DATABASE_URL", "REDIS_URL")
    }
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        env |= {
            "RR_ENV": "production",
            "INSTANCE_PATH": str(instance),
            "DATABASE_URL": f"sqlite:///{instance}/rapidresponse.db",
            "REDIS_URL": redis.start(),
            "VOLATILE_REDIS_URL": volatile_redis_url,
            "PUBLIC_URL": PUBLIC_URL,
            "SMS_BACKEND": "twilio",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_FROM": FROM_NUMBER,
            "TWILIO_API_URL": fake.url,
            "SEND_RATE": "25",
            "SEND_CONCURRENCY": str(IN_FLIGHT),
            "DELIVERY_LEASE_SECONDS": "5",
            "REAPER_SECONDS": "2",
            "LOG_LEVEL": "info",
        }
        running = Deployment(env, instance, logs, free_port(), [])
        running.fake = fake  # type: ignore[attr-defined]
        try:
            yield running
        finally:
            for process in running.processes:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
            for process in running.processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
            redis.stop()


def services_with(deployment: Deployment, keyring: Keyring) -> Services:
    """What the test itself opens the deployment with: the keys it was handed."""
    services = Services.build(Settings.from_env(deployment.env).with_keyring(keyring))
    install(services)  # the jobs' helpers this test calls use the process's services
    return services


def test_a_sealed_deployment_unseals_seals_and_a_copy_of_its_disk_yields_nothing(
    deployment: Deployment, tmp_path: Path
) -> None:
    fake: FakeTwilio = deployment.fake  # type: ignore[attr-defined]

    # 1. The keyring, the schema, the map; every process starts sealed.
    made = deployment.cli("keys", "init", "--shares", "3", "--threshold", "2", stdin="y\n")
    assert made.returncode == 0, made.stderr
    phrases = PHRASE.findall(made.stdout)
    assert len(phrases) == 3
    assert not (deployment.instance / "secrets.json").exists()
    assert deployment.cli("init-db").returncode == 0
    database = Database(deployment.env["DATABASE_URL"])
    with database.session() as session:
        import_areas(session, load_region_file(demo_region_path()), "Portland")
    database.dispose()

    socket_port = free_port()
    deployment.start(
        "web", "web", "--port", str(deployment.web_port), "--socket-port", str(socket_port)
    )
    first_worker = deployment.start("worker-1", "worker")
    wait_for("the sealed web", lambda: deployment.health() == "sealed")
    wait_for("the sealed sockets", lambda: deployment.health(socket_port) == "sealed")
    assert deployment.text(REPORTER, SIGHTING) is not None
    assert deployment.text(NEIGHBOUR, "JOIN Lents") is not None
    assert deployment.text(NEIGHBOUR, "YES") is not None
    wait_for("the worker to wait", lambda: "waiting for the keys" in deployment.log("worker-1"))

    # 2. One share is not enough; two are. The processes waiting get the keys.
    one = deployment.cli("keys", "unseal", "--hold", "1", stdin=phrases[0] + "\n")
    assert one.returncode != 0 and deployment.health() == "sealed"
    two = deployment.cli("keys", "unseal", "--hold", "3", stdin=f"{phrases[2]}\n{phrases[0]}\n")
    assert two.returncode == 0, two.stdout + two.stderr
    handed = int(re.search(r"Keys handed to (\d+) waiting", two.stdout).group(1))  # type: ignore[union-attr]
    assert handed >= 2  # the web process and the worker
    wait_for("the web to unseal", lambda: deployment.health() == "ok")
    wait_for("the sockets to unseal", lambda: deployment.health(socket_port) == "ok")
    wait_for("the worker's keys", lambda: "keys received" in deployment.log("worker-1"))

    keyring = unwrap_with_shares(read_wrapped(deployment.instance / "keyring.json"), phrases[1:])
    services = services_with(deployment, keyring)
    try:
        spool = deployment.instance / "spool"
        wait_for(
            "the texts kept while sealed to be stored",
            lambda: services_count(services, Report) and not list(spool.rglob("*.msg")),
        )
        with services.database.session() as session:
            [report] = session.scalars(select(Report)).all()
            assert report.text_sealed is not None
            assert services.cipher.decrypt(report.text_sealed, Purpose.REPORT_TEXT) == SIGHTING
            neighbour = session.scalar(
                select(Subscriber).where(
                    Subscriber.phone_index == services.index.digest(NEIGHBOUR, "phone")
                )
            )
            assert neighbour is not None and neighbour.status is SubscriberStatus.ACTIVE
            lents = find_area(session, "lents")
            assert lents is not None
            lents_id = lents.id

        # A worker started now, after `keys unseal` is gone, gets its keys from the others.
        second_worker = deployment.start("worker-2", "worker", "--no-scheduler")
        wait_for("the late worker's keys", lambda: "keys received" in deployment.log("worker-2"))

        # 3. A broadcast, and a panic seal in its middle.
        add_many_subscribers(services, lents_id, RECIPIENTS, first=FIRST_NUMBER)
        alert_id = alerts.alert_for_incident(confirmed_incident(services, lents_id, "S3AL"))
        assert alert_id is not None
        alerts.approve_alert(services, alert_id)
        wait_for("the broadcast to start", lambda: len(fake.messages) >= 20)
        forks = [
            child for worker in (first_worker, second_worker) for child in children_of(worker.pid)
        ]
        assert forks  # the scheduler, a work horse: copies of the keys in memory too
        sealed = deployment.cli("keys", "seal")
        sealed_at = time.monotonic()
        assert sealed.returncode == 0, sealed.stderr
        for worker in (first_worker, second_worker):
            assert worker.wait(timeout=SEAL_WITHIN) == 75  # EX_TEMPFAIL: restart me, sealed
        assert time.monotonic() - sealed_at < SEAL_WITHIN
        assert [pid for pid in forks if is_alive(pid)] == []  # no fork outlives the seal
        sent_by_then = len(fake.messages)
        assert sent_by_then < RECIPIENTS + 2, "the broadcast finished before the seal"
        wait_for("the web to seal", lambda: deployment.health() == "sealed", timeout=SEAL_WITHIN)
        wait_for(
            "the sockets to seal",
            lambda: deployment.health(socket_port) == "sealed",
            timeout=SEAL_WITHIN,
        )
        time.sleep(2)
        assert len(fake.messages) == sent_by_then  # nothing more leaves
        subscriber_rows = read_subscribers(services)

        # 4. The seizure: a copy of everything under instance/, taken now.
        image = tmp_path / "seized"
        shutil.copytree(deployment.instance, image, ignore=shutil.ignore_patterns("*.sock"))
        attack_the_copy(image, keyring, subscriber_rows, deployment.env)

        # 5. Unsealed again, the broadcast the seal cut goes on: everyone once, nobody
        # lost (a send cut in flight may be repeated: bounded by the in-flight window).
        again = deployment.cli(
            "keys", "unseal", "--hold", "3", stdin=f"{phrases[0]}\n{phrases[1]}\n"
        )
        assert again.returncode == 0, again.stdout + again.stderr
        deployment.start("worker-3", "worker")  # the supervisor's restart
        wait_for("the broadcast to complete", lambda: alert_complete(services, alert_id), 90)
        reached = Counter(message.to for message in fake.messages)
        numbers = [f"+1503{FIRST_NUMBER + n:07d}" for n in range(RECIPIENTS)]
        assert [n for n in numbers if reached[n] == 0] == []
        assert sum(reached[n] - 1 for n in numbers) <= 2 * IN_FLIGHT
    finally:
        install(None)
        services.close()


def attack_the_copy(
    image: Path, keyring: Keyring, subscriber_rows: list[tuple[str, bytes]], env: dict[str, str]
) -> None:
    """What a disk holder does with the copy: look for keys, brute-force the numbers, try
    every sealed value and the shred keys, and start the software."""
    for form in key_forms(keyring):
        for path in files_in(image):
            assert form not in path.read_bytes(), f"a key in {path.relative_to(image)}"
    found = attack(image, subscriber_rows)
    assert found.numbers == [] and found.opened == 0 and found.shred_keys_opened == 0
    assert found.candidates > 0  # the attack had material to try
    blobs = sealed_values(image / "rapidresponse.db")
    assert len(blobs) > RECIPIENTS  # numbers, the report, TOTP secrets, the alert's texts...
    assert values_opened(blobs, key_candidates(image)) == 0
    assert values_opened(blobs, list(keyring.data_keys)) >= RECIPIENTS  # with the real key
    seized = Settings.from_env({**env, "INSTANCE_PATH": str(image)})
    assert seized.custody == "sealed" and not seized.holds_keys
    served = create_sealed_app(seized, None)  # type: ignore[arg-type]  # needs no Redis here
    login = served.test_client().post("/login", data={"email": "a@example.org", "password": "x"})
    assert login.status_code == 503


def test_the_same_attack_finds_the_keys_of_a_development_instance(
    tmp_path: Path, environ: dict[str, str]
) -> None:
    """The control: where the keys are on the disk, the same attack rebuilds the list."""
    instance = tmp_path / "dev-instance"
    env = {
        name: value
        for name, value in environ.items()
        if name not in ("SECRET_KEY", "DATA_KEYS", "INDEX_KEY", "DATABASE_URL")
    }
    env |= {"INSTANCE_PATH": str(instance), "DATABASE_URL": f"sqlite:///{instance}/dev.db"}
    settings = Settings.from_env(env)
    assert settings.custody == "development"
    from rapidresponse.db import upgrade

    upgrade(settings.database_url)
    services = Services.build(settings)
    try:
        with services.database.session() as session:
            import_areas(session, load_region_file(demo_region_path()), "Portland")
            area = find_area(session, "lents")
            assert area is not None
            area_id = area.id
        add_many_subscribers(services, area_id, 3, first=FIRST_NUMBER + 42)
        rows = read_subscribers(services)
    finally:
        services.close()
    found = attack(instance, rows)
    assert sorted(found.numbers) == [f"+1503{FIRST_NUMBER + 42 + n}" for n in range(3)]
    assert found.opened == 3


# --- the attacker's side ----------------------------------------------------------------


@dataclass
class Findings:
    candidates: int
    numbers: list[str]  # numbers whose blind index was matched
    opened: int  # sealed phone numbers opened
    shred_keys_opened: int


def attack(image: Path, subscribers: list[tuple[str, bytes]]) -> Findings:
    """What a disk holder does: every key-sized value in every file, tried as each key."""
    candidates = key_candidates(image)
    indexes = {index for index, _ in subscribers}
    space = [f"+1503{FIRST_NUMBER + n:07d}" for n in range(-5000, 5000)]
    numbers: list[str] = []
    opened = 0
    for candidate in candidates:
        index = BlindIndex(candidate)
        numbers += [n for n in space if index.digest(n, "phone") in indexes]
        cipher = FieldCipher([candidate])
        for _, sealed in subscribers:
            with contextlib.suppress(DecryptionError):
                cipher.decrypt(sealed, Purpose.SUBSCRIBER_PHONE)
                opened += 1
    return Findings(len(candidates), numbers, opened, shred_keys_opened(image, candidates))


def key_candidates(image: Path) -> list[bytes]:
    found: set[bytes] = set()
    for path in files_in(image):
        data = path.read_bytes()
        if len(data) == 32:
            found.add(data)
        for token in re.findall(rb"[A-Za-z0-9+/_-]{43}=?", data):
            with contextlib.suppress(ValueError):
                raw = base64.urlsafe_b64decode(
                    token.replace(b"+", b"-").replace(b"/", b"_") + b"=" * (-len(token) % 4)
                )
                if len(raw) == 32:
                    found.add(raw)
        for token in re.findall(rb"[0-9a-f]{64}", data):
            found.add(bytes.fromhex(token.decode()))
    return sorted(found)


def shred_keys_opened(image: Path, candidates: list[bytes]) -> int:
    """Shred key files opened with a candidate wrap key (or holding a bare key)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    opened = 0
    for path in (image / "shred-keys").glob("*.key") if (image / "shred-keys").is_dir() else []:
        stored = path.read_bytes()
        if len(stored) == 32:
            opened += 1
            continue
        for candidate in candidates:
            with contextlib.suppress(InvalidTag, ValueError):
                AESGCM(candidate).decrypt(stored[2:14], stored[14:], path.stem.encode())
                opened += 1
    return opened


def sealed_values(database: Path) -> list[bytes]:
    """Every value in every table of the copied database that looks sealed."""
    found: list[bytes] = []
    with contextlib.closing(sqlite3.connect(database)) as connection:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        for table in tables:
            for row in connection.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - our copy
                found += [
                    value
                    for value in row
                    if isinstance(value, bytes) and value[:1] == b"\x01" and len(value) > 33
                ]
    return found


def values_opened(blobs: list[bytes], candidates: list[bytes]) -> int:
    purposes = [value for name, value in vars(Purpose).items() if name.isupper()]
    opened = 0
    for candidate in candidates:
        cipher = FieldCipher([candidate])
        for blob in blobs:
            for purpose in purposes:
                with contextlib.suppress(DecryptionError):
                    cipher.decrypt(blob, purpose)
                    opened += 1
    return opened


def alert_complete(services: Services, alert_id: int) -> bool:
    with services.database.session() as session:
        return session.get_one(Alert, alert_id).status is AlertStatus.COMPLETE


def is_alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie holds no memory


def read_subscribers(services: Services) -> list[tuple[str, bytes]]:
    with services.database.session() as session:
        return [(row.phone_index, row.phone_sealed) for row in session.scalars(select(Subscriber))]


def services_count(services: Services, model: type) -> int:
    with services.database.session() as session:
        return len(session.scalars(select(model)).all())


def files_in(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def key_forms(keyring: Keyring) -> list[bytes]:
    raw = [*keyring.data_keys, keyring.index_key, keyring.shred_wrap_key, keyring.intake_key]
    return [keyring.secret_key.encode()] + [
        form
        for key in raw
        for form in (key, base64.b64encode(key), base64.urlsafe_b64encode(key), key.hex().encode())
    ]
