"""POST /sms/status: signed, idempotent, forward-only, and never a 500."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update

from dispatch import status_queue
from dispatch.broadcast import send_batch
from dispatch.services import Services
from rapidresponse.models import Delivery, DeliveryStatus, Language, Subscriber, SubscriberStatus
from tests.factories import ALICE, Ledger, add_alert_for, add_subscriber
from tests.web.sms_helpers import PUBLIC_URL, new_sid, sign


@dataclass
class Callbacks:
    """Twilio posting status callbacks, and then a worker applying what the web queued."""

    client: FlaskClient
    services: Services

    def post(
        self,
        delivery_id: int | str,
        sid: str,
        status: str,
        *,
        error_code: str | None = None,
        signature: str | None = None,
    ) -> int:
        params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status}
        if error_code is not None:
            params["ErrorCode"] = error_code
        url = f"{PUBLIC_URL}/sms/status?delivery={delivery_id}"
        headers = {"X-Twilio-Signature": sign(params, url) if signature is None else signature}
        response = self.client.post(
            f"/sms/status?delivery={delivery_id}", data=params, headers=headers
        )
        status_queue.drain(self.services)
        return response.status_code


@pytest.fixture
def callbacks(sms_app: Flask, twilio_services: Services) -> Callbacks:
    return Callbacks(sms_app.test_client(), twilio_services)


@pytest.fixture
def ledger(twilio_services: Services) -> Ledger:
    return add_alert_for(twilio_services, add_subscriber(twilio_services, ALICE), Language.EN)


def row(services: Services, delivery_id: int) -> Delivery:
    with services.database.session() as session:
        return session.get_one(Delivery, delivery_id)


def mark(services: Services, delivery_id: int, **values: object) -> None:
    with services.database.session() as session:
        session.execute(update(Delivery).where(Delivery.id == delivery_id).values(**values))


def test_delivered_is_recorded_once_and_replays_change_nothing(
    twilio_services: Services, callbacks: Callbacks, ledger: Ledger
) -> None:
    sid = new_sid()
    mark(twilio_services, ledger.delivery_id, status=DeliveryStatus.SENT, provider_sid=sid)
    assert callbacks.post(ledger.delivery_id, sid, "delivered") == 200
    first = row(twilio_services, ledger.delivery_id)
    assert first.status == DeliveryStatus.DELIVERED
    assert callbacks.post(ledger.delivery_id, sid, "delivered") == 200  # the same (sid, status)
    assert callbacks.post(ledger.delivery_id, sid, "sent") == 200  # late, out of order
    again = row(twilio_services, ledger.delivery_id)
    assert (again.status, again.updated_at) == (DeliveryStatus.DELIVERED, first.updated_at)


def test_a_send_whose_answer_was_lost_is_marked_sent_and_never_resent(
    twilio_services: Services, callbacks: Callbacks, ledger: Ledger
) -> None:
    # The worker claimed the row and sent it, then died before hearing the answer.
    mark(twilio_services, ledger.delivery_id, status=DeliveryStatus.CLAIMED, lease_token="f" * 32)
    sid = new_sid()
    assert callbacks.post(ledger.delivery_id, sid, "sent") == 200
    done = row(twilio_services, ledger.delivery_id)
    assert (done.status, done.provider_sid, done.lease_token) == (DeliveryStatus.SENT, sid, None)
    assert send_batch(ledger.alert_id, 0)["sent"] == 0  # nothing left to claim


def test_undelivered_to_a_dead_number_marks_the_subscriber(
    twilio_services: Services, callbacks: Callbacks, ledger: Ledger
) -> None:
    sid = new_sid()
    mark(twilio_services, ledger.delivery_id, status=DeliveryStatus.SENT, provider_sid=sid)
    assert callbacks.post(ledger.delivery_id, sid, "undelivered", error_code="30006") == 200
    assert row(twilio_services, ledger.delivery_id).status == DeliveryStatus.UNDELIVERABLE
    with twilio_services.database.session() as session:
        subscriber = session.get_one(Subscriber, ledger.subscriber_id)
        assert subscriber.status == SubscriberStatus.UNDELIVERABLE


def test_a_callback_for_another_send_of_the_row_is_ignored(
    twilio_services: Services, callbacks: Callbacks, ledger: Ledger
) -> None:
    mark(twilio_services, ledger.delivery_id, status=DeliveryStatus.SENT, provider_sid=new_sid())
    assert callbacks.post(ledger.delivery_id, new_sid(), "failed", error_code="30003") == 200
    assert row(twilio_services, ledger.delivery_id).status == DeliveryStatus.SENT


@pytest.mark.parametrize(
    "delivery_id",
    [
        *("0" * 32, "not-an-id", "", "1" * 5000, "%00", "A" * 32),
        # Integer keys: none we made, none past the database's integers, none signed.
        *("0", "-1", "+1", "01", "1.5", " 1", "9" * 19, "987654321987654321"),
    ],
)
def test_unknown_or_malformed_deliveries_answer_200(
    twilio_services: Services, callbacks: Callbacks, delivery_id: str
) -> None:
    assert callbacks.post(delivery_id, new_sid(), "delivered") == 200


def test_an_unknown_status_answers_200_and_changes_nothing(
    twilio_services: Services, callbacks: Callbacks, ledger: Ledger
) -> None:
    assert callbacks.post(ledger.delivery_id, new_sid(), "teleported") == 200
    assert row(twilio_services, ledger.delivery_id).status == DeliveryStatus.PENDING


def test_a_bad_signature_is_refused(
    twilio_services: Services, callbacks: Callbacks, ledger: Ledger
) -> None:
    assert callbacks.post(ledger.delivery_id, new_sid(), "sent", signature="forged") == 403
    assert callbacks.post(ledger.delivery_id, new_sid(), "sent", signature="") == 403
    assert row(twilio_services, ledger.delivery_id).status == DeliveryStatus.PENDING


def test_a_callback_without_its_fields_is_a_400(
    twilio_services: Services, sms_app: Flask, ledger: Ledger
) -> None:
    url = f"{PUBLIC_URL}/sms/status?delivery={ledger.delivery_id}"
    for params in (
        {"MessageStatus": "sent"},
        {"MessageSid": new_sid()},
        {"MessageSid": "x", "MessageStatus": "sent"},
    ):
        response = sms_app.test_client().post(
            f"/sms/status?delivery={ledger.delivery_id}",
            data=params,
            headers={"X-Twilio-Signature": sign(params, url)},
        )
        assert response.status_code == 400
