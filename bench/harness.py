"""What every broadcast benchmark needs: a machine line, a private stack, data, workers.

A ``Stack`` is one isolated installation: a temporary instance folder (SQLite file and
embedded Redis; fresh keys), the ``Services`` the benchmark process uses, and the
environment its worker processes get. Workers are real
``rapidresponse worker`` processes talking to ``bench.fast_twilio`` as if it were Twilio.

PostgreSQL: ``BENCH_DATABASE_URL`` names the database (its name must contain "bench",
because every stack wipes it); unset, ``postgresql://postgres@127.0.0.1:5432/rr_bench``
is used if that server answers (the database is created if missing); ``none`` skips it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

from sqlalchemy import Table, func, insert, literal, select, text
from sqlalchemy.engine import make_url

from dispatch.alerts import write_ledger
from dispatch.ledger import ledger_plan
from dispatch.processes import die_with_parent_hook
from dispatch.services import Services
from rapidresponse import broadcast
from rapidresponse.config import Settings, new_key
from rapidresponse.crypto import Purpose
from rapidresponse.db import Database, upgrade
from rapidresponse.models import (
    AlertKind,
    Area,
    Delivery,
    DeliveryStatus,
    Language,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    utcnow,
)

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-auth-token"  # noqa: S105 - the fake's, not a secret
SENDER = "+15035550100"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/rr_bench"
INSERT_CHUNK = 10_000

# One segment each (GSM-7, and Spanish without á/í/ó/ú), as the composer writes alerts.
TEXTS = {
    "en": "ALERT Cully: immigration agents confirmed near NE 42nd & Killingsworth, 9:40am. "
    "You have the right to remain silent. Reply RIGHTS.",
    "es": "ALERTA Cully: agentes de inmigracion confirmados cerca de NE 42nd, 9:40am. "
    "Tiene derecho a guardar silencio. Responda DERECHOS.",
}


# --- printing --------------------------------------------------------------------------------


def machine() -> str:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = " (" + " ".join(line.split(":", 1)[1].split()) + ")"
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.1f} GiB RAM"
    load = ", load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return (
        f"machine: {platform.machine()}, {os.cpu_count()} cores{model}{memory}, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}{load}"
    )


def heading(title: str) -> None:
    print(f"\n== {title}", flush=True)


def line(label: str, figure: str, target: str = "", ok: bool | None = None) -> None:
    """One result: ``label  figure  (target ...)  PASS|MISS``."""
    verdict = "" if ok is None else ("PASS" if ok else "MISS")
    aim = f"(target {target})" if target else ""
    print(f"  {label:<48} {figure:<18} {aim:<20} {verdict}".rstrip(), flush=True)


def note(message: str) -> None:
    print(f"  {message}", flush=True)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


# --- databases -------------------------------------------------------------------------------


def postgres_url() -> tuple[str | None, str]:
    """(the PostgreSQL URL to benchmark on or None, why) -- see the module docstring."""
    given = os.environ.get("BENCH_DATABASE_URL", "").strip()
    if given.lower() in ("none", "off", "no", "0"):
        return None, "BENCH_DATABASE_URL=none"
    url = given or DEFAULT_POSTGRES
    name = make_url(url).database or ""
    if "bench" not in name:
        raise SystemExit(
            f"BENCH_DATABASE_URL must name a database with 'bench' in it (got {name!r}): "
            "each benchmark wipes it"
        )
    try:
        _create_database(url, name)
    except Exception as error:  # any failure means: no PostgreSQL here
        if given:
            raise
        return None, f"no PostgreSQL at {url} ({error.__class__.__name__})"
    return url, url


def _create_database(url: str, name: str) -> None:
    import psycopg

    server = make_url(url).set(drivername="postgresql", database="postgres")
    dsn = server.render_as_string(hide_password=False)
    with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if found.fetchone() is None:
            connection.execute(f'CREATE DATABASE "{name}"')


def _wipe_postgres(url: str) -> None:
    database = Database(url)
    try:
        with database.engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        database.dispose()


# --- a stack ---------------------------------------------------------------------------------


@dataclass
class Stack:
    """One private installation; ``env`` is what its worker processes run with."""

    folder: Path
    env: dict[str, str]
    services: Services

    @property
    def dialect(self) -> str:
        return self.services.database.dialect


@contextlib.contextmanager
def stack(
    twilio_url: str, *, send_rate: str, database_url: str | None = None, **extra: str
) -> Iterator[Stack]:
    """A fresh schema (SQLite in the temp folder, or the wiped PostgreSQL database)."""
    with tempfile.TemporaryDirectory(prefix="rr-bench-") as folder:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", folder),
            "INSTANCE_PATH": str(Path(folder) / "instance"),
            "DATA_KEYS": new_key(),
            "INDEX_KEY": new_key(),
            "SECRET_KEY": "b" * 40,
            "SMS_BACKEND": "twilio",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_FROM": SENDER,
            "TWILIO_API_URL": twilio_url,
            "PUBLIC_URL": "https://rr.example.org",
            "SEND_RATE": send_rate,
            "LOG_LEVEL": "warning",
            **extra,
        }
        if database_url is not None:
            env["DATABASE_URL"] = database_url
        settings = Settings.from_env(env)
        if database_url is not None:
            _wipe_postgres(settings.database_url)
        upgrade(settings.database_url)
        services = Services.build(settings)
        try:
            env["REDIS_URL"] = services.redis_url  # workers share our (embedded) Redis
            yield Stack(Path(folder), env, services)
        finally:
            services.close()


# --- data ------------------------------------------------------------------------------------


def make_area(target: Stack, slug: str) -> int:
    with target.services.database.session() as session:
        area = Area(slug=slug, name=slug.title())
        session.add(area)
        session.flush()
        return area.id


def add_subscribers(
    target: Stack, count: int, area_ids: Sequence[int], *, spanish_every: int = 0, first: int = 0
) -> tuple[int, int]:
    """``count`` active subscribers confirmed in every area; returns their id range.

    Rows go in with Core executemany (setup time is not what we measure); every phone is
    sealed and indexed as the app would. ``spanish_every``: every n-th reads Spanish.
    """
    services = target.services
    table = cast(Table, Subscriber.__table__)
    now = utcnow()
    with services.database.session() as session:
        before = int(session.scalar(select(func.coalesce(func.max(Subscriber.id), 0))) or 0)
    for start in range(first, first + count, INSERT_CHUNK):
        rows = []
        for n in range(start, min(start + INSERT_CHUNK, first + count)):
            phone = f"+1503{n:07d}"
            spanish = spanish_every and n % spanish_every == 0
            rows.append(
                {
                    "phone_sealed": services.cipher.encrypt(phone, Purpose.SUBSCRIBER_PHONE),
                    "phone_index": services.index.digest(phone, Purpose.PHONE_INDEX),
                    "language": Language.ES if spanish else Language.EN,
                    "status": SubscriberStatus.ACTIVE,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        with services.database.session() as session:
            session.execute(insert(table), rows)
    with services.database.session() as session:
        last = int(session.scalar(select(func.max(Subscriber.id))) or 0)
    subscribe(target, (before + 1, last), area_ids)
    return before + 1, last


def subscribe(target: Stack, ids: tuple[int, int], area_ids: Sequence[int]) -> None:
    """Confirm subscribers ``ids`` (inclusive range) in each area, one INSERT ... SELECT each."""
    now = utcnow()
    table = cast(Table, Subscription.__table__)
    with target.services.database.session() as session:
        for area_id in area_ids:
            rows = select(
                Subscriber.id,
                literal(area_id),
                literal(SubscriptionStatus.CONFIRMED, table.c.status.type),
                literal(now, table.c.created_at.type),
                literal(now, table.c.confirmed_at.type),
            ).where(Subscriber.id.between(*ids))
            session.execute(
                insert(table).from_select(
                    ["subscriber_id", "area_id", "status", "created_at", "confirmed_at"], rows
                )
            )


def draft_alert(target: Stack, area_ids: Sequence[int], texts: dict[str, str] = TEXTS) -> int:
    with target.services.database.session() as session:
        alert = broadcast.draft(session, kind=AlertKind.ALERT, texts=texts, area_ids=area_ids)
        return alert.id


def approve_timed(target: Stack, alert_id: int) -> tuple[broadcast.Approval, float]:
    """``write_ledger`` (the approval, committed) and then every other segment of the
    ledger, as ledger jobs write them, in this process and with nothing enqueued, timed:
    (the whole ledger as one approval, seconds)."""
    started = time.perf_counter()
    approval = write_ledger(target.services, alert_id)
    rows, next_batch = write_rest_of_ledger(target, alert_id)
    whole = replace(
        approval,
        recipients=approval.recipients + rows,
        batches=max(approval.batches, next_batch),
        ledger_done=True,
    )
    return whole, time.perf_counter() - started


def write_rest_of_ledger(target: Stack, alert_id: int) -> tuple[int, int]:
    """What ledger jobs would write after the approval, a segment per transaction, in
    this process: (rows written, the next batch number; 0 if nothing was left)."""
    plan = ledger_plan(target.services)
    rows, next_batch = 0, 0
    while True:
        with target.services.database.session() as session:
            segment = broadcast.write_segment(
                session,
                alert_id,
                plan,
                now=utcnow(),
                rows=target.services.settings.ledger_segment_rows,
            )
        if segment is None:
            return rows, next_batch
        rows, next_batch = rows + segment.rows, segment.next_batch


def delivery_statuses(target: Stack, alert_id: int) -> dict[DeliveryStatus, int]:
    with target.services.database.session() as session:
        rows = session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.alert_id == alert_id)
            .group_by(Delivery.status)
        ).all()
    return {status: int(count) for status, count in rows}


def row_versions(target: Stack) -> int | None:
    """Row versions written to ``deliveries`` so far (inserts + updates, PostgreSQL's own
    statistics; deletes not counted), or None on SQLite, which keeps no such count."""
    if target.dialect != "postgresql":
        return None
    time.sleep(1.0)  # backends report their counts at most once a second, and at exit
    with target.services.database.session() as session:
        session.execute(text("SELECT pg_stat_clear_snapshot()"))
        written = session.scalar(
            text(
                "SELECT n_tup_ins + n_tup_upd FROM pg_stat_user_tables WHERE relname = 'deliveries'"
            )
        )
    return int(written or 0)


def delivery_ids(target: Stack, alert_id: int) -> set[str]:
    """The alert's deliveries, by the key their StatusCallback URLs carry."""
    with target.services.database.session() as session:
        ids = session.scalars(select(Delivery.id).where(Delivery.alert_id == alert_id))
        return {broadcast.callback_key(delivery_id) for delivery_id in ids}


# --- workers ---------------------------------------------------------------------------------


def worker_command(*, burst: bool = True) -> list[str]:
    command = [sys.executable, "-m", "web.cli", "worker", "--no-scheduler"]
    return [*command, "--burst"] if burst else command


class Workers:
    """Worker processes of one stack, each in its own process group, always cleaned up."""

    def __init__(self, target: Stack) -> None:
        self.target = target
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def start(self, command: Sequence[str] | None = None) -> subprocess.Popen[bytes]:
        log = self.target.folder / f"worker-{len(self.processes)}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                list(command or worker_command()),
                cwd=ROOT,
                env=self.target.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches us; we stop them in order
                preexec_fn=die_with_parent_hook(),
            )
        self.processes.append(process)
        self.logs.append(log)
        return process

    def wait(self, timeout: float) -> list[int]:
        deadline = time.monotonic() + timeout
        return [p.wait(max(0.1, deadline - time.monotonic())) for p in self.processes]

    def stop(self, process: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
        """SIGTERM (RQ's warm shutdown), then the whole group with SIGKILL."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # our child leads its group
                process.wait()
        return int(process.returncode)

    def log_tail(self, lines: int = 15) -> str:
        tails = []
        for log in self.logs:
            with contextlib.suppress(OSError):
                content = log.read_text(errors="replace").splitlines()
                if content:
                    tails.append(f"--- {log.name}\n" + "\n".join(content[-lines:]))
        return "\n".join(tails)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *_: object) -> None:
        for process in self.processes:
            self.stop(process, timeout=5.0)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_max(values: Sequence[float]) -> tuple[float, float]:
    return statistics.median(values), max(values)
