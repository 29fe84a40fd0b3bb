"""``rapidresponse demo``: the whole system on embedded defaults, in one command.

It starts the embedded Redis, prepares the database with the approximate Portland region,
a few fictional responders and a coordinator login, then runs the web app and a worker
(with the scheduler) as child processes until Ctrl-C, when it stops all of them and
Redis. The children are in their own sessions and die with us even on kill -9, so
nothing is left running.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from types import FrameType

from sqlalchemy import select

from dispatch.processes import die_with_parent_hook, stop_process
from dispatch.redis_conn import EmbeddedRedis
from rapidresponse.areas import find_area, import_areas
from rapidresponse.config import Settings
from rapidresponse.crypto import BlindIndex, FieldCipher
from rapidresponse.db import Database, upgrade
from rapidresponse.models import Language, StaffRole, StaffUser
from rapidresponse.passwords import generate_password
from rapidresponse.people import add_responder, add_staff_user, find_responder, set_password
from rapidresponse.regions import demo_region_path, load_region_file

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_SECONDS = 60.0
DEMO_REGION = "Portland, Oregon (approximate demo)"
DEMO_LOGIN = "coordinator@demo.rapidresponse.example"


@dataclass(frozen=True)
class DemoResponder:
    name: str
    phone: str  # 555-01xx: reserved for fiction, never a real subscriber
    areas: tuple[str, ...]
    language: Language


DEMO_RESPONDERS = (
    DemoResponder("Ana (demo)", "+15035550101", ("cully", "parkrose", "concordia"), Language.ES),
    DemoResponder("Ben (demo)", "+15035550102", ("st-johns", "portsmouth", "kenton"), Language.EN),
    DemoResponder(
        "Carla (demo)", "+15035550103", ("lents", "foster-powell", "montavilla"), Language.ES
    ),
)


def prepare_demo_data(settings: Settings) -> str:
    """Schema, region, responders and a coordinator; returns the coordinator's password.

    Safe to run again: the region is upserted, responders are added once, and the demo
    coordinator gets a fresh password each run (it is printed, never stored in clear).
    """
    upgrade(settings.database_url)
    database = Database(settings.database_url)
    cipher, index = FieldCipher(settings.data_keys), BlindIndex(settings.index_key)
    password = generate_password()
    try:
        with database.session() as session:
            import_areas(session, load_region_file(demo_region_path()), DEMO_REGION)
            for person in DEMO_RESPONDERS:
                if find_responder(session, index, person.phone) is None:
                    areas = [
                        area
                        for slug in person.areas
                        if (area := find_area(session, slug)) is not None
                    ]
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
            user = session.scalar(select(StaffUser).where(StaffUser.email == DEMO_LOGIN))
            if user is None:
                add_staff_user(
                    session, email=DEMO_LOGIN, role=StaffRole.COORDINATOR, password=password
                )
            else:
                set_password(user, password)
    finally:
        database.dispose()
    return password


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


def _banner(base_url: str, password: str) -> str:
    return "\n".join(
        (
            "",
            "  rapidresponse demo is running",
            f"    web:       {base_url}/",
            f"    health:    {base_url}/healthz",
            f"    outbox:    {base_url}/simulator/outbox",
            f"    login:     {DEMO_LOGIN}",
            f"    password:  {password}",
            "  Region: Portland, Oregon (approximate demo shapes). SMS: simulator.",
            "  Press Ctrl-C to stop everything.",
            "",
        )
    )


def run_demo(settings: Settings, host: str, port: int) -> int:
    """Run until SIGINT/SIGTERM or until a child dies; return the exit status."""
    embedded = None if settings.redis_url else EmbeddedRedis(settings.instance_path / "redis")
    redis_url = embedded.start() if embedded else settings.redis_url
    assert redis_url is not None
    base_url = f"http://{host}:{port}"
    supervisor = Supervisor(
        {
            **os.environ,
            "REDIS_URL": redis_url,
            "INSTANCE_PATH": str(settings.instance_path),
            "PUBLIC_URL": os.environ.get("PUBLIC_URL", base_url),
        }
    )
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    try:
        password = prepare_demo_data(settings)
        supervisor.spawn("web", "web", "--host", host, "--port", str(port))
        supervisor.spawn("worker", "worker")
        if not wait_until_healthy(f"{base_url}/healthz", supervisor, HEALTH_TIMEOUT_SECONDS):
            if supervisor.stopping.is_set():
                return 0
            log.error("the demo did not become healthy; see the messages above")
            return 1
        print(_banner(base_url, password), flush=True)
        while not supervisor.stopping.wait(0.5):
            if (name := supervisor.exited()) is not None:
                log.error("the %s process exited unexpectedly; stopping the demo", name)
                return 1
        return 0
    finally:
        print("Stopping…", flush=True)
        supervisor.stop_all()
        if embedded is not None:
            embedded.stop()
