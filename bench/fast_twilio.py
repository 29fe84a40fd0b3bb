"""A fast local Twilio-compatible Messages API, for benchmarks.

``tests/twilio_fake.py`` checks everything and scripts errors; this one only answers, as
cheaply as it can, so that what a benchmark measures is the sender and not the fake. It
is an asyncio ``Protocol`` speaking HTTP/1.1 with keep-alive (no framework), run in its
own process (``python -m bench.fast_twilio``, which prints ``port <n>`` when ready).

``POST /2010-04-01/Accounts/{sid}/Messages.json`` needs Basic auth, ``To``, ``Body`` and
``From`` (or ``MessagingServiceSid``), and answers 201 with a Message resource. For each
message it records the arrival time (``time.time()``, comparable across processes), the
Delivery id from the ``StatusCallback`` query and the segment count of ``Body``.

Control endpoints, for the benchmark itself:

- ``GET /records?from=<i>``: records ``i`` onwards, one per line ``<time> <delivery> <segments>``;
- ``GET /stats``: ``{"requests": n, "cpu_seconds": user + system of this process}``.

It writes nothing to stdout after the port line, and never a number or a text.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import http.client
import json
import resource
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import parse_qs

from rapidresponse.sms import segment

MESSAGES_PREFIX = "/2010-04-01/Accounts/"
MESSAGES_SUFFIX = "/Messages.json"
MAX_HEAD = 64 * 1024
REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


@dataclass(frozen=True)
class Record:
    """One message request as the fake saw it."""

    at: float  # time.time() when its bytes arrived
    delivery: str  # the Delivery id from StatusCallback's query ("" when none)
    segments: int


@functools.lru_cache(maxsize=64)
def _segments(body: str) -> int:
    # Every recipient of a broadcast gets one of a few texts: count each text once.
    return segment(body).segments


def _error(status: int, code: int, message: str) -> tuple[int, bytes]:
    more = f"https://www.twilio.com/docs/errors/{code}"
    body = {"code": code, "message": message, "more_info": more, "status": status}
    return status, json.dumps(body).encode()


class Recorder:
    """What the server knows: the records, and how to answer one request."""

    def __init__(self) -> None:
        self.records: list[tuple[float, str, int]] = []
        self._date = ("", 0)

    def handle(
        self, method: str, target: str, authorized: bool, body: bytes, arrived: float
    ) -> tuple[int, bytes]:
        path, _, query = target.partition("?")
        if method == "POST" and path.startswith(MESSAGES_PREFIX) and path.endswith(MESSAGES_SUFFIX):
            if not authorized:
                return _error(401, 20003, "Authenticate")
            sid = path[len(MESSAGES_PREFIX) : -len(MESSAGES_SUFFIX)]
            return self.message(sid, parse_qs(body.decode("latin-1")), arrived)
        if method == "GET" and path == "/records":
            start = int(parse_qs(query).get("from", ["0"])[0])
            lines = [f"{at:.6f} {d or '-'} {n}\n" for at, d, n in self.records[start:]]
            return 200, "".join(lines).encode()
        if method == "GET" and path == "/stats":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            stats = {"requests": len(self.records), "cpu_seconds": usage.ru_utime + usage.ru_stime}
            return 200, json.dumps(stats).encode()
        return _error(404, 20404, f"The requested resource {path} was not found")

    def message(
        self, account: str, form: dict[str, list[str]], arrived: float
    ) -> tuple[int, bytes]:
        to, body = form.get("To", [""])[0], form.get("Body", [""])[0]
        from_, service = form.get("From", [None])[0], form.get("MessagingServiceSid", [None])[0]
        if not to:
            return _error(400, 21604, "A 'To' phone number is required.")
        if not body:
            return _error(400, 21602, "Message body is required.")
        if not (from_ or service):
            return _error(400, 21603, "A 'From' phone number is required.")
        callback = form.get("StatusCallback", [""])[0]
        delivery = callback.partition("delivery=")[2].partition("&")[0]
        segments = _segments(body)
        self.records.append((arrived, delivery, segments))
        sid = "SM" + secrets.token_hex(16)
        uri = f"/2010-04-01/Accounts/{account}/Messages/{sid}"
        date = self._http_date(arrived)
        resource_ = {
            "account_sid": account,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": date,
            "date_sent": None,
            "date_updated": date,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": str(segments),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }
        return 201, json.dumps(resource_).encode()

    def _http_date(self, now: float) -> str:
        second = int(now)
        if self._date[1] != second:
            self._date = (formatdate(second, usegmt=True), second)
        return self._date[0]


class HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and Content-Length bodies: all aiohttp sends here."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        arrived = time.time()
        self.buffer += data
        while self.transport is not None and self._one_request(arrived):
            pass

    def _one_request(self, arrived: float) -> bool:
        """Answer the first complete request in the buffer; False when there is none."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                self._answer(400, b"{}", close=True)
            return False
        lines = self.buffer[:end].decode("latin-1").split("\r\n")
        method, target, version = [*lines[0].split(" ", 2), "", ""][:3]
        length, authorized, close = 0, False, version != "HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "authorization":
                authorized = value.strip()[:6].lower() == "basic "
            elif name == "connection":
                close = value.strip().lower() == "close"
            elif name == "transfer-encoding":
                self._answer(400, b"{}", close=True)  # never sent by aiohttp for a form
                return False
        total = end + 4 + length
        if len(self.buffer) < total:
            return False
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        status, payload = self.recorder.handle(method, target, authorized, body, arrived)
        self._answer(status, payload, close=close)
        return not close

    def _answer(self, status: int, payload: bytes, *, close: bool) -> None:
        assert self.transport is not None
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
            f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        )
        self.transport.write(head.encode("latin-1") + payload)
        if close:
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    recorder = Recorder()
    server = await loop.create_server(lambda: HttpProtocol(recorder), host, port, backlog=1024)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    bound = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"port {bound}\n")
    sys.stdout.flush()
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fast_twilio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args(argv)
    asyncio.run(serve(options.host, options.port))


# --- the benchmark's side -------------------------------------------------------------------


class FastTwilio:
    """Runs the server in a child process; ``with FastTwilio() as fake: fake.url ...``."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> Self:
        from dispatch.processes import die_with_parent_hook

        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.fast_twilio"],
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C reaches the benchmark, which stops us
            preexec_fn=die_with_parent_hook(),
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        if not line.startswith("port "):
            self.__exit__(None, None, None)
            raise RuntimeError("bench.fast_twilio did not start")
        self.port = int(line.split()[1])
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _get(self, path: str) -> bytes:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request("GET", path)
            answer = connection.getresponse()
            data = answer.read()
        finally:
            connection.close()
        if answer.status != 200:
            raise RuntimeError(f"bench.fast_twilio: GET {path} answered {answer.status}")
        return data

    def records(self, start: int = 0) -> list[Record]:
        """Records ``start`` onwards, in arrival order."""
        return list(self._parse(self._get(f"/records?from={start}")))

    @staticmethod
    def _parse(data: bytes) -> Iterator[Record]:
        for line in data.decode().splitlines():
            at, delivery, segments = line.split(" ")
            yield Record(float(at), "" if delivery == "-" else delivery, int(segments))

    def stats(self) -> tuple[int, float]:
        """(message requests so far, CPU seconds the server has used)."""
        stats = json.loads(self._get("/stats"))
        return int(stats["requests"]), float(stats["cpu_seconds"])

    def count(self) -> int:
        return self.stats()[0]


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
