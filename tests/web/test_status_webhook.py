"""Status callbacks answered before Flask (``web.webhooks``): the same answers as
the app gives everything else, at the WSGI boundary where odd requests arrive."""

from __future__ import annotations

import io
import logging
from urllib.parse import urlencode

import pytest
from flask import Flask, request
from werkzeug.wrappers import Request

from dispatch import status_queue
from dispatch.services import Services
from rapidresponse.models import Language
from tests.factories import ALICE, add_alert_for, add_subscriber
from tests.web.sms_helpers import PUBLIC_URL, new_sid, sign
from web.webhooks import read_form

FORM = "application/x-www-form-urlencoded"


def signed_post(
    app: Flask, query: str, params: dict[str, str], **headers: str
) -> tuple[int, dict[str, str]]:
    url = f"{PUBLIC_URL}/sms/status?{query}"
    response = app.test_client().post(
        f"/sms/status?{query}",
        data=urlencode(params),
        headers={"Content-Type": FORM, "X-Twilio-Signature": sign(params, url), **headers},
    )
    return response.status_code, dict(response.headers)


def delivered(sid: str) -> dict[str, str]:
    return {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "AC" + "b" * 32}


def test_a_callback_never_reaches_flask(sms_app: Flask, twilio_services: Services) -> None:
    """Flask's hooks (the session, the locale, the limits) cost more than the callback."""
    seen: list[str] = []
    sms_app.before_request(lambda: seen.append(request.path))
    ledger = add_alert_for(twilio_services, add_subscriber(twilio_services, ALICE), Language.EN)
    code, headers = signed_post(sms_app, f"delivery={ledger.delivery_id}", delivered(new_sid()))
    assert code == 200 and seen == []
    assert status_queue.waiting(twilio_services.redis) == 1
    # The headers every response of the app carries.
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    # Everything else still goes through Flask.
    sms_app.test_client().get("/healthz")
    assert seen == ["/healthz"]


def test_a_body_larger_than_any_callback_is_refused_unread(sms_app: Flask) -> None:
    params = {**delivered(new_sid()), "Body": "x" * 70_000}
    assert signed_post(sms_app, "delivery=1", params)[0] == 413


@pytest.mark.parametrize("length", ["abc", "1e3", "0x10"])
def test_a_broken_content_length_is_a_400(sms_app: Flask, length: str) -> None:
    """As a server passes it on: the test client would mend the header."""
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/sms/status",
        "QUERY_STRING": "delivery=1",
        "CONTENT_LENGTH": length,
        "CONTENT_TYPE": FORM,
        "wsgi.input": io.BytesIO(b"MessageSid=SM1"),
    }
    answered: list[str] = []
    body = sms_app.wsgi_app(environ, lambda status, _headers: answered.append(status))
    assert answered == ["400 Bad Request"] and b"".join(body) == b""


@pytest.mark.parametrize("length", ["", "-5", "0"])
def test_a_missing_or_negative_length_reads_nothing(length: str) -> None:
    environ = {"CONTENT_LENGTH": length, "CONTENT_TYPE": FORM, "wsgi.input": io.BytesIO(b"a=1")}
    assert read_form(environ) == {}


def test_a_form_is_read_as_flask_reads_it() -> None:
    body = b"MessageSid=SM1&To=%2B15035550142&Body=caf%C3%A9&Body=&Bad=%FF"
    environ = {
        "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": f"{FORM}; charset=utf-8",
        "wsgi.input": io.BytesIO(body),
    }
    form = read_form(environ)
    assert form.get("To") == "+15035550142"
    assert form.getlist("Body") == ["café", ""]
    flask_reads = Request({**environ, "REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO(body)})
    assert form == flask_reads.form
    assert form.get("Bad") == "%FF"  # an invalid escape kept as it came


def test_more_fields_than_any_callback_is_a_400(sms_app: Flask) -> None:
    params = {**delivered(new_sid()), **{f"F{n}": "1" for n in range(150)}}
    assert signed_post(sms_app, "delivery=1", params)[0] == 400


def test_a_signed_callback_without_its_fields_is_a_400(sms_app: Flask) -> None:
    assert signed_post(sms_app, "delivery=1", {"AccountSid": "AC" + "b" * 32})[0] == 400


def test_a_json_body_is_not_a_form(sms_app: Flask) -> None:
    url = f"{PUBLIC_URL}/sms/status?delivery=1"
    response = sms_app.test_client().post(
        "/sms/status?delivery=1",
        json=delivered(new_sid()),
        headers={"X-Twilio-Signature": sign({}, url)},  # signed as a request with no form
    )
    assert response.status_code == 400


def test_a_failure_is_a_500_that_names_no_number(
    sms_app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError(f"could not queue {ALICE}")

    monkeypatch.setattr(status_queue, "record", broken)
    with caplog.at_level(logging.INFO):
        code, _ = signed_post(sms_app, "delivery=1", {**delivered(new_sid()), "To": ALICE})
    assert code == 500
    assert "RuntimeError" in caplog.text and ALICE not in caplog.text
