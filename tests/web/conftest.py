"""Fixtures for the web tests that text the hotline through a Twilio-backed app."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask import Flask

from dispatch.services import Services
from rapidresponse.areas import import_areas
from rapidresponse.regions import demo_region_path, load_region_file
from tests.dispatch.conftest import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import ALICE, BETO, Phone


@pytest.fixture
def fake(request: pytest.FixtureRequest) -> Iterator[FakeTwilio]:
    """The local Twilio. Unless a test says it sends (``sends_through_api``), nothing may
    reach it: every answer to an inbound text is TwiML."""
    with FakeTwilio(ACCOUNT_SID, AUTH_TOKEN) as running:
        yield running
    if request.node.get_closest_marker("sends_through_api") is None:
        assert running.requests == [], "something was sent through the Messages API"


@pytest.fixture
def twilio_services(services: Services, fake: FakeTwilio) -> Services:
    services.settings = replace(
        services.settings,
        sms_backend="twilio",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_from=FROM_NUMBER,
        twilio_api_url=fake.url,
    )
    from dispatch.senders import make_sender

    services.sender = make_sender(
        services.settings, services.database, services.cipher, services.index
    )
    with services.database.session() as session:
        import_areas(session, load_region_file(demo_region_path()), "Portland")
    return services


@pytest.fixture
def sms_app(twilio_services: Services) -> Flask:
    from web import create_app

    return create_app(services=twilio_services, test_config={"TESTING": True})


@pytest.fixture
def alice(sms_app: Flask) -> Phone:
    return Phone(sms_app.test_client(), ALICE)


@pytest.fixture
def beto(sms_app: Flask) -> Phone:
    return Phone(sms_app.test_client(), BETO)
