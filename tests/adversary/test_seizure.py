"""The seizure test: whoever copies the server's disk cannot name a reporter.

A day of traffic runs through the real processes (`rapidresponse demo`: web, worker,
the embedded transport Redis with its append-only file, the volatile Redis, SQLite),
sending through a local Twilio. Reporters text from a small number space (all 10,000
numbers 503-555-xxxx, so a brute force is fast here); web reporters come from known
addresses. The clock is advanced past the reporter windows, every process is killed
with SIGKILL (no clean shutdown, no last flush), and everything under instance/ is
copied. Then the adversary tries every number under every key found on that copy.

It runs as production does on the points that matter here: PROVIDER_REDACTION is on
(every message id waits, sealed, for its deletion at Twilio), and a responder's
confirmation sends an alert (ALERT_POLICY=auto) whose deliveries get their status
callbacks, so that delivery ids too are written and then forgotten.

A control makes sure the attack works: the same brute force does name a subscriber
(whose number is stored by design, sealed and blind-indexed under INDEX_KEY).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from dispatch.redaction import redact_due
from dispatch.redis_conn import connect
from dispatch.reporter_keys import KEY_PREFIX
from dispatch.senders import twilio_sender
from dispatch.volatile import VOLATILE_DIRECTORY
from rapidresponse import redaction
from rapidresponse.broadcast import forget_provider_ids
from rapidresponse.config import Settings
from rapidresponse.crypto import DecryptionError, FieldCipher, Purpose
from rapidresponse.db import Database
from rapidresponse.models import (
    Alert,
    Area,
    Base,
    Delivery,
    Dispatch,
    Incident,
    IncidentComment,
    IncidentState,
    ProviderRedaction,
    Report,
    utcnow,
)
from rapidresponse.reports import expired_incidents, forget_reporter_links, purge_report_texts
from rapidresponse.shredding import ShreddingCipher, ShredKeys, incident_key, shred_expired_keys
from tests.demo_process import running_demo
from tests.dispatch.conftest import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import new_sid, sign, twiml_message

pytestmark = [pytest.mark.slow, pytest.mark.sends_through_api]

NUMBER_SPACE = [f"+1503555{n:04d}" for n in range(10_000)]
SUBSCRIBER = "+15035559001"  # the control: stored by design
DISPATCHER_COMMENT = "Ana's cousin saw them take a neighbour on Prescott"
WEB_ADDRESSES = ["198.51.100.23", "203.0.113.77", "192.0.2.144"]
SIGHTINGS = [
    "ICE van and agents at NE 42nd and Killingsworth, Cully",
    "hay agentes de inmigracion en Cully cerca de la escuela",
    "two unmarked trucks on Killingsworth in Cully",
    "agents knocking on doors in Montavilla near 82nd",
    "vans parked by the Lents park",
]


@dataclass
class Running:
    url: str
    instance: Path
    process: subprocess.Popen[bytes]
    log: Path
    database_url: str
    twilio_url: str
    texted: list[str] = field(default_factory=list)  # the id of every text we sent it

    def settings(self) -> Settings:
        return Settings.from_env(
            {
                "INSTANCE_PATH": str(self.instance),
                "DATABASE_URL": self.database_url,
                "SMS_BACKEND": "twilio",
                "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
                "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
                "TWILIO_FROM": FROM_NUMBER,
                "TWILIO_API_URL": self.twilio_url,
                "PROVIDER_REDACTION": "on",
            }
        )

    def text(self, number: str, body: str, sid: str | None = None, **extra: str) -> str | None:
        url = self.url + "/sms/inbound"
        params = {"From": number, "Body": body, "MessageSid": sid or new_sid(), **extra}
        self.texted.append(params["MessageSid"])
        response = requests.post(
            url, data=params, headers={"X-Twilio-Signature": sign(params, url)}, timeout=30
        )
        assert response.status_code == 200, response.text
        return twiml_message(response.text)

    def web_report(self, address: str, what: str) -> None:
        session = requests.Session()
        headers = {"X-Forwarded-For": address}
        form = session.get(self.url + "/report", headers=headers, timeout=30).text
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', form)
        assert token, "no CSRF token on the form"
        data = {
            "location": "Cully",
            "activity": what,
            "eyewitness": "self",
            "csrf_token": token.group(1),
        }
        response = session.post(self.url + "/report", data=data, headers=headers, timeout=30)
        assert response.status_code in (200, 303), response.text[:500]


SEIZED_DATABASE = "rapidresponse_seizure_test"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url_for_the_server(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite under instance/ (the embedded default), or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'instance' / 'rapidresponse.sqlite3'}"
    given = os.environ.get("TEST_DATABASE_URL")
    if not given:
        pytest.skip("only on PostgreSQL: set TEST_DATABASE_URL (CI does)")
    admin = make_url(
        Settings.from_env({"DATABASE_URL": given, "INSTANCE_PATH": str(tmp_path)}).database_url
    )
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {SEIZED_DATABASE} WITH (FORCE)"))
        connection.execute(text(f"CREATE DATABASE {SEIZED_DATABASE}"))
    engine.dispose()
    return admin.set(database=SEIZED_DATABASE).render_as_string(hide_password=False)


@pytest.fixture
def server(tmp_path: Path, fake: FakeTwilio, database_url_for_the_server: str) -> Iterator[Running]:
    with running_demo(
        tmp_path,
        DATABASE_URL=database_url_for_the_server,
        SMS_BACKEND="twilio",
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_FROM=FROM_NUMBER,
        TWILIO_API_URL=fake.url,
        TRUSTED_PROXIES="1",  # the addresses come in X-Forwarded-For, as behind a proxy
        SEND_RATE="unlimited",
        PROVIDER_REDACTION="on",  # production's default
        ALERT_POLICY="auto",  # a confirmation sends its alert without a dispatcher
    ) as demo:
        yield Running(
            demo.url,
            tmp_path / "instance",
            demo.process,
            demo.log,
            database_url_for_the_server,
            fake.url,
        )


def drive_a_day(server: Running, rng: random.Random) -> tuple[list[str], list[str]]:
    """Reports by SMS (with follow-ups and language choices) and by the web form."""
    reporters = rng.sample(NUMBER_SPACE[:9000], 12)
    sids = []
    for n, number in enumerate(reporters):
        sid = new_sid()
        sids.append(sid)
        if n % 3 == 0:
            server.text(number, "LANG ES")  # a non-subscriber's language choice
        # The first report (of Cully, the incident purged later) is pinned: its incident
        # takes those coordinates.
        pin = {"Latitude": "45.5571", "Longitude": "-122.6163"} if n == 0 else {}
        answer = server.text(number, SIGHTINGS[n % len(SIGHTINGS)], sid=sid, **pin)
        assert answer is not None
        if n % 2 == 0:
            server.text(number, "they are still there, 3 agents")  # a follow-up
    for address in WEB_ADDRESSES:
        server.web_report(address, "agents at the corner store")
    assert server.text(SUBSCRIBER, "JOIN Cully") is not None
    assert server.text(SUBSCRIBER, "YES") is not None
    return reporters, sids


ANA = "+15035550101"  # the demo's responder for Cully
RESPONDER_NOTE = "they took the neighbour from the blue house by the school"


def confirm_and_alert(server: Running, fake: FakeTwilio) -> None:
    """Ana is paged for Cully, goes and confirms with a note; the alert goes out and
    Twilio reports its deliveries delivered."""
    wait_for(lambda: any(m.to == ANA for m in fake.messages), "a page to Ana")
    code = cully_incident_code(server)
    assert server.text(ANA, f"{code} GO") is not None
    assert server.text(ANA, f"{code} CONFIRM {RESPONDER_NOTE}") is not None
    wait_for(lambda: any(m.to == SUBSCRIBER for m in fake.messages), "the alert")
    _, deliveries = sent_by_kind(fake)
    assert deliveries, "the alert went out without status callbacks"
    for sid in deliveries:
        assert fake.send_status_callback(sid, "delivered", via=server.url) == 200


def sent_by_kind(fake: FakeTwilio) -> tuple[list[str], list[str]]:
    """The ids of the messages sent so far: pages and replies, and alert deliveries."""
    messages = list(fake.messages)
    deliveries = [m.sid for m in messages if "delivery=" in (m.status_callback or "")]
    return [m.sid for m in messages if m.sid not in deliveries], deliveries


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"no {what} within {seconds} s"
        time.sleep(0.2)


def cully_incident_code(server: Running) -> str:
    database = Database(server.settings().database_url)
    try:
        with database.session() as session:
            codes = session.scalars(
                select(Incident.code)
                .join(Area, Area.id == Incident.area_id)
                .where(Area.slug == "cully", Incident.state != IncidentState.CLOSED)
            ).all()
    finally:
        database.dispose()
    assert len(set(codes)) == 1, codes
    return codes[0]


def sealed_ids_waiting(server: Running) -> list[bytes]:
    """The message ids waiting for their deletion at Twilio, as they are stored."""
    database = Database(server.settings().database_url)
    try:
        with database.session() as session:
            rows = session.scalars(select(ProviderRedaction)).all()
            assert rows and all(row.sid is None for row in rows)
            return [row.sid_sealed for row in rows if row.sid_sealed is not None]
    finally:
        database.dispose()


def forget_and_redact(server: Running, later: datetime) -> int:
    """Housekeeping at ``later``: delivery ids forgotten, every message deleted at Twilio,
    the keys of the ids destroyed. Returns how many were deleted."""
    settings = server.settings()
    database = Database(settings.database_url)
    cipher = ShreddingCipher(settings.data_keys, ShredKeys(settings.shred_keys_path))
    settle = timedelta(minutes=settings.alert_validity_minutes) + redaction.SETTLE
    try:
        with database.session() as session:
            assert forget_provider_ids(session, later, settle, redact=cipher) > 0
        sender = twilio_sender(settings)
        done = redact_due(database, cipher, sender, later)
        assert done["failed"] == 0
        # The ids scheduled at ``later`` are sealed under its hour's key: it goes once
        # the next hour is over too, at a later run.
        redact_due(database, cipher, sender, later + 2 * redaction.KEY_GRACE)
        with database.session() as session:
            assert session.scalar(select(func.count()).select_from(ProviderRedaction)) == 0
            assert not session.scalars(
                select(Delivery.id).where(Delivery.provider_sid.is_not(None))
            ).all()
    finally:
        database.dispose()
    assert not [name for name in cipher.shred_keys.names() if name.startswith("redaction-")]
    return done["deleted"]


def live_links(server: Running) -> tuple[list[bytes], set[str]]:
    """While it runs: the reporter keys in the volatile Redis, the hashes on the reports."""
    volatile = connect(f"unix://{server.instance / VOLATILE_DIRECTORY / 'redis.sock'}")
    try:
        keys = [volatile.get(name) for name in volatile.scan_iter(match=f"{KEY_PREFIX}*")]
    finally:
        volatile.close()
    database = Database(server.settings().database_url)
    try:
        with database.session() as session:
            hashes = set(session.scalars(select(Report.reporter_hash)).all()) - {None}
    finally:
        database.dispose()
    return [key for key in keys if isinstance(key, bytes)], {h for h in hashes if h}


@dataclass
class Purged:
    """What the retention schedule erased: the tokens that held it, and its keys."""

    tokens: list[bytes]
    keys: list[bytes]
    texts: list[str]
    kept: bytes  # a report of an incident within its retention: the control


def advance_past_the_windows_and_retention(server: Running) -> Purged:
    """What housekeeping does once the reporter windows are over and, for one closed
    incident, its retention (injected time: the jobs' own functions, with a later now)."""
    settings = server.settings()
    database = Database(settings.database_url)
    shred_keys = ShredKeys(settings.shred_keys_path)
    lifetime = timedelta(
        minutes=settings.reporter_window_minutes + settings.report_follow_up_minutes
    )
    retention = timedelta(days=settings.report_retention_days)
    try:
        with database.session() as session:
            assert forget_reporter_links(session, utcnow() + lifetime, lifetime) > 0
            incident_id, tokens, texts, kept = _the_incident_to_purge(session, settings)
            key = shred_keys.key(incident_key(incident_id))
            long_ago = utcnow() - retention - timedelta(days=1)
            session.execute(
                update(Incident)
                .where(Incident.id == incident_id)
                .values(state=IncidentState.CLOSED, closed_at=long_ago)
            )
        with database.session() as session:
            assert purge_report_texts(session, retention) >= 1
            expired = expired_incidents(session, retention, utcnow())
        destroyed = shred_expired_keys(shred_keys, expired, date(2000, 1, 1))
        assert incident_key(incident_id) in destroyed
    finally:
        database.dispose()
    return Purged(tokens, [key], texts, kept)


def _the_incident_to_purge(
    session: Session, settings: Settings
) -> tuple[int, list[bytes], list[str], bytes]:
    """The first report's incident: its sealed values and texts, and, as a control, a
    sealed text of another incident (one that stays)."""
    first = session.scalars(select(Report).order_by(Report.id)).first()
    assert first is not None and first.incident_id is not None
    incident_id = first.incident_id
    reports = session.scalars(select(Report).where(Report.incident_id == incident_id)).all()
    tokens = [t for r in reports for t in (r.text_sealed, r.location_sealed) if t]
    # Its coordinates, its responder's note, its alert's texts: sealed under the same key.
    incident = session.get_one(Incident, incident_id)
    notes = session.scalars(
        select(Dispatch.note_sealed).where(
            Dispatch.incident_id == incident_id, Dispatch.note_sealed.is_not(None)
        )
    ).all()
    alert_texts = session.scalars(
        select(Alert.texts_sealed).where(
            Alert.incident_id == incident_id, Alert.texts_sealed.is_not(None)
        )
    ).all()
    assert incident.location_sealed is not None and notes and alert_texts
    tokens += [incident.location_sealed, *notes, *alert_texts]
    cipher = ShreddingCipher(settings.data_keys, ShredKeys(settings.shred_keys_path))
    texts = [cipher.decrypt(r.text_sealed, Purpose.REPORT_TEXT) for r in reports if r.text_sealed]
    assert [cipher.decrypt(note, Purpose.DISPATCH_NOTE) for note in notes] == [RESPONDER_NOTE]
    texts.append(RESPONDER_NOTE)
    # A dispatcher's comment on it goes with its reports' text.
    comment = IncidentComment(
        incident_id=incident_id,
        text_sealed=cipher.seal(
            incident_key(incident_id), DISPATCHER_COMMENT, Purpose.INCIDENT_COMMENT
        ),
    )
    session.add(comment)
    assert comment.text_sealed is not None
    tokens.append(comment.text_sealed)
    texts.append(DISPATCHER_COMMENT)
    kept = session.scalars(
        select(Report.text_sealed).where(
            Report.incident_id != incident_id, Report.text_sealed.is_not(None)
        )
    ).first()
    assert texts and kept is not None
    return incident_id, tokens, texts, kept


def seize(server: Running, into: Path) -> Path:
    os.killpg(server.process.pid, signal.SIGKILL)  # everything: demo, web, worker, both Redis
    server.process.wait()
    time.sleep(0.5)  # the children die with their parent (PR_SET_PDEATHSIG)
    copy = into / "seized"
    shutil.copytree(server.instance, copy, ignore=shutil.ignore_patterns("*.sock"))
    return copy


@dataclass
class Disk:
    """Everything the adversary holds: every byte of every file, and every key on it."""

    blob: bytes
    keys: list[bytes]

    @classmethod
    def of(cls, folder: Path, database_url: str) -> Disk:
        blob = b"\n".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())
        if database_url.startswith("postgresql"):
            blob += b"\n" + postgres_as_seized(database_url)
        keys = [*secrets_in(folder), *shred_keys_in(folder), *resp_strings_of_32_bytes(blob)]
        return cls(blob, keys)

    def opens(self, token: bytes) -> bool:
        """Whether any key on the disk opens ``token`` (for any purpose we use)."""
        purposes = [v for k, v in vars(Purpose).items() if k.isupper()]
        for key in self.keys:
            for purpose in purposes:
                try:
                    FieldCipher([key]).decrypt(token, purpose)
                except (DecryptionError, ValueError):
                    continue
                return True
        return False

    def hex_tokens(self) -> set[str]:
        return {m.decode() for m in re.findall(rb"[0-9a-f]{64}", self.blob)}


def postgres_as_seized(database_url: str) -> bytes:
    """Every row of every table, and, where this machine lets us read them, the server's
    own files (relations, pg_wal): where PostgreSQL keeps old versions of rows."""
    engine = create_engine(database_url)
    parts: list[bytes] = []
    try:
        with engine.connect() as connection:
            for table in Base.metadata.sorted_tables:
                for row in connection.execute(table.select()):
                    parts.extend(_as_bytes(value) for value in row)
            connection.execute(text("CHECKPOINT"))
            data_directory = Path(str(connection.execute(text("SHOW data_directory")).scalar()))
            oid = connection.execute(
                text("SELECT oid FROM pg_database WHERE datname = current_database()")
            ).scalar()
    finally:
        engine.dispose()
    # This database's relation files, and the write-ahead log (shared by the cluster).
    for folder in (data_directory / "base" / str(oid), data_directory / "pg_wal"):
        if not os.access(folder, os.R_OK | os.X_OK):
            pytest.skip(f"cannot read {folder}: run as root or as postgres to seize it")
        readable = (p for p in folder.rglob("*") if p.is_file() and os.access(p, os.R_OK))
        parts.extend(path.read_bytes() for path in readable)
    return b"\n".join(parts)


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def shred_keys_in(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in folder.rglob("*.key") if p.stat().st_size == 32]


def secrets_in(folder: Path) -> list[bytes]:
    found = []
    for path in folder.rglob("secrets.json"):
        for value in json.loads(path.read_text()).values():
            for part in str(value).split(","):
                try:
                    raw = base64.urlsafe_b64decode(part.strip() + "==")
                except ValueError:
                    continue
                if len(raw) == 32:
                    found.append(raw)
    return found


def resp_strings_of_32_bytes(blob: bytes) -> list[bytes]:
    """Every 32-byte value written in Redis's protocol (how a key would sit in an AOF)."""
    return [m for m in re.findall(rb"\$32\r\n(.{32})\r\n", blob, re.DOTALL)]


def brute_force(disk: Disk, candidates: list[str]) -> set[str]:
    """Candidates whose HMAC (as a reporter hash or as a blind index) lies on the disk."""
    tokens = disk.hex_tokens()
    named = set()
    for key in disk.keys:
        for candidate in candidates:
            forms = (candidate.encode(), b"phone\x00" + candidate.encode())
            for form in forms:
                if hmac.new(key, form, hashlib.sha256).hexdigest() in tokens:
                    named.add(candidate)
    return named


def test_a_seized_disk_names_no_reporter_and_reads_no_purged_text(
    server: Running, fake: FakeTwilio, tmp_path: Path
) -> None:
    reporters, sids = drive_a_day(server, random.Random(20261130))
    confirm_and_alert(server, fake)
    sealed_ids = sealed_ids_waiting(server)
    # The second control: while the window is open, the links exist, and the key names
    # every SMS reporter. Had that key reached a disk (as a daily key once did, in the
    # append-only file), the brute force below would name them all.
    keys, hashes = live_links(server)
    linked = {
        number
        for number in reporters
        for key in keys
        if hmac.new(key, number.encode(), hashlib.sha256).hexdigest() in hashes
    }
    assert linked == set(reporters)
    purged = advance_past_the_windows_and_retention(server)
    deleted = forget_and_redact(server, utcnow() + timedelta(hours=3))
    # Everything sent by now (an alert's last deliveries may have left after the callbacks).
    sent, deliveries = sent_by_kind(fake)
    # Every text it received and every message it sent, deleted at Twilio (the server's
    # own housekeeping may have taken some first, and may race ours for one: a second
    # DELETE of an id is a 404 at Twilio, which counts as done).
    assert set(fake.deleted) == {*server.texted, *sent, *deliveries} and deleted > 0
    disk = Disk.of(seize(server, tmp_path), server.database_url)
    assert disk.keys, "the adversary found no key at all: the attack would prove nothing"

    named = brute_force(disk, [*NUMBER_SPACE, *WEB_ADDRESSES])
    assert SUBSCRIBER in named  # the control: the attack works on what is stored by design
    assert not named & set(reporters), "a reporter's number was recovered"
    assert not named & set(WEB_ADDRESSES), "a web reporter's address was recovered"
    for number in reporters:
        national = number[2:]
        assert national.encode() not in disk.blob and number.encode() not in disk.blob
    for address in WEB_ADDRESSES:
        assert address.encode() not in disk.blob
    assert set(sids) <= set(server.texted)
    for sid in server.texted:
        assert sid.encode() not in disk.blob, "a received text's MessageSid outlived its use"
    for sid in sent:  # pages to responders, replies to reporters
        assert sid.encode() not in disk.blob, "a sent message's id outlived its use"
    # An alert's delivery ids pass through the status-callback queue (the transport
    # Redis's append-only file) and the deliveries table, where old copies last until
    # overwritten (README: Privacy). Each names a message already deleted at Twilio, to a
    # subscriber, whose number is stored by design.
    assert {sid for sid in deliveries if sid.encode() in disk.blob} <= set(fake.deleted)
    # Sealed while they waited (their rows may survive in the database's history), the
    # ids open under no key on the disk: the hours' keys are gone.
    assert not [token for token in sealed_ids if disk.opens(token)]

    # Erased means erased: the purged incident's key is nowhere, and nothing on the disk
    # opens what it sealed, wherever copies of those bytes survived.
    for key in purged.keys:
        assert key not in disk.blob and key not in disk.keys
    assert purged.tokens and not [token for token in purged.tokens if disk.opens(token)]
    for purged_text in purged.texts:
        assert purged_text.encode() not in disk.blob
    # The control for that: a report of an incident still within its retention opens.
    assert purged.kept in disk.blob and disk.opens(purged.kept)
