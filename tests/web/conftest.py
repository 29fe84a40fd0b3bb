"""Fixtures the board's tests share: the world of incidents, alerts and people the
access test builds, and a dispatcher signed in to it."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from dispatch.services import Services
from rapidresponse.models import StaffRole
from tests.web.staff_helpers import add_account, sign_in
from tests.web.test_access import World, build_world


@pytest.fixture
def world(services: Services) -> World:
    return build_world(services)


@pytest.fixture
def dispatcher(app: Flask, services: Services, world: World) -> FlaskClient:
    client = app.test_client()
    sign_in(client, services, add_account(services, StaffRole.DISPATCHER))
    return client
