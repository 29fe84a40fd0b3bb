"""Inbound: the hotline on a raid morning, with a real city's map.

The production web server (``rapidresponse web``: gunicorn, one process) serves a
stack whose areas come from a city-sized file (``bench.city``: ~100 areas, 0.9 MB, as
the importer stores it after simplifying to 5 m). This process is the load generator:
it signs every ``POST /sms/inbound`` as Twilio does (``RequestValidator``) and sends them
from C threads at once, each on its own keep-alive connection.

- **mix** (a raid morning): 70 % JOIN/YES from 5,000 numbers, 20 % reports from 500
  numbers in 3 areas, 10 % STOP/HELP/RIGHTS; at concurrency 10, 50 and 200;
- **flood**: 2,000 reports in 60 s, all in one area, at concurrency 50.

Printed per run: requests/s, p50/p99/max latency, the web server's CPU per request
(user + system of its process tree, divided by the requests), 5xx, and what was lost:
every report's token is looked for in the decrypted reports, every JOIN's number among
the subscribers. Then the same mix against a 10 MB pack (kept at full detail), the cost
of one area lookup beside the cost of a request, and two web processes against one.

The generator's numbers are few next to a real city's, so the per-number limits are
raised (SMS_INBOUND_LIMIT, SMS_CONFIRMATION_LIMIT) to let every text through.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psutil
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from bench.city import area_names, make_city
from bench.harness import (
    AUTH_TOKEN,
    ROOT,
    Stack,
    env_int,
    heading,
    line,
    note,
    postgres_url,
    stack,
)
from dispatch.processes import die_with_parent_hook
from rapidresponse.areas import import_areas, unsaved_areas
from rapidresponse.crypto import Purpose
from rapidresponse.directory import AreaDirectory
from rapidresponse.models import Area, Incident, Report, Subscriber, Subscription
from rapidresponse.regions import read_region, simplify_region

PUBLIC_URL = "https://rr.example.org"
INBOUND_URL = PUBLIC_URL + "/sms/inbound"
LEVELS = (10, 50, 200)
CPU_TARGET_MS = 3.0
P99_TARGETS = {10: 1.0, 50: 1.0, 200: 3.0}
REPORT_AREAS = ("Cully", "Lents", "Montavilla")
STREETS = ("NE 42nd", "SE 82nd", "Foster Rd", "Killingsworth", "Glisan", "122nd")
LIMITS = {
    "SMS_INBOUND_LIMIT": "100000/hour",
    "SMS_CONFIRMATION_LIMIT": "100000/day",
    "LOGIN_LIMIT": "1000 per 15 minutes",  # the web-tier bench signs 20 dispatchers in
}


@dataclass
class Text:
    phone: str
    body: str
    token: str = ""  # a report's, found again in its decrypted text
    joins: bool = False


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    seconds: float = 0.0
    cpu: float = 0.0
    sent: list[Text] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statuses)

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run() -> None:
    requests = env_int("BENCH_INBOUND_REQUESTS", 1500)
    heading(f"inbound: signed texts to one web process, {requests} per run, ~100-area city")
    lookup_costs()
    databases: list[tuple[str, str | None]] = [("SQLite", None)]
    url, why = postgres_url()
    if url is None:
        note(f"PostgreSQL skipped: {why}")
    else:
        databases.append(("PostgreSQL", url))
    for label, database_url in databases:
        with web_stack(database_url, detail_m=60) as (target, servers):
            one_process_rate = None
            for level in LEVELS:
                result = drive(servers, mix(requests, seed=level), level)
                report(f"{label} mix c={level}", result, P99_TARGETS[level])
                check_nothing_lost(target, result)
                if level == 200:
                    one_process_rate = result.count / result.seconds
            flood_result = drive(servers, flood(2000), 50, pace_seconds=60.0)
            report(f"{label} flood 2,000/60 s c=50", flood_result, P99_TARGETS[50])
            check_nothing_lost(target, flood_result)
            note(f"{label}: incidents in the flooded area: {incidents_in(target, 'Kerns')}")
            if one_process_rate is not None:
                two_processes(target, label, requests, one_process_rate)
    with web_stack(None, detail_m=5, simplify=False) as (target, servers):
        result = drive(servers, mix(requests, seed=7), 50)
        report("SQLite mix c=50, 10 MB pack", result, P99_TARGETS[50])
        check_nothing_lost(target, result)


# --- the workload --------------------------------------------------------------------------


def mix(count: int, seed: int) -> list[Text]:
    chance = random.Random(seed)
    names = area_names()
    joined: set[str] = set()
    texts: list[Text] = []
    for _ in range(count):
        roll = chance.random()
        if roll < 0.7:
            phone = number(seed, chance.randrange(5000))
            if phone in joined and chance.random() < 0.5:
                texts.append(Text(phone, "YES"))
            else:
                joined.add(phone)
                texts.append(Text(phone, f"JOIN {chance.choice(names)}", joins=True))
        elif roll < 0.9:
            texts.append(a_report(chance, number(seed, 5000 + chance.randrange(500)), REPORT_AREAS))
        else:
            phone = number(seed, chance.randrange(5000))
            texts.append(Text(phone, chance.choice(("HELP", "RIGHTS", "AYUDA", "STOP"))))
    return texts


def flood(count: int) -> list[Text]:
    chance = random.Random(99)
    return [a_report(chance, number(99, n), ("Kerns",)) for n in range(count)]


def a_report(chance: random.Random, phone: str, areas: Sequence[str]) -> Text:
    token = uuid.uuid4().hex[:12]
    where = f"{chance.choice(STREETS)} in {chance.choice(areas)}"
    return Text(phone, f"ICE agents and 2 vans at {where}, going door to door. t{token}", token)


def number(seed: int, n: int) -> str:
    """A valid Portland mobile number, different for each seed (exchange 200-899)."""
    return f"+1503{200 + seed % 700:03d}{n:04d}"


# --- the generator -------------------------------------------------------------------------


def drive(
    servers: Sequence[WebServer], texts: list[Text], concurrency: int, pace_seconds: float = 0.0
) -> Result:
    """Send ``texts`` from ``concurrency`` threads (each its own connection), round-robin
    over ``servers``; optionally spread over ``pace_seconds``."""
    result = Result(sent=texts, statuses=[0] * len(texts))
    lock = threading.Lock()
    queue = iter(enumerate(texts))
    validator = RequestValidator(AUTH_TOKEN)
    started = time.perf_counter()
    cpu_before = sum(server.cpu() for server in servers)

    def worker(slot: int) -> None:
        server = servers[slot % len(servers)]
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        while True:
            with lock:
                item = next(queue, None)
            if item is None:
                break
            index, text = item
            if pace_seconds:
                delay = started + pace_seconds * index / len(texts) - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            status, took = post(connection, validator, text)
            with lock:
                result.statuses[index] = status  # in the order of ``texts``
                result.latencies.append(took)
        connection.close()

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, range(concurrency)))
    result.seconds = time.perf_counter() - started
    result.cpu = sum(server.cpu() for server in servers) - cpu_before
    return result


def post(
    connection: http.client.HTTPConnection, validator: RequestValidator, text: Text
) -> tuple[int, float]:
    params = {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "b" * 32,
        "From": text.phone,
        "To": "+15035550100",
        "Body": text.body,
        "NumMedia": "0",
    }
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": validator.compute_signature(INBOUND_URL, params),
    }
    started = time.perf_counter()
    try:
        connection.request("POST", "/sms/inbound", urllib.parse.urlencode(params), headers)
        response = connection.getresponse()
        response.read()
        status = response.status
    except (OSError, http.client.HTTPException):
        connection.close()  # reconnects on the next request
        status = 599
    return status, time.perf_counter() - started


# --- the server ----------------------------------------------------------------------------


class WebServer:
    """``python -m web.cli web`` on a free port, with the stack's environment: its web
    processes, and its socket process on ``socket_port`` (0: none)."""

    def __init__(
        self, target: Stack, port: int, *, processes: int = 1, socket_port: int = 0
    ) -> None:
        self.port = port
        self.socket_port = socket_port
        self.log = target.folder / f"web-{port}.log"
        command = ["web", "--port", str(port), "--socket-port", str(socket_port)]
        with self.log.open("wb") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "web.cli", *command, "--processes", str(processes)],
                cwd=ROOT,
                env=target.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent_hook(),
            )
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, http.client.HTTPException):
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    return
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        raise SystemExit(f"the web server did not start; see {self.log}")

    def cpu(self) -> float:
        """User + system seconds of the server's processes (gunicorn and its worker)."""
        try:
            root = psutil.Process(self.process.pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                if "redis" not in process.name():
                    times = process.cpu_times()
                    total += times.user + times.system
        return total

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, 15)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, 9)
            self.process.wait()


@contextlib.contextmanager
def web_stack(
    database_url: str | None,
    detail_m: float,
    simplify: bool = True,
    *,
    processes: int = 1,
    sockets: bool = False,
) -> Iterator[tuple[Stack, list[WebServer]]]:
    """A stack with the city's areas and one ``rapidresponse web`` (``processes`` web
    processes; with ``sockets``, its socket process too)."""
    from bench.fast_twilio import FastTwilio

    with (
        FastTwilio() as fake,
        stack(fake.url, send_rate="unlimited", database_url=database_url, **LIMITS) as target,
    ):
        reading = read_region(make_city(detail_m=detail_m))
        areas = reading.areas
        if simplify:
            areas, _changes = simplify_region(areas, 5.0)
        with target.services.database.session() as session:
            import_areas(session, areas, "Portland")
        if target.services.volatile_store is not None:
            target.env["VOLATILE_REDIS_URL"] = target.services.volatile_store.url
        socket_port = free_port() if sockets else 0
        running = [WebServer(target, free_port(), processes=processes, socket_port=socket_port)]
        try:
            # The areas are read at start, in the background: measure after that (the
            # 10 MB pack takes a second or two, once per process).
            drive(running, [Text("+15035550100", "HELP")] * 4 * processes, 4 * processes)
            yield target, running
        finally:
            for server in running:
                server.stop()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def two_processes(target: Stack, label: str, requests: int, one: float) -> None:
    """The same mix against ``rapidresponse web --processes 2`` (one port, the kernel
    spreading connections over both processes)."""
    both = WebServer(target, free_port(), processes=2)
    try:
        drive([both], [Text("+15035550100", "HELP")] * 8, 8)  # each process read the areas
        result = drive([both], mix(requests, seed=3), 200)
    finally:
        both.stop()
    rate = result.count / result.seconds
    line(
        f"{label} mix c=200, two web processes",
        f"{rate:.0f}/s = {rate / one:.2f}x one",
        ">= 1.8x one",
        rate >= 1.8 * one,
    )


# --- checking and printing -------------------------------------------------------------------


def report(label: str, result: Result, p99_target: float) -> None:
    failures = sum(1 for status in result.statuses if status >= 500)
    cpu_ms = 1000 * result.cpu / max(1, result.count)
    line(
        f"{label}: p50 / p99 / max",
        f"{result.percentile(0.5):.3f} / {result.percentile(0.99):.3f} / "
        f"{max(result.latencies):.2f} s",
        f"p99 < {p99_target:g} s",
        result.percentile(0.99) < p99_target,
    )
    line(
        f"{label}: web CPU per request",
        f"{cpu_ms:.1f} ms",
        f"<= {CPU_TARGET_MS:g} ms",
        cpu_ms <= CPU_TARGET_MS,
    )
    refused = sum(1 for status in result.statuses if status != 200) - failures
    rate = f"{result.count / result.seconds:.0f}/s, {failures} 5xx, {refused} 4xx"
    line(f"{label}: rate, 5xx, 4xx", rate, "0 5xx, 0 4xx", failures == refused == 0)


def check_nothing_lost(target: Stack, result: Result) -> None:
    answered = [
        text for text, status in zip(result.sent, result.statuses, strict=False) if status == 200
    ]
    tokens = {text.token for text in answered if text.token}
    found = stored_tokens(target, tokens)
    # STOP forgets a number's areas, as it should: those numbers are not looked for.
    stopped = {text.phone for text in answered if text.body == "STOP"}
    joined = {text.phone for text in answered if text.joins} - stopped
    subscribed = subscribed_numbers(target, joined)
    lost = len(tokens - found) + len(joined - subscribed)
    line(
        "  lost (reports + subscriptions answered but not stored)",
        f"{lost} of {len(tokens) + len(joined)}",
        "0",
        lost == 0,
    )


def stored_tokens(target: Stack, wanted: set[str]) -> set[str]:
    cipher = target.services.cipher
    with target.services.database.session() as session:
        sealed = session.scalars(select(Report.text_sealed)).all()
    found: set[str] = set()
    for value in sealed:
        if value is None:
            continue
        words = cipher.decrypt(value, Purpose.REPORT_TEXT)
        found.update(token for token in wanted if f"t{token}" in words)
    return found


def subscribed_numbers(target: Stack, phones: set[str]) -> set[str]:
    index = target.services.index
    by_key = {index.digest(phone, Purpose.PHONE_INDEX): phone for phone in phones}
    with target.services.database.session() as session:
        rows = session.execute(
            select(Subscriber.phone_index)
            .join(Subscription, Subscription.subscriber_id == Subscriber.id)
            .where(Subscriber.phone_index.in_(list(by_key)))
        ).all()
    return {by_key[row[0]] for row in rows}


def incidents_in(target: Stack, name: str) -> int:
    with target.services.database.session() as session:
        area_id = session.scalar(select(Area.id).where(Area.name == name))
        return int(session.scalar(select(func.count()).where(Incident.area_id == area_id)) or 0)


def lookup_costs() -> None:
    """One area lookup (a point, and a text) with ~100 areas and with the 10 MB pack."""
    for label, detail, simplify in (("~100 areas, 0.9 MB", 60.0, True), ("10 MB pack", 5.0, False)):
        areas = read_region(make_city(detail_m=detail)).areas
        if simplify:
            areas, _ = simplify_region(areas, 5.0)
        directory = AreaDirectory(unsaved_areas(areas))
        directory.polygons()
        chance = random.Random(5)
        points = [
            (chance.uniform(-122.83, -122.48), chance.uniform(45.44, 45.64)) for _ in range(2000)
        ]
        started = time.perf_counter()
        for lon, lat in points:
            directory.at(lon, lat)
        per_point = (time.perf_counter() - started) / len(points)
        texts = [a_report(chance, "+15035550000", REPORT_AREAS).body for _ in range(2000)]
        started = time.perf_counter()
        for body in texts:
            directory.mentioned_in(body)
        per_text = (time.perf_counter() - started) / len(texts)
        line(
            f"area lookup, {label}: point / text",
            f"{per_point * 1e6:.0f} / {per_text * 1e6:.0f} us",
            "< 1 % of a request",
        )
