"""Contract: what TwilioSender sends, and what the fake answers, against Twilio's own spec.

The spec is Twilio's published OpenAPI 3.0 description of REST API v2010
(the Messages part of twilio/twilio-oai's twilio_api_v2010.json, kept in
tests/twilio_spec/ with its licence). Requests our sender
made to the fake are validated against the CreateMessage form schema, and the fake's
answers against the Message resource schema, so neither side can drift from the real
API without a test noticing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import ValidationError
from twilio.request_validator import RequestValidator

from dispatch.senders import AsyncTwilioSender, TwilioSender
from rapidresponse.whatsapp import ADDRESS_PREFIX, Content
from tests.dispatch.conftest import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    MESSAGING_SERVICE_SID,
    PUBLIC_URL,
)
from tests.twilio_fake import Answer, FakeTwilio, Headers, RecordedRequest
from tests.twilio_spec.extract import SUBSET_PATH as SPEC_PATH

MESSAGES_TEMPLATE = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
FORM_TYPE = "application/x-www-form-urlencoded"
RECIPIENT = "+15035550123"
BODY = "Rapid response needed at 5th & Main. ¿Puedes venir? 🙏"

Spec = dict[str, Any]
Schema = dict[str, Any]


# -- the spec -------------------------------------------------------------------------------


@cache
def _load_spec() -> Spec:
    spec: Spec = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    return spec


@pytest.fixture(scope="module")
def spec() -> Spec:
    return _load_spec()


def create_message_operation(spec: Spec) -> dict[str, Any]:
    operation: dict[str, Any] = spec["paths"][MESSAGES_TEMPLATE]["post"]
    assert operation["operationId"] == "CreateMessage"
    return operation


def to_json_schema(node: Any, spec: Spec, seen: frozenset[str] = frozenset()) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema 2020-12.

    Inlines ``#/components/schemas/...`` references and turns ``nullable: true`` into a
    ``"null"`` type (or a ``None`` enum member), which OpenAPI 3.0 means and JSON Schema
    would not understand.
    """
    if isinstance(node, list):
        return [to_json_schema(item, spec, seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        prefix = "#/components/schemas/"
        assert ref.startswith(prefix), f"unexpected reference {ref}"
        assert ref not in seen, f"recursive reference {ref}"
        target = spec["components"]["schemas"][ref.removeprefix(prefix)]
        return to_json_schema(target, spec, seen | {ref})
    schema = {key: to_json_schema(value, spec, seen) for key, value in node.items()}
    if schema.pop("nullable", False):
        if "type" in schema:
            types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            schema["type"] = [*types, "null"]
        if "enum" in schema and None not in schema["enum"]:
            schema["enum"] = [*schema["enum"], None]
    return schema


def request_schema(spec: Spec) -> Schema:
    """The CreateMessage form, strict: nothing the spec does not define."""
    body = create_message_operation(spec)["requestBody"]["content"]
    assert FORM_TYPE in body, "CreateMessage no longer takes a urlencoded form"
    schema: Schema = copy.deepcopy(to_json_schema(body[FORM_TYPE]["schema"], spec))
    schema["additionalProperties"] = False
    return schema


def response_schema(spec: Spec) -> Schema:
    content = create_message_operation(spec)["responses"]["201"]["content"]
    schema: Schema = to_json_schema(content["application/json"]["schema"], spec)
    return schema


def path_pattern(spec: Spec) -> re.Pattern[str]:
    """The path template as a regex, each parameter held to the spec's pattern."""
    parameters = {
        parameter["name"]: parameter.get("schema", {})
        for parameter in create_message_operation(spec).get("parameters", [])
        if parameter["in"] == "path"
    }
    pattern = ""
    for literal, name in re.findall(r"([^{]*)(?:\{(\w+)\})?", MESSAGES_TEMPLATE):
        pattern += re.escape(literal)
        if name:
            inner = parameters.get(name, {}).get("pattern", "^[^/]+$")
            pattern += "(?:" + inner.removeprefix("^").removesuffix("$") + ")"
    return re.compile(pattern)


# Formats the spec uses, held to what Twilio documents for them. jsonschema would
# otherwise let every one of them through (it knows none of them, or needs extras for
# "uri").
FORMATS = FormatChecker()


def _is_phone_number(value: object) -> bool:
    # E.164 for SMS (all we send); channel addresses such as whatsapp:+1... too.
    return not isinstance(value, str) or bool(re.fullmatch(r"(?:[a-z]+:)?\+[1-9]\d{1,14}", value))


def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urllib.parse.urlsplit(value)
    # "URL must contain a valid hostname and underscores are not allowed."
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "_" not in value


def _is_rfc_2822(value: object) -> bool:
    return not isinstance(value, str) or parsedate_to_datetime(value).tzinfo is not None


FORMATS.checks("phone-number")(_is_phone_number)
FORMATS.checks("uri")(_is_uri)
FORMATS.checks("date-time-rfc-2822", raises=(TypeError, ValueError))(_is_rfc_2822)


def form_to_instance(form: dict[str, list[str]], schema: Schema) -> dict[str, Any]:
    """A parsed form as the JSON object the schema describes.

    Scalars take their one value (a repeated scalar is kept as a list, which fails), and
    integers, numbers and booleans are converted the way Twilio reads them; a value that
    does not convert is kept as a string, which fails too.
    """
    instance: dict[str, Any] = {}
    properties = schema.get("properties", {})
    for name, values in form.items():
        kind = properties.get(name, {}).get("type")
        if kind == "array":
            instance[name] = values
            continue
        if len(values) != 1:
            instance[name] = values
            continue
        value: Any = values[0]
        if kind == "integer" and re.fullmatch(r"-?\d+", value):
            value = int(value)
        elif kind == "number":
            with contextlib.suppress(ValueError):
                value = float(value)
        elif kind == "boolean" and value in ("true", "false"):
            value = value == "true"
        instance[name] = value
    return instance


def contract_errors(request: RecordedRequest, spec: Spec) -> list[str]:
    """Everything about ``request`` that breaks the CreateMessage contract."""
    errors: list[str] = []
    if request.method != "POST":
        errors.append(f"method {request.method}, not POST")
    if not path_pattern(spec).fullmatch(request.path):
        errors.append(f"path {request.path} does not fit {MESSAGES_TEMPLATE}")
    content_type = request.headers.get("Content-Type", "")
    if content_type.split(";")[0].strip() != FORM_TYPE:
        errors.append(f"Content-Type {content_type!r}, not {FORM_TYPE}")
    schemes = spec["components"]["securitySchemes"]
    assert schemes["accountSid_authToken"]["scheme"] == "basic"
    if request.auth is None or request.auth[0] != request.account_sid:
        errors.append("no Basic auth as the account in the path")
    schema = request_schema(spec)
    validator = Draft202012Validator(schema, format_checker=FORMATS)
    instance = form_to_instance(request.form, schema)
    errors += [
        f"{'/'.join(map(str, error.absolute_path)) or 'form'}: {error.message}"
        for error in validator.iter_errors(instance)
    ]
    return errors


# -- requests our sender makes --------------------------------------------------------------

# sender, send() keyword arguments
SEND_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "number": (FROM_NUMBER, {}),
    "number+callback": (FROM_NUMBER, {"callback_id": "42"}),
    "number+validity": (FROM_NUMBER, {"validity_period": 600}),
    "number+callback+validity": (FROM_NUMBER, {"callback_id": "d-1f2e", "validity_period": 36000}),
    "service": (MESSAGING_SERVICE_SID, {}),
    "service+callback+validity": (
        MESSAGING_SERVICE_SID,
        {"callback_id": "d 1/2", "validity_period": 1},
    ),
}


@pytest.fixture(
    params=[(case, path) for case in SEND_CASES for path in ("sync", "async")],
    ids=[f"{case}-{path}" for case in SEND_CASES for path in ("sync", "async")],
)
def sent(request: pytest.FixtureRequest, fake_twilio: FakeTwilio) -> FakeTwilio:
    """A fake that one of our senders (replies: sync; broadcasts: async) has just sent
    one message through, in one of its modes."""
    case, path = request.param
    sender, options = SEND_CASES[case]
    if path == "sync":
        TwilioSender(
            ACCOUNT_SID, AUTH_TOKEN, sender, public_url=PUBLIC_URL, api_url=fake_twilio.url
        ).send(RECIPIENT, BODY, **options)
    else:
        asyncio.run(_send_async(fake_twilio.url, sender, options))
    assert len(fake_twilio.requests) == 1
    return fake_twilio


async def _send_async(api_url: str, sender: str, options: dict[str, Any]) -> None:
    client = AsyncTwilioSender(
        ACCOUNT_SID, AUTH_TOKEN, sender, public_url=PUBLIC_URL, api_url=api_url
    )
    try:
        await client.send(
            RECIPIENT,
            BODY,
            callback_id=options.get("callback_id"),
            validity_period=options.get("validity_period"),
        )
    finally:
        await client.close()


def test_every_request_our_sender_makes_is_a_valid_create_message(
    sent: FakeTwilio, spec: Spec
) -> None:
    (request,) = sent.requests
    assert contract_errors(request, spec) == []


def test_every_answer_the_fake_gives_our_sender_is_a_valid_message(
    sent: FakeTwilio, spec: Spec
) -> None:
    (message,) = sent.messages
    validator = Draft202012Validator(response_schema(spec), format_checker=FORMATS)
    assert [error.message for error in validator.iter_errors(message.resource)] == []


def test_the_fake_answers_on_the_wire_with_a_valid_message(
    fake_twilio: FakeTwilio, spec: Spec
) -> None:
    status, headers, answer = post(
        fake_twilio, {"To": RECIPIENT, "From": FROM_NUMBER, "Body": BODY}
    )

    assert status == 201
    assert headers["Content-Type"].startswith("application/json")
    Draft202012Validator(response_schema(spec), format_checker=FORMATS).validate(answer)
    assert answer["status"] == "queued"
    assert answer["direction"] == "outbound-api"
    assert re.fullmatch(r"SM[0-9a-f]{32}", answer["sid"])
    assert answer["account_sid"] == ACCOUNT_SID
    assert answer["body"] == BODY
    assert answer["uri"] == (f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{answer['sid']}.json")


# -- WhatsApp: free text inside the 24 h window, an approved template outside it ----------

WHATSAPP_FROM = "whatsapp:" + FROM_NUMBER
TEMPLATE = Content("HX" + "0a1b2c3d" * 4, json.dumps({"1": BODY}, ensure_ascii=False))


@pytest.mark.parametrize(
    ("sender", "content"),
    [
        (WHATSAPP_FROM, None),
        (WHATSAPP_FROM, TEMPLATE),
        (MESSAGING_SERVICE_SID, TEMPLATE),
    ],
    ids=["free-text", "template", "service+template"],
)
def test_every_whatsapp_request_is_a_valid_create_message(
    fake_twilio: FakeTwilio, spec: Spec, sender: str, content: Content | None
) -> None:
    async def send() -> None:
        client = AsyncTwilioSender(
            ACCOUNT_SID,
            AUTH_TOKEN,
            sender,
            public_url=PUBLIC_URL,
            api_url=fake_twilio.url,
            to_prefix=ADDRESS_PREFIX,
        )
        try:
            await client.send(
                RECIPIENT, BODY, callback_id="d-1", validity_period=600, content=content
            )
        finally:
            await client.close()

    asyncio.run(send())
    (request,) = fake_twilio.requests
    assert contract_errors(request, spec) == []
    assert request.value("To") == f"whatsapp:{RECIPIENT}"
    if content is None:
        assert request.value("Body") == BODY and request.value("ContentSid") is None
    else:
        assert request.value("Body") is None  # the template carries the text
        assert request.value("ContentSid") == content.sid
        assert json.loads(request.value("ContentVariables") or "") == {"1": BODY}


def test_the_spec_path_template_matches_where_we_post(spec: Spec) -> None:
    pattern = path_pattern(spec)

    assert pattern.fullmatch(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json")
    assert not pattern.fullmatch("/2010-04-01/Accounts/ACnot-a-sid/Messages.json")
    assert not pattern.fullmatch(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json")


# -- the validator is not a rubber stamp ----------------------------------------------------


VALID_FORM = {"To": [RECIPIENT], "From": [FROM_NUMBER], "Body": [BODY]}


def recorded(form: dict[str, list[str]], **changes: Any) -> RecordedRequest:
    fields: dict[str, Any] = {
        "method": "POST",
        "path": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json",
        "account_sid": ACCOUNT_SID,
        "auth": (ACCOUNT_SID, AUTH_TOKEN),
        "form": form,
        "headers": Headers([("Content-Type", FORM_TYPE)]),
        **changes,
    }
    return RecordedRequest(**fields)


def test_the_validator_accepts_a_known_good_request(spec: Spec) -> None:
    assert contract_errors(recorded(VALID_FORM), spec) == []


@pytest.mark.parametrize(
    ("broken", "complaint"),
    [
        ({"From": [FROM_NUMBER], "Body": [BODY]}, "'To' is a required property"),
        ({**VALID_FORM, "Foo": ["bar"]}, "'Foo' was unexpected"),
        ({**VALID_FORM, "ValidityPeriod": ["ten minutes"]}, "is not of type 'integer'"),
        ({**VALID_FORM, "To": ["503-555-0123"]}, "is not a 'phone-number'"),
        ({**VALID_FORM, "Body": ["one", "two"]}, "is not of type 'string'"),
        ({**VALID_FORM, "MessagingServiceSid": ["MG123"]}, "does not match"),
        ({**VALID_FORM, "StatusCallback": ["https://rr_example.org/sms"]}, "is not a 'uri'"),
    ],
    ids=["no-To", "unknown-Foo", "text-ValidityPeriod", "not-E164", "two-Bodies", "bad-MG", "uri"],
)
def test_the_validator_catches_a_broken_request(
    spec: Spec, broken: dict[str, list[str]], complaint: str
) -> None:
    errors = contract_errors(recorded(broken), spec)

    assert any(complaint in error for error in errors), errors
    schema = request_schema(spec)
    validator = Draft202012Validator(schema, format_checker=FORMATS)
    with pytest.raises(ValidationError):
        validator.validate(form_to_instance(broken, schema))


def test_the_validator_catches_a_request_to_the_wrong_place(spec: Spec) -> None:
    errors = contract_errors(
        recorded(VALID_FORM, path="/2010-04-01/Accounts/AC123/Messages", account_sid="AC123"),
        spec,
    )

    assert any("does not fit" in error for error in errors), errors


def test_the_response_validator_catches_a_broken_message(spec: Spec) -> None:
    validator = Draft202012Validator(response_schema(spec), format_checker=FORMATS)

    assert not validator.is_valid({"sid": "XX" + "0" * 32})
    assert not validator.is_valid({"status": "teleported"})
    assert not validator.is_valid({"date_created": "2026-04-14T10:00:00Z"})
    assert validator.is_valid({"from": None, "error_code": None, "status": "queued"})


# -- the fake behaves like Twilio where the spec says nothing -------------------------------


def post(
    fake: FakeTwilio,
    form: dict[str, str],
    *,
    auth: tuple[str, str] = (ACCOUNT_SID, AUTH_TOKEN),
    path: str | None = None,
) -> tuple[int, dict[str, str], dict[str, Any]]:
    token = base64.b64encode(":".join(auth).encode()).decode()
    request = urllib.request.Request(  # noqa: S310 (the fake's http URL)
        fake.url + (path or f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"),
        data=urllib.parse.urlencode(form).encode(),
        headers={"Authorization": f"Basic {token}", "Content-Type": FORM_TYPE},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), json.load(error)


def assert_twilio_error(answer: dict[str, Any], status: int, code: int) -> None:
    assert answer == {
        "code": code,
        "message": answer["message"],
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    assert isinstance(answer["message"], str)
    assert answer["message"]


def test_the_fake_wants_the_account_credentials(fake_twilio: FakeTwilio) -> None:
    status, headers, answer = post(
        fake_twilio, {"To": RECIPIENT, "From": FROM_NUMBER, "Body": BODY}, auth=(ACCOUNT_SID, "x")
    )

    assert status == 401
    assert_twilio_error(answer, 401, 20003)
    assert headers["WWW-Authenticate"].startswith("Basic")
    assert fake_twilio.messages == []


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": FROM_NUMBER, "Body": BODY}, 21604),
        ({"To": RECIPIENT, "From": FROM_NUMBER}, 21602),
        ({"To": RECIPIENT, "Body": BODY}, 21603),
    ],
    ids=["no-To", "no-Body", "no-sender"],
)
def test_the_fake_wants_a_recipient_a_body_and_a_sender(
    fake_twilio: FakeTwilio, form: dict[str, str], code: int
) -> None:
    status, _, answer = post(fake_twilio, form)

    assert status == 400
    assert_twilio_error(answer, 400, code)
    assert fake_twilio.messages == []


def test_the_fake_answers_404_elsewhere(fake_twilio: FakeTwilio) -> None:
    path = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"

    status, _, answer = post(fake_twilio, {"To": RECIPIENT}, path=path)

    assert status == 404
    assert_twilio_error(answer, 404, 20404)


def test_the_fake_asks_to_wait_when_told(fake_twilio: FakeTwilio) -> None:
    fake_twilio.fail_next(status=429, code=20429, retry_after=2)
    form = {"To": RECIPIENT, "From": FROM_NUMBER, "Body": BODY}

    status, headers, answer = post(fake_twilio, form)
    then, _, _ = post(fake_twilio, form)

    assert status == 429
    assert headers["Retry-After"] == "2"
    assert_twilio_error(answer, 429, 20429)
    assert then == 201


def test_the_fake_follows_a_policy(fake_twilio: FakeTwilio) -> None:
    fake_twilio.policy = lambda request: (
        None if request.value("Body") == "ok" else Answer.error(500)
    )
    form = {"To": RECIPIENT, "From": FROM_NUMBER}

    assert post(fake_twilio, {**form, "Body": "no"})[0] == 500
    assert post(fake_twilio, {**form, "Body": "ok"})[0] == 201
    assert len(fake_twilio.requests) == 2
    assert len(fake_twilio.messages) == 1


def test_the_fake_never_prints_numbers_or_bodies(
    fake_twilio: FakeTwilio, capfd: pytest.CaptureFixture[str]
) -> None:
    form = {"To": RECIPIENT, "From": FROM_NUMBER, "Body": BODY}
    post(fake_twilio, form)
    post(fake_twilio, form, auth=(ACCOUNT_SID, "wrong"))
    fake_twilio.fail_next(status=400, code=21211)
    post(fake_twilio, form)

    out, err = capfd.readouterr()
    assert RECIPIENT not in out + err
    assert "Rapid response" not in out + err


# -- status callbacks -----------------------------------------------------------------------


class _Catcher(BaseHTTPRequestHandler):
    caught: list[tuple[str, dict[str, str], dict[str, str]]]

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
        self.caught.append((self.path, dict(self.headers), form))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def catcher() -> Iterator[tuple[str, list[tuple[str, dict[str, str], dict[str, str]]]]]:
    caught: list[tuple[str, dict[str, str], dict[str, str]]] = []
    handler = type("Catcher", (_Catcher,), {"caught": caught})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", caught
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("status", "error_code"), [("delivered", None), ("undelivered", "30003")])
def test_the_fake_sends_a_signed_status_callback(
    fake_twilio: FakeTwilio,
    twilio_sender: TwilioSender,
    catcher: tuple[str, list[tuple[str, dict[str, str], dict[str, str]]]],
    status: str,
    error_code: str | None,
) -> None:
    local, caught = catcher
    sid = twilio_sender.send(RECIPIENT, BODY, callback_id="d-9")

    answered = fake_twilio.send_status_callback(sid, status, AUTH_TOKEN, via=local)

    assert answered == 204
    ((path, headers, form),) = caught
    assert path == "/sms/status?delivery=d-9"
    public_url = f"{PUBLIC_URL}/sms/status?delivery=d-9"
    assert RequestValidator(AUTH_TOKEN).validate(public_url, form, headers["X-Twilio-Signature"])
    assert form["MessageSid"] == sid
    assert form["MessageStatus"] == status
    assert form["AccountSid"] == ACCOUNT_SID
    assert form["To"] == RECIPIENT
    assert form["From"] == FROM_NUMBER
    assert form.get("ErrorCode") == error_code


# -- deleting a message (provider redaction) --------------------------------------------------

MESSAGE_TEMPLATE = "/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json"


def test_forgetting_a_message_is_twilios_delete_message(spec: Spec) -> None:
    operation = spec["paths"][MESSAGE_TEMPLATE]["delete"]
    assert operation["operationId"] == "DeleteMessage"
    sid = "SM" + "0123456789abcdef" * 2
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        sender = TwilioSender(
            ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, public_url=PUBLIC_URL, api_url=fake.url
        )
        sender.forget(sid)
        sender.forget(sid)  # Twilio's 404 for a message already gone: forgotten all the same
        first, second = fake.requests
    values = {"AccountSid": ACCOUNT_SID, "Sid": sid}
    assert first.method == "DELETE" and first.path == MESSAGE_TEMPLATE.format(**values)
    for parameter in operation["parameters"]:
        assert parameter["in"] == "path"
        Draft202012Validator(parameter["schema"]).validate(values[parameter["name"]])
    assert list(operation["responses"]) == ["204"]  # what the fake answered the first time
    assert fake.deleted == [sid] and second.path == first.path
