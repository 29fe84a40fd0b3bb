"""The panic seal from the board: a coordinator seals at once; with PANIC_SEAL=two-staff
two different people do; a deployment without a sealed keyring has nothing to seal."""

from __future__ import annotations

from dataclasses import replace

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from sqlalchemy import select

from dispatch import key_custody
from dispatch.services import Services
from rapidresponse.keyring import Keyring
from rapidresponse.models import AuditEvent, StaffRole
from tests.web.staff_helpers import add_account, post_form, sign_in


def signed_in(
    app: Flask, services: Services, role: StaffRole, email: str | None = None
) -> FlaskClient:
    client = app.test_client()
    sign_in(client, services, add_account(services, role, email))
    return client


def sealing(services: Services, panic_seal: str = "coordinator") -> None:
    services.settings = replace(services.settings, custody="sealed", panic_seal=panic_seal)  # type: ignore[arg-type]


def unsealed(redis: Redis) -> Keyring:
    keyring = Keyring.generate()
    key_custody.mark_unsealed(redis, keyring)
    return keyring


def audited(services: Services) -> list[str]:
    with services.database.session() as session:
        return list(
            session.scalars(select(AuditEvent.action).where(AuditEvent.action.like("keys.%")))
        )


def seal_once(client: FlaskClient) -> int:
    return int(post_form(client, "/keys/seal", {}).status_code)


def test_a_coordinator_seals_at_once(app: Flask, services: Services, redis_client: Redis) -> None:
    sealing(services)
    unsealed(redis_client)
    coordinator = signed_in(app, services, StaffRole.COORDINATOR)
    board = coordinator.get("/board").get_data(as_text=True)
    assert 'href="/keys/seal"' in board
    page = coordinator.get("/keys/seal").get_data(as_text=True)
    assert "Seal now" in page and "cannot unseal" in page
    answer = post_form(coordinator, "/keys/seal", {}, page)
    assert answer.status_code == 303
    assert redis_client.get(key_custody.UNSEALED) is None
    assert key_custody.current_epoch(redis_client) == 1
    assert audited(services) == ["keys.sealed"]


def test_a_dispatcher_cannot_alone(app: Flask, services: Services, redis_client: Redis) -> None:
    sealing(services)
    unsealed(redis_client)
    dispatcher = signed_in(app, services, StaffRole.DISPATCHER)
    assert "Only a coordinator" in dispatcher.get("/keys/seal").get_data(as_text=True)
    assert seal_once(dispatcher) == 409
    assert redis_client.get(key_custody.UNSEALED) is not None
    assert audited(services) == []


def test_two_staff_seal_together_and_one_twice_is_still_one(
    app: Flask, services: Services, redis_client: Redis
) -> None:
    sealing(services, "two-staff")
    unsealed(redis_client)
    first = signed_in(app, services, StaffRole.DISPATCHER)
    second = signed_in(app, services, StaffRole.DISPATCHER, "second@example.org")
    assert "Ask to seal" in first.get("/keys/seal").get_data(as_text=True)
    assert seal_once(first) == 303
    assert seal_once(first) == 303  # the same person again: still waiting for a second
    assert redis_client.get(key_custody.UNSEALED) is not None
    assert "You asked to seal" in first.get("/keys/seal").get_data(as_text=True)
    assert "Confirm: seal now" in second.get("/keys/seal").get_data(as_text=True)
    assert seal_once(second) == 303
    assert redis_client.get(key_custody.UNSEALED) is None
    assert audited(services) == ["keys.seal_asked", "keys.seal_asked", "keys.sealed"]


def test_without_a_sealed_keyring_there_is_nothing_to_seal(
    app: Flask, services: Services, redis_client: Redis
) -> None:
    assert services.settings.custody == "environment"
    coordinator = signed_in(app, services, StaffRole.COORDINATOR)
    assert 'href="/keys/seal"' not in coordinator.get("/board").get_data(as_text=True)
    assert seal_once(coordinator) == 409
    assert key_custody.current_epoch(redis_client) == 0


@pytest.mark.parametrize("panic_seal", ["coordinator", "two-staff"])
def test_the_page_in_spanish(
    app: Flask, services: Services, redis_client: Redis, panic_seal: str
) -> None:
    sealing(services, panic_seal)
    dispatcher = signed_in(app, services, StaffRole.DISPATCHER)
    page = dispatcher.get("/keys/seal?lang=es").get_data(as_text=True)
    assert "Sellar" in page
    for english in ("Seal the keys", "Only a coordinator", "Ask to seal", "cannot unseal"):
        assert english not in page


def test_the_seal_goes_through_with_the_database_down(
    app: Flask, services: Services, redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    sealing(services)
    unsealed(redis_client)
    coordinator = signed_in(app, services, StaffRole.COORDINATOR)
    page = coordinator.get("/keys/seal").get_data(as_text=True)

    def down(*args: object, **kwargs: object) -> None:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr("rapidresponse.audit.record", down)
    assert post_form(coordinator, "/keys/seal", {}, page).status_code == 303
    assert redis_client.get(key_custody.UNSEALED) is None
