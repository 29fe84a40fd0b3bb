"""``rapidresponse demo``: the whole system on embedded defaults, in one command.

It starts the embedded Redis, prepares the database with the approximate Portland region,
a few fictional responders and subscribers and a coordinator login (with its
authenticator enrolled, shown as a QR code in the terminal), then runs the web app and a worker
(with the scheduler) as child processes until Ctrl-C, when it stops all of them and
Redis. The children are in their own sessions and die with us even on kill -9, so
nothing is left running.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import segno
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.processes import die_with_parent_hook, stop_process
from dispatch.volatile import RedisForChildren, redis_for_children
from rapidresponse.areas import find_area, import_areas
from rapidresponse.config import Settings
from rapidresponse.crypto import BlindIndex, FieldCipher
from rapidresponse.db import Database, upgrade
from rapidresponse.models import Area, Language, StaffRole, StaffUser, utcnow
from rapidresponse.passwords import generate_password
from rapidresponse.people import (
    AlreadyExists,
    add_confirmed_subscriber,
    add_responder,
    add_staff_user,
    find_responder,
    set_password,
)
from rapidresponse.regions import demo_region_path, load_region_file
from rapidresponse.staff import begin_enrolment, provisioning_uri, totp_secret

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_SECONDS = 60.0
DEMO_REGION = "Portland, Oregon (approximate demo)"
DEMO_LOGIN = "coordinator@demo.rapidresponse.example"


@dataclass(frozen=True)
class DemoPerson:
    """One of the demo's fictional cast: a responder or a subscriber."""

    name: str
    phone: str  # 555-01xx: reserved for fiction, never a real phone
    areas: tuple[str, ...]  # area slugs
    language: Language


DEMO_RESPONDERS = (
    DemoPerson("Ana (demo)", "+15035550101", ("cully", "parkrose", "concordia"), Language.ES),
    DemoPerson("Ben (demo)", "+15035550102", ("st-johns", "portsmouth", "kenton"), Language.EN),
    DemoPerson(
        "Carla (demo)", "+15035550103", ("lents", "foster-powell", "montavilla"), Language.ES
    ),
)
# Already subscribed (JOIN + YES), so that the first alert has someone to reach.
DEMO_SUBSCRIBERS = (
    DemoPerson("Dana (demo subscriber)", "+15035550111", ("cully",), Language.EN),
    DemoPerson("Luis (demo subscriber)", "+15035550112", ("cully", "concordia"), Language.ES),
)
# Nobody yet: the phone a newcomer uses to JOIN and to report.
DEMO_NEW_PHONE = DemoPerson("A new phone", "+15035550120", (), Language.EN)
LOGIN_FILE = "demo-login.txt"


@dataclass(frozen=True)
class CastMember:
    """What the banner and the simulator phone show of a demo person."""

    role: str
    name: str
    phone: str
    area_names: tuple[str, ...]
    language: Language


@dataclass(frozen=True)
class DemoLogin:
    password: str
    totp_uri: str
    cast: tuple[CastMember, ...]


def demo_cast() -> tuple[tuple[str, DemoPerson], ...]:
    """Every number the simulator phone offers as a quick button, with its role."""
    return (
        *(("responder", person) for person in DEMO_RESPONDERS),
        *(("subscriber", person) for person in DEMO_SUBSCRIBERS),
        ("new", DEMO_NEW_PHONE),
    )


def prepare_demo_data(settings: Settings) -> DemoLogin:
    """Schema, region, responders, subscribers and a coordinator with an authenticator.

    Safe to run again: the region is upserted, people are added once, the coordinator
    gets a fresh password each run (printed, never stored in clear) and keeps its
    authenticator, so a phone that scanned it once keeps working.
    """
    upgrade(settings.database_url)
    database = Database(settings.database_url)
    cipher, index = FieldCipher(settings.data_keys), BlindIndex(settings.index_key)
    password = generate_password()
    try:
        with database.session() as session:
            import_areas(session, load_region_file(demo_region_path()), DEMO_REGION)
            cast = (
                *(_ensure_responder(session, cipher, index, p) for p in DEMO_RESPONDERS),
                *(_ensure_subscriber(session, cipher, index, p) for p in DEMO_SUBSCRIBERS),
                CastMember("new", DEMO_NEW_PHONE.name, DEMO_NEW_PHONE.phone, (), Language.EN),
            )
            totp_uri = _ensure_coordinator(session, cipher, password)
    finally:
        database.dispose()
    return DemoLogin(password, totp_uri, cast)


def _areas_of(session: Session, person: DemoPerson) -> list[Area]:
    return [area for slug in person.areas if (area := find_area(session, slug)) is not None]


def _ensure_responder(
    session: Session, cipher: FieldCipher, index: BlindIndex, person: DemoPerson
) -> CastMember:
    areas = _areas_of(session, person)
    if find_responder(session, index, person.phone) is None:
        responder = add_responder(
            session,
            cipher,
            index,
            name=person.name,
            phone_e164=person.phone,
            areas=areas,
            language=person.language,
        )
        responder.on_shift = True  # so a demo report pages someone at once
    names = tuple(area.name for area in areas)
    return CastMember("responder", person.name, person.phone, names, person.language)


def _ensure_subscriber(
    session: Session, cipher: FieldCipher, index: BlindIndex, person: DemoPerson
) -> CastMember:
    areas = _areas_of(session, person)
    with suppress(AlreadyExists):
        add_confirmed_subscriber(
            session, cipher, index, phone_e164=person.phone, areas=areas, language=person.language
        )
    names = tuple(area.name for area in areas)
    return CastMember("subscriber", person.name, person.phone, names, person.language)


def _ensure_coordinator(session: Session, cipher: FieldCipher, password: str) -> str:
    """The demo coordinator, with this run's password; returns its otpauth:// URI."""
    user = session.scalar(select(StaffUser).where(StaffUser.email == DEMO_LOGIN))
    if user is None:
        user = add_staff_user(
            session, email=DEMO_LOGIN, role=StaffRole.COORDINATOR, password=password
        )
    else:
        set_password(user, password)
    secret = totp_secret(user, cipher) if user.totp_enrolled_at is not None else None
    if secret is None:
        # Enrolled here rather than on first sign-in, so that the terminal can show the
        # QR code before anyone opens a browser.
        secret = begin_enrolment(user, cipher)
        user.totp_enrolled_at = utcnow()
    return provisioning_uri(secret, DEMO_LOGIN)


class Supervisor:
    """Runs the child processes and stops them all, in order, on a signal or a crash."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = threading.Event()

    def spawn(self, name: str, *arguments: str) -> None:
        self.children[name] = subprocess.Popen(
            [sys.executable, "-m", "web.cli", *arguments],
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent_hook(),
        )

    def exited(self) -> str | None:
        """The name of a child that has exited, if any."""
        return next(
            (name for name, child in self.children.items() if child.poll() is not None), None
        )

    def request_stop(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping.set()

    def stop_all(self) -> None:
        for name in ("web", "worker"):
            if name in self.children:
                stop_process(self.children[name], name, timeout=15.0)


def wait_until_healthy(url: str, supervisor: Supervisor, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not supervisor.stopping.is_set():
        if supervisor.exited():
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own URL
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    return False


LANGUAGE_NAMES = {Language.EN: "English", Language.ES: "Spanish"}


def banner(base_url: str, login: DemoLogin) -> str:
    """Everything a newcomer needs to act out the first hour, in one screen."""
    lines = [
        "",
        "  rapidresponse demo is running. Everything here is fictional: no real phone is texted.",
        "  Not safe against seizure: development mode keeps its keys in instance/secrets.json,",
        "  beside the data, so whoever copies this disk can read everything in it. Production",
        "  keeps them in a sealed keyring instead (rapidresponse keys init; README).",
        "",
        f"  Board:            {base_url}/board   (sign in at {base_url}/login)",
        f"    login:          {DEMO_LOGIN}",
        f"    password:       {login.password}",
        "    code:           the 6-digit code of an authenticator app (Aegis, FreeOTP,",
        "                    Google Authenticator...): scan this QR code with it once,",
        "                    or add this key by hand:",
        f"                    {login.totp_uri}",
        _terminal_qr(login.totp_uri),
        f"  Simulator phone:  {base_url}/simulator/phone   (text the hotline as anyone below)",
        f"  Outbox:           {base_url}/simulator/outbox  (every message the demo sent)",
        f"  Report form:      {base_url}/report",
        f"  Health:           {base_url}/healthz",
        "",
        "  Demo people (each a button on the simulator phone):",
        *(_cast_line(member) for member in login.cast),
        "",
        "  Walk through it: README, 'The first hour'. A number ending in 9 plays an unreachable",
        "  phone: Twilio reports its alerts 'undelivered', the board counts them as failed.",
        f"  Shown again by `rapidresponse demo --show-login` (kept in instance/{LOGIN_FILE}).",
        "  Press Ctrl-C to stop everything.",
        "",
    ]
    return "\n".join(lines)


def _cast_line(member: CastMember) -> str:
    areas = ", ".join(member.area_names) or "no area yet: try JOIN Cully"
    spoken = LANGUAGE_NAMES[member.language]
    return f"    {member.role:<10} {member.name:<24} {member.phone}  {spoken:<8} {areas}"


def _terminal_qr(uri: str) -> str:
    out = io.StringIO()
    segno.make(uri, error="l").terminal(out=out, compact=True)
    return out.getvalue()


def save_banner(instance_path: Path, text: str) -> Path:
    """Keep the banner where only this user can read it (it holds the password)."""
    path = instance_path / LOGIN_FILE
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an older file may have been created with other modes
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def saved_banner(instance_path: Path) -> str | None:
    path = instance_path / LOGIN_FILE
    return path.read_text(encoding="utf-8") if path.is_file() else None


def port_is_free(host: str, port: int) -> bool:
    # create_server sets SO_REUSEADDR as gunicorn does, so a port in TIME_WAIT is free.
    try:
        with socket.create_server((host, port)):
            return True
    except OSError:
        return False


def free_port_after(host: str, port: int) -> int:
    """A port to suggest instead of a busy one: the next free one close by."""
    return next(
        (p for p in range(port + 1, min(port + 50, 65536)) if port_is_free(host, p)), port + 1
    )


def busy_port_message(host: str, port: int) -> str:
    suggestion = free_port_after(host, port)
    while not port_is_free(host, suggestion + 1) and suggestion < port + 50:
        suggestion = free_port_after(host, suggestion)  # its live updates take the next
    return (
        f"port {port} is in use — try `make demo PORT={suggestion}` "
        f"(or `rapidresponse demo --port {suggestion}`)"
    )


def busy_socket_port_message(host: str, port: int) -> str:
    suggestion = free_port_after(host, port)
    return (
        f"port {port} (the board's live updates) is in use — try "
        f"`rapidresponse demo --socket-port {suggestion}`"
    )


def child_environment(settings: Settings, redis: RedisForChildren, base_url: str) -> dict[str, str]:
    """What the web and worker processes run with (LOG_LEVEL comes from ours)."""
    return {
        **os.environ,
        **redis.environment,
        "INSTANCE_PATH": str(settings.instance_path),
        "PUBLIC_URL": os.environ.get("PUBLIC_URL", base_url),
    }


def run_demo(settings: Settings, host: str, port: int, socket_port: int | None = None) -> int:
    """Run until SIGINT/SIGTERM or until a child dies; return the exit status."""
    if not port_is_free(host, port):
        print(f"rapidresponse: {busy_port_message(host, port)}", file=sys.stderr, flush=True)
        return 1
    socket_port = min(port + 1, 65535) if socket_port is None else socket_port
    if socket_port == port or not port_is_free(host, socket_port):
        print(f"rapidresponse: {busy_socket_port_message(host, socket_port)}", file=sys.stderr)
        return 1
    redis = redis_for_children(settings)
    base_url = f"http://{host}:{port}"
    supervisor = Supervisor(child_environment(settings, redis, base_url))
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    try:
        login = prepare_demo_data(settings)
        supervisor.spawn(
            "web", "web", "--host", host, "--port", str(port), "--socket-port", str(socket_port)
        )
        supervisor.spawn("worker", "worker")
        if not wait_until_healthy(f"{base_url}/healthz", supervisor, HEALTH_TIMEOUT_SECONDS):
            if supervisor.stopping.is_set():
                return 0
            log.error("the demo did not become healthy; see the messages above")
            return 1
        text = banner(base_url, login)
        save_banner(settings.instance_path, text)
        print(text, flush=True)
        while not supervisor.stopping.wait(0.5):
            if (name := supervisor.exited()) is not None:
                log.error("the %s process exited unexpectedly; stopping the demo", name)
                return 1
        return 0
    finally:
        print("Stopping…", flush=True)
        supervisor.stop_all()
        redis.stop()
