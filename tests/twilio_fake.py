"""A small local Twilio-compatible HTTP server for tests.

It speaks just enough of Twilio's REST API v2010 for our sender: ``POST
/2010-04-01/Accounts/{AccountSid}/Messages.json``, and ``DELETE …/Messages/{Sid}.json``
(provider redaction; ``deleted`` lists what was deleted). It checks Basic auth and the
required parameters the way Twilio does, answers 201 with a Message resource that
conforms to Twilio's published OpenAPI description (tests/dispatch/test_twilio_contract.py
holds it to that), and answers errors with Twilio's error JSON shape::

    {"code": 21610, "message": "...", "more_info": "https://www.twilio.com/docs/errors/21610",
     "status": 400}

Answers can be scripted, one at a time or by a policy::

    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        fake.fail_next(status=429, code=20429, retry_after=2)
        fake.fail_next(status=400, code=21610)
        fake.policy = lambda request: Answer.error(500) if random.random() < 0.1 else None

The server never writes to stdout or stderr: phone numbers and texts must not leak
into test output any more than into production logs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

API_VERSION = "2010-04-01"
MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages\.json$")
MESSAGE_PATH = re.compile(
    r"^/2010-04-01/Accounts/(?P<sid>[^/]+)/Messages/(?P<message>(SM|MM)[0-9a-fA-F]{32})\.json$"
)
ACCOUNT_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<sid>[^/]+)(?:/|\.json|$)")
MORE_INFO = "https://www.twilio.com/docs/errors/{code}"
CONTENT_AND_APPROVALS = "/v1/ContentAndApprovals"

# Twilio's own wording, which (like the real API) quotes the numbers for some codes.
# Placeholders name request parameters; a missing one becomes "".
ERROR_MESSAGES: dict[int, str] = {
    20003: "Authenticate",
    20004: "Method not allowed",
    20404: "The requested resource {path} was not found",
    20429: "Too Many Requests",
    20500: "An internal server error has occurred",
    20503: "Service Unavailable",
    21211: "The 'To' number {To} is not a valid phone number.",
    21408: "Permission to send an SMS has not been enabled for the region indicated by "
    "the 'To' number: {To}.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21606: "The 'From' phone number provided ({From}) is not a valid message-capable "
    "Twilio phone number for this destination.",
    21610: "Attempt to send to unsubscribed recipient",
    21612: "The 'To' phone number: {To}, is not currently reachable using the 'From' "
    "phone number: {From} via SMS.",
    21614: "'To' number {To} is not a valid mobile number",
}
# The code Twilio puts in the body for an HTTP status, when the caller names none.
DEFAULT_CODES: dict[int, int] = {
    401: 20003,
    404: 20404,
    405: 20004,
    429: 20429,
    500: 20500,
    503: 20503,
}

# GSM 03.38 basic character set and its extension table (which costs two septets).
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


class Headers(Mapping[str, str]):
    """Request headers, looked up without regard to case."""

    def __init__(self, items: Iterator[tuple[str, str]] | list[tuple[str, str]]) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        for name, value in items:
            self._items[name.lower()] = (name, value)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self._items.values())!r})"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the fake received, whatever it answered.

    Attributes:
        method: the HTTP method.
        path: the URL path, without the query string.
        account_sid: the ``{AccountSid}`` segment of the path, when there is one.
        auth: the Basic-auth (user, password), when the request carried one.
        form: the urlencoded body, as ``urllib.parse.parse_qs(keep_blank_values=True)``.
        headers: the request headers (case-insensitive).
        query: the query string, parsed the same way.
        received_at: when it arrived (``time.monotonic()``).
    """

    method: str
    path: str
    account_sid: str | None
    auth: tuple[str, str] | None
    form: dict[str, list[str]]
    headers: Headers
    query: dict[str, list[str]] = field(default_factory=dict)
    received_at: float = field(default_factory=time.monotonic)

    def value(self, name: str) -> str | None:
        """The first value of the form parameter ``name``, or None."""
        values = self.form.get(name)
        return values[0] if values else None


@dataclass(frozen=True)
class Answer:
    """A scripted HTTP answer.

    ``body`` is sent as JSON when it is a mapping, as-is otherwise (for the HTML error
    pages a load balancer returns, say). ``delay`` makes the fake wait before answering,
    for timeout tests.
    """

    status: int
    body: Mapping[str, Any] | str | bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def error(
        cls,
        status: int,
        code: int | None = None,
        message: str | None = None,
        *,
        retry_after: float | None = None,
        delay: float = 0.0,
    ) -> Answer:
        """Twilio's error JSON for ``status``.

        Args:
            status: the HTTP status.
            code: Twilio's error code; by default the one Twilio uses for ``status``.
            message: taken literally; by default Twilio's wording for ``code``, with the
                request's parameters filled in when the answer is given.
            retry_after: seconds, sent as a ``Retry-After`` header.
            delay: seconds to wait before answering.
        """
        if code is None:
            code = DEFAULT_CODES.get(status, status)
        body: dict[str, Any] = {
            "code": code,
            "message": message,
            "more_info": MORE_INFO.format(code=code),
            "status": status,
        }
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = _seconds(retry_after)
        if status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        return cls(status, body, headers, delay)


@dataclass(frozen=True)
class FakeMessage:
    """A message the fake accepted (answered 201 to)."""

    sid: str
    to: str
    body: str
    from_: str | None
    messaging_service_sid: str | None
    status_callback: str | None
    validity_period: int | None
    resource: dict[str, Any]


Policy = Callable[[RecordedRequest], Answer | None]


class FakeTwilio:
    """A Twilio-compatible Messages API on 127.0.0.1, on a free port.

    Args:
        account_sid: the account the fake serves; requests must authenticate as it.
        auth_token: its auth token.

    Attributes:
        policy: called with every request to the Messages resource that passed auth and
            no ``fail_next`` answer was waiting for; an ``Answer`` is sent as is, None
            lets the fake carry on as Twilio would.
    """

    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.policy: Policy | None = None
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._messages: list[FakeMessage] = []
        self._deleted: list[str] = []
        self._scripted: deque[Answer] = deque()
        self._errors: list[BaseException] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # The Content API's templates with their WhatsApp approvals, as the Console would
        # hold them (``content_template`` builds one); GET /v1/ContentAndApprovals lists them.
        self.contents: list[dict[str, Any]] = []

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("FakeTwilio is already running")
        server = _Server(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        server.handle_error = self._handle_error  # type: ignore[method-assign]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-twilio",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeTwilio is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL to use instead of https://api.twilio.com."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def messages_url(self) -> str:
        return f"{self.url}/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"

    # -- what happened ------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def messages(self) -> list[FakeMessage]:
        """Every message accepted so far, oldest first (a copy)."""
        with self._lock:
            return list(self._messages)

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised while handling requests (a fake bug, not a test's)."""
        with self._lock:
            return list(self._errors)

    def reset(self) -> None:
        """Forget requests, messages and scripted answers; drop the policy."""
        with self._lock:
            self._requests.clear()
            self._messages.clear()
            self._deleted.clear()
            self._scripted.clear()
            self._errors.clear()
        self.policy = None

    # -- scripting ----------------------------------------------------------------------

    def fail_next(
        self,
        status: int = 500,
        code: int | None = None,
        *,
        message: str | None = None,
        retry_after: float | None = None,
        times: int = 1,
        delay: float = 0.0,
    ) -> None:
        """Answer the next ``times`` message requests with a Twilio error.

        Scripted answers queue up in order and come before ``policy``. See
        ``Answer.error`` for the arguments.
        """
        answer = Answer.error(status, code, message, retry_after=retry_after, delay=delay)
        self.answer_next(answer, times=times)

    def answer_next(self, answer: Answer, *, times: int = 1) -> None:
        """Answer the next ``times`` message requests with ``answer``."""
        with self._lock:
            self._scripted.extend([answer] * times)

    # -- status callbacks ---------------------------------------------------------------

    def send_status_callback(
        self,
        message_sid: str,
        status: str,
        auth_token: str | None = None,
        *,
        error_code: int | None = None,
        via: str | None = None,
        timeout: float = 5.0,
    ) -> int:
        """POST Twilio's status callback for an accepted message; return the HTTP status.

        The form carries MessageSid, SmsSid, MessageStatus, SmsStatus, AccountSid, To,
        From (or MessagingServiceSid), ApiVersion and, for ``failed`` and
        ``undelivered``, ErrorCode (30003 unless ``error_code`` says otherwise). It is
        signed with ``X-Twilio-Signature`` over the StatusCallback URL the message was
        created with, using ``auth_token`` (the fake's own by default).

        Args:
            via: a base URL (``http://127.0.0.1:5000``) to connect to instead of the
                scheme and host of the StatusCallback URL, as a reverse proxy would; the
                signature still covers the public URL.
        """
        from twilio.request_validator import RequestValidator

        message = self._message(message_sid)
        if message.status_callback is None:
            raise LookupError("that message was created without a StatusCallback")
        params: dict[str, str] = {
            "MessageSid": message.sid,
            "SmsSid": message.sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "AccountSid": self.account_sid,
            "To": message.to,
            "ApiVersion": API_VERSION,
        }
        if message.from_ is not None:
            params["From"] = message.from_
        if message.messaging_service_sid is not None:
            params["MessagingServiceSid"] = message.messaging_service_sid
        if status in ("failed", "undelivered"):
            params["ErrorCode"] = str(error_code if error_code is not None else 30003)
        url = message.status_callback
        signature = RequestValidator(auth_token or self.auth_token).compute_signature(url, params)
        target = url
        if via is not None:
            public = urllib.parse.urlsplit(url)
            local = urllib.parse.urlsplit(via)
            target = urllib.parse.urlunsplit(
                (local.scheme, local.netloc, public.path, public.query, "")
            )
        if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
            raise ValueError("status callbacks go over http(s) only")
        request = urllib.request.Request(  # noqa: S310 (scheme checked above)
            target,
            data=urllib.parse.urlencode(params).encode(),
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
                "User-Agent": "TwilioProxy/1.1",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (checked)
                return int(response.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)

    # -- request handling (server threads) ----------------------------------------------

    def _message(self, sid: str) -> FakeMessage:
        with self._lock:
            for message in self._messages:
                if message.sid == sid:
                    return message
        raise LookupError(f"no accepted message has sid {sid}")

    def _handle_error(self, request: object, client_address: object) -> None:
        # socketserver would print a traceback to stderr; keep it for the tests instead.
        exc = sys.exc_info()[1]
        # A client that gave up (a timeout test) is not the fake's fault.
        if exc is not None and not isinstance(exc, ConnectionError):
            with self._lock:
                self._errors.append(exc)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_scripted(self) -> Answer | None:
        with self._lock:
            return self._scripted.popleft() if self._scripted else None

    def _answer(self, request: RecordedRequest) -> Answer:
        if request.path == CONTENT_AND_APPROVALS:
            return self._list_contents(request)
        if MESSAGE_PATH.match(request.path):
            return self._answer_instance(request)
        match = MESSAGES_PATH.match(request.path)
        if match is None:
            if ACCOUNT_PATH.match(request.path) and not self._authorized(request):
                return Answer.error(401)
            return Answer.error(404)
        return self._gate(request, "POST") or self._create_message(request)

    def _gate(self, request: RecordedRequest, method: str) -> Answer | None:
        """The answer before the resource's own: wrong method, no auth, or scripted."""
        if request.method != method:
            return Answer.error(405)
        if not self._authorized(request):
            return Answer.error(401)
        answer = self._next_scripted()
        if answer is None and self.policy is not None:
            answer = self.policy(request)
        return answer

    def _answer_instance(self, request: RecordedRequest) -> Answer:
        """DELETE of one message: 204, then 404 for a message already deleted."""
        return self._gate(request, "DELETE") or self._delete_message(request)

    def _delete_message(self, request: RecordedRequest) -> Answer:
        match = MESSAGE_PATH.match(request.path)
        assert match is not None
        with self._lock:
            if match.group("message") in self._deleted:
                return Answer.error(404, 20404)
            self._deleted.append(match.group("message"))
        return Answer(204, b"")

    def _list_contents(self, request: RecordedRequest) -> Answer:
        """The Content API's list, one page (content.twilio.com has no account in its path:
        Basic auth alone says whose templates they are)."""
        if request.method != "GET":
            return Answer.error(405)
        if request.auth != (self.account_sid, self.auth_token):
            return Answer.error(401)
        answer = self._next_scripted()
        if answer is not None:
            return answer
        url = f"https://content.twilio.com{CONTENT_AND_APPROVALS}?PageSize=50&Page=0"
        meta = {
            "page": 0,
            "page_size": 50,
            "first_page_url": url,
            "previous_page_url": None,
            "url": url,
            "next_page_url": None,
            "key": "contents",
        }
        with self._lock:
            return Answer(200, {"contents": list(self.contents), "meta": meta})

    @property
    def deleted(self) -> list[str]:
        """The sids of messages deleted so far, oldest first (a copy)."""
        with self._lock:
            return list(self._deleted)

    def _authorized(self, request: RecordedRequest) -> bool:
        expected = (self.account_sid, self.auth_token)
        return (
            request.auth is not None
            and secrets.compare_digest(request.auth[0], expected[0])
            and secrets.compare_digest(request.auth[1], expected[1])
            and request.account_sid == self.account_sid
        )

    def _create_message(self, request: RecordedRequest) -> Answer:
        to = request.value("To")
        body = request.value("Body")
        from_ = request.value("From") or None
        service = request.value("MessagingServiceSid") or None
        if not to:
            return Answer.error(400, 21604)
        if not body and not request.value("MediaUrl") and not request.value("ContentSid"):
            return Answer.error(400, 21602)
        if from_ is None and service is None:
            return Answer.error(400, 21603)
        validity = request.value("ValidityPeriod")
        validity_period = int(validity) if validity and validity.isdigit() else None
        sid = "SM" + secrets.token_hex(16)
        now = format_datetime(datetime.now(UTC).replace(microsecond=0))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        resource: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body or "",
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            # With a Messaging Service, Twilio picks the sender (and so the segment
            # count) after it answers.
            "from": from_,
            "messaging_service_sid": service,
            "num_media": str(len(request.form.get("MediaUrl", []))),
            "num_segments": "0" if from_ is None else str(count_segments(body or "")),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": to,
            "uri": f"{uri}.json",
        }
        message = FakeMessage(
            sid=sid,
            to=to,
            body=body or "",
            from_=from_,
            messaging_service_sid=service,
            status_callback=request.value("StatusCallback") or None,
            validity_period=validity_period,
            resource=resource,
        )
        with self._lock:
            self._messages.append(message)
        return Answer(201, resource)


def content_template(
    account_sid: str,
    name: str,
    language: str,
    body: str,
    *,
    status: str = "approved",
    category: str = "UTILITY",
) -> dict[str, Any]:
    """A Content API resource with its WhatsApp approval, in the API's JSON shape."""
    sid = "HX" + secrets.token_hex(16)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "sid": sid,
        "account_sid": account_sid,
        "friendly_name": name,
        "language": language,
        "variables": {"1": "text"},
        "types": {"twilio/text": {"body": body}},
        "approval_requests": {
            "name": name,
            "category": category,
            "content_type": "twilio/text",
            "status": status,
            "rejection_reason": "" if status != "rejected" else "INVALID_FORMAT",
            "allow_category_change": False,
        },
        "date_created": now,
        "date_updated": now,
    }


def count_segments(text: str) -> int:
    """How many SMS segments Twilio bills ``text`` as (GSM-7 or UCS-2)."""
    if all(char in _GSM_BASIC or char in _GSM_EXTENDED for char in text):
        units = sum(2 if char in _GSM_EXTENDED else 1 for char in text)
        single, part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    if units <= single:
        return 1
    return -(-units // part)


class _Server(ThreadingHTTPServer):
    # A broadcast opens dozens of connections at once; the default backlog of 5 would
    # drop their SYNs and add a second of retransmission to each.
    request_queue_size = 256


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _make_handler(fake: FakeTwilio) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeTwilio/1.0"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: request lines carry paths, and errors could carry numbers."""

        def _handle(self) -> None:
            split = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            form = urllib.parse.parse_qs(
                raw.decode("utf-8", errors="replace"), keep_blank_values=True
            )
            account = ACCOUNT_PATH.match(split.path)
            request = RecordedRequest(
                method=self.command,
                path=split.path,
                account_sid=account.group("sid") if account else None,
                auth=_basic_auth(self.headers.get("Authorization")),
                form=form,
                headers=Headers(list(self.headers.items())),
                query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
            )
            fake._record(request)
            self._send(fake._answer(request), request)

        def _send(self, answer: Answer, request: RecordedRequest) -> None:
            if answer.delay > 0:
                time.sleep(answer.delay)
            body = answer.body
            content_type = "text/plain; charset=utf-8"
            if isinstance(body, Mapping):
                body = dict(body)
                if body.get("message") is None and isinstance(body.get("code"), int):
                    template = ERROR_MESSAGES.get(body["code"], "Error")
                    values = _Blank({k: v[0] for k, v in request.form.items() if v})
                    values["path"] = request.path
                    body["message"] = template.format_map(values)
                payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
                content_type = "application/json; charset=utf-8"
            elif isinstance(body, str):
                payload = body.encode("utf-8")
            else:
                payload = body or b""
            self.send_response(answer.status)
            headers = {"Content-Type": content_type, **answer.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    return Handler
