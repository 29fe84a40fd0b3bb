"""Texting the app's webhook the way Twilio does: signed form posts, TwiML answers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from xml.etree import ElementTree

from flask.testing import FlaskClient
from twilio.request_validator import RequestValidator
from werkzeug.test import TestResponse

from tests.dispatch.conftest import AUTH_TOKEN

ALICE = "+15035550142"
BETO = "+19715550177"
PUBLIC_URL = "https://rr.example.org"
INBOUND_URL = PUBLIC_URL + "/sms/inbound"


@dataclass
class Phone:
    """A person texting the hotline through the test client."""

    client: FlaskClient
    number: str

    def text(self, body: str, sid: str | None = None) -> str | None:
        response = send(
            self.client, {"From": self.number, "Body": body, "MessageSid": sid or new_sid()}
        )
        assert response.status_code == 200, response.get_data(as_text=True)
        return twiml_message(response.get_data(as_text=True))


def new_sid() -> str:
    return "SM" + uuid.uuid4().hex


def sign(params: dict[str, str], url: str = INBOUND_URL) -> str:
    return str(RequestValidator(AUTH_TOKEN).compute_signature(url, params))


def send(
    client: FlaskClient,
    params: dict[str, str],
    signature: str | None = None,
) -> TestResponse:
    headers = {"X-Twilio-Signature": sign(params) if signature is None else signature}
    return client.post("/sms/inbound", data=params, headers=headers)


def twiml_message(document: str) -> str | None:
    root = ElementTree.fromstring(document)  # noqa: S314 - our own server's answer
    assert root.tag == "Response"
    messages = [element.text or "" for element in root.iter("Message")]
    assert len(messages) <= 1
    return messages[0] if messages else None
