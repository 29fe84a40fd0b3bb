"""Fixtures for the dispatch tests: a local fake Twilio and a sender pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dispatch.senders import TwilioSender
from tests.twilio_fake import FakeTwilio

# Realistic shapes (AC/MG + 32 hex), values that are nobody's.
ACCOUNT_SID = "AC" + "0f3c9a1e5b7d42c8a6e4b2d0c8e6f4a2"
AUTH_TOKEN = "4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e"
MESSAGING_SERVICE_SID = "MG" + "7e5c3a1f9d7b5e3c1a9f7d5b3e1c9a7f"
FROM_NUMBER = "+15035550100"
PUBLIC_URL = "https://rr.example.org"


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as fake:
        yield fake
    assert not fake.errors, f"the fake itself failed: {fake.errors!r}"


@pytest.fixture
def twilio_sender(fake_twilio: FakeTwilio) -> TwilioSender:
    return TwilioSender(
        ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, public_url=PUBLIC_URL, api_url=fake_twilio.url
    )
