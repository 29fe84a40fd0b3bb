"""send_delivery's ledger rules: leases with tokens, statuses, and no silent failures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from dispatch import jobs
from dispatch.services import Services
from rapidresponse.models import Alert, Delivery, DeliveryStatus, Language, SubscriberStatus, utcnow
from tests.factories import ALICE, add_alert_for, add_subscriber


def status_of(services: Services, delivery_id: str) -> Delivery:
    with services.database.session() as session:
        return session.get_one(Delivery, delivery_id)


def expire_lease(services: Services, delivery_id: str) -> None:
    with services.database.session() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def test_a_worker_that_lost_its_lease_cannot_overwrite_the_new_holder(services: Services) -> None:
    ledger = add_alert_for(services, add_subscriber(services, ALICE), Language.EN)
    first = jobs.claim_delivery(services, ledger.delivery_id)
    assert first is not None
    expire_lease(services, ledger.delivery_id)
    second = jobs.claim_delivery(services, ledger.delivery_id)
    assert second is not None and second.token != first.token

    assert jobs._finish(services, first, DeliveryStatus.SENT, provider_sid="SM1") == "lease_lost"
    jobs._release(services, first)
    row = status_of(services, ledger.delivery_id)
    assert (row.status, row.lease_token) == (DeliveryStatus.CLAIMED, second.token)

    assert jobs._finish(services, second, DeliveryStatus.SENT, provider_sid="SM2") == "sent"
    row = status_of(services, ledger.delivery_id)
    assert (row.status, row.provider_sid, row.lease_token) == (DeliveryStatus.SENT, "SM2", None)


def test_a_live_lease_cannot_be_claimed_again(services: Services) -> None:
    ledger = add_alert_for(services, add_subscriber(services, ALICE), Language.EN)
    assert jobs.claim_delivery(services, ledger.delivery_id) is not None
    assert jobs.claim_delivery(services, ledger.delivery_id) is None


def test_an_undeliverable_number_is_recorded_as_undeliverable(services: Services) -> None:
    subscriber_id = add_subscriber(services, ALICE, status=SubscriberStatus.UNDELIVERABLE)
    ledger = add_alert_for(services, subscriber_id, Language.EN)
    assert jobs.send_delivery(ledger.delivery_id) == "undeliverable"


def test_a_simulated_delivery_is_sent_and_recorded(services: Services) -> None:
    ledger = add_alert_for(services, add_subscriber(services, ALICE), Language.EN)
    assert jobs.send_delivery(ledger.delivery_id) == "sent"
    row = status_of(services, ledger.delivery_id)
    assert row.provider_sid is not None and row.provider_sid.startswith("SM")
    assert jobs.send_delivery(ledger.delivery_id) == "skipped"  # never twice


def test_an_unexpected_error_frees_the_row_and_is_not_swallowed(services: Services) -> None:
    ledger = add_alert_for(services, add_subscriber(services, ALICE), Language.ES)
    with services.database.session() as session:
        session.get_one(Alert, ledger.alert_id).texts = {}  # a broken alert: no text at all
    with pytest.raises(KeyError):
        jobs.send_delivery(ledger.delivery_id)
    row = status_of(services, ledger.delivery_id)
    assert (row.status, row.lease_token) == (DeliveryStatus.PENDING, None)
