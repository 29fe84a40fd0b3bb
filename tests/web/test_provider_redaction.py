"""PROVIDER_REDACTION: messages are deleted at Twilio once stored or final.

The local Twilio records every DELETE; the test sees one per inbound message and one
per outbound message (replies by TwiML and by the API, pages, alert deliveries), and a
500 from the fake retried by the next housekeeping run.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from xml.etree import ElementTree

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from dispatch.redaction import forget_provider_ids_job, redact_due_job
from dispatch.senders import make_sender
from dispatch.services import Services
from rapidresponse import redaction
from rapidresponse.models import (
    Delivery,
    DeliveryStatus,
    Language,
    ProviderRedaction,
    utcnow,
)
from rapidresponse.subscribers import ReplyKind
from tests.factories import add_alert_for, add_subscriber
from tests.twilio_fake import FakeTwilio
from tests.web.sms_helpers import ALICE, PUBLIC_URL, new_sid, send, sign

pytestmark = pytest.mark.sends_through_api
SIGHTING = "ICE van and agents at NE 42nd and Killingsworth, Cully"


@pytest.fixture
def redacting(twilio_services: Services) -> Services:
    twilio_services.settings = replace(twilio_services.settings, provider_redaction=True)
    twilio_services.sender = make_sender(
        twilio_services.settings,
        twilio_services.database,
        twilio_services.cipher,
        twilio_services.index,
    )
    return twilio_services


@pytest.fixture
def app(redacting: Services) -> Flask:
    from web import create_app

    return create_app(services=redacting, test_config={"TESTING": True})


def waiting(services: Services) -> dict[str, ProviderRedaction]:
    with services.database.session() as session:
        rows = session.scalars(select(ProviderRedaction)).all()
        session.expunge_all()
        return {redaction.sid_of(row, services.cipher) or "": row for row in rows}


def make_due(services: Services) -> None:
    with services.database.session() as session:
        session.execute(update(ProviderRedaction).values(due_at=utcnow() - timedelta(seconds=1)))


def reply_action(client: FlaskClient, body: str, sid: str) -> str | None:
    response = send(client, {"From": ALICE, "Body": body, "MessageSid": sid})
    assert response.status_code == 200
    [message] = ElementTree.fromstring(response.get_data(as_text=True)).iter("Message")  # noqa: S314
    return message.get("action")


def test_an_inbound_report_is_deleted_at_twilio_once_stored(
    redacting: Services, app: Flask, fake: FakeTwilio
) -> None:
    sid = new_sid()
    reply_action(app.test_client(), SIGHTING, sid)
    assert set(waiting(redacting)) == {sid}
    assert redact_due_job() == {"deleted": 0, "failed": 0}  # Twilio asks for a minute first
    make_due(redacting)
    assert redact_due_job() == {"deleted": 1, "failed": 0}
    assert fake.deleted == [sid]
    assert waiting(redacting) == {}  # the id is gone from here too


def test_a_twilml_reply_reports_its_id_and_is_deleted_after_it_settles(
    redacting: Services, app: Flask, fake: FakeTwilio
) -> None:
    client = app.test_client()
    action = reply_action(client, "HELP", new_sid())
    assert action == f"{PUBLIC_URL}/sms/status?redact=1"
    reply_sid = new_sid()
    params = {"MessageSid": reply_sid, "MessageStatus": "sent"}
    response = client.post(
        "/sms/status?redact=1", data=params, headers={"X-Twilio-Signature": sign(params, action)}
    )
    assert response.status_code == 200
    due = waiting(redacting)[reply_sid].due_at
    assert due > utcnow() + timedelta(minutes=9)  # not while it may still change
    redact_due_job()
    assert reply_sid not in fake.deleted
    make_due(redacting)
    redact_due_job()
    assert reply_sid in fake.deleted


def test_an_unsigned_redaction_callback_schedules_nothing(redacting: Services, app: Flask) -> None:
    params = {"MessageSid": new_sid(), "MessageStatus": "sent"}
    response = app.test_client().post("/sms/status?redact=1", data=params)
    assert response.status_code == 403
    assert waiting(redacting) == {}


def test_a_reply_sent_through_the_api_is_deleted_after_it_settles(
    redacting: Services, fake: FakeTwilio
) -> None:
    sid = redacting.sender.send_reply(ALICE, "Reply YES", ReplyKind.NORMAL)
    assert set(waiting(redacting)) == {sid}
    make_due(redacting)
    redact_due_job()
    assert fake.deleted == [sid]


def test_a_failed_deletion_is_retried_with_backoff_and_counted(
    redacting: Services, app: Flask, fake: FakeTwilio
) -> None:
    sid = new_sid()
    reply_action(app.test_client(), SIGHTING, sid)
    make_due(redacting)
    fake.fail_next(500)
    assert redact_due_job() == {"deleted": 0, "failed": 1}
    row = waiting(redacting)[sid]
    assert row.attempts == 1 and row.last_error == "error 20500"
    assert row.due_at > utcnow()
    health = app.test_client().get("/healthz").json
    assert health is not None and health["provider_redaction"] == {"waiting": 1, "failing": 0}
    make_due(redacting)
    assert redact_due_job() == {"deleted": 1, "failed": 0}
    assert fake.deleted == [sid]
    assert app.test_client().get("/healthz").json["provider_redaction"]["waiting"] == 0  # type: ignore[index]


def test_a_message_twilio_no_longer_has_counts_as_deleted(
    redacting: Services, app: Flask, fake: FakeTwilio
) -> None:
    sid = new_sid()
    reply_action(app.test_client(), SIGHTING, sid)
    make_due(redacting)
    fake.fail_next(404, 20404)
    assert redact_due_job() == {"deleted": 1, "failed": 0}
    assert waiting(redacting) == {}


def test_a_delivery_forgets_its_provider_id_once_its_callbacks_are_done(
    redacting: Services, app: Flask, fake: FakeTwilio
) -> None:
    ledger = add_alert_for(redacting, add_subscriber(redacting, ALICE), Language.EN)
    sid = new_sid()
    long_ago = utcnow() - timedelta(minutes=redacting.settings.alert_validity_minutes + 11)
    with redacting.database.session() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == ledger.delivery_id)
            .values(
                status=DeliveryStatus.SENT, provider_sid=sid, sent_at=long_ago, updated_at=long_ago
            )
        )
    assert forget_provider_ids_job() == 1
    with redacting.database.session() as session:
        delivery = session.get_one(Delivery, ledger.delivery_id)
        assert delivery.provider_sid is None and delivery.provider_forgotten_at is not None
        assert delivery.sent_at is not None and delivery.sent_at.second == 0
    redact_due_job()
    assert fake.deleted == [sid]
    # A late callback finds nothing to change, and puts no id back.
    params = {"MessageSid": sid, "MessageStatus": "delivered"}
    url = f"{PUBLIC_URL}/sms/status?delivery={ledger.delivery_id}"
    response = app.test_client().post(
        f"/sms/status?delivery={ledger.delivery_id}",
        data=params,
        headers={"X-Twilio-Signature": sign(params, url)},
    )
    assert response.status_code == 200
    with redacting.database.session() as session:
        delivery = session.get_one(Delivery, ledger.delivery_id)
        assert delivery.provider_sid is None and delivery.status is DeliveryStatus.SENT


def test_a_recent_delivery_keeps_its_id_for_its_callbacks(redacting: Services) -> None:
    ledger = add_alert_for(redacting, add_subscriber(redacting, ALICE), Language.EN)
    with redacting.database.session() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == ledger.delivery_id)
            .values(status=DeliveryStatus.SENT, provider_sid=new_sid(), updated_at=utcnow())
        )
    assert forget_provider_ids_job() == 0


def test_without_provider_redaction_nothing_is_scheduled(
    twilio_services: Services, sms_app: Flask, fake: FakeTwilio
) -> None:
    assert twilio_services.settings.provider_redaction is False  # development's default
    assert reply_action(sms_app.test_client(), SIGHTING, new_sid()) is None
    assert waiting(twilio_services) == {}
    assert redact_due_job() == {"deleted": 0, "failed": 0}
    assert "provider_redaction" not in (sms_app.test_client().get("/healthz").json or {})
    assert fake.requests == []


def test_production_redacts_by_default(twilio_services: Services) -> None:
    from rapidresponse.config import Settings

    environ = {
        "RR_ENV": "production",
        "INSTANCE_PATH": str(twilio_services.settings.instance_path),
        "SECRET_KEY": "s" * 40,
        "DATA_KEYS": "A" * 43 + "=",
        "INDEX_KEY": "B" * 43 + "=",
        "PUBLIC_URL": "https://rr.example.org",
        "SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": twilio_services.settings.twilio_account_sid or "",
        "TWILIO_AUTH_TOKEN": "t",
        "TWILIO_FROM": "+15035550100",
    }
    assert Settings.from_env(environ).provider_redaction is True
    assert Settings.from_env({**environ, "PROVIDER_REDACTION": "off"}).provider_redaction is False


# --- the ids are never stored readable ----------------------------------------------------


def raw_rows(services: Services) -> bytes:
    """Every byte of every redaction row, as a copy of the database would show them."""
    with services.database.session() as session:
        rows = session.execute(select(ProviderRedaction.__table__)).all()
    return b"\n".join(
        str(value).encode() if not isinstance(value, bytes) else value
        for row in rows
        for value in row
    )


def test_a_waiting_id_is_sealed_under_its_hours_key_and_readable_only_with_it(
    redacting: Services, app: Flask
) -> None:
    sid = new_sid()
    reply_action(app.test_client(), SIGHTING, sid)
    [row] = waiting(redacting).values()
    assert row.sid is None and row.key_name == redaction.redaction_key(utcnow())
    assert sid.encode() not in raw_rows(redacting)
    assert row.key_name is not None and redacting.cipher.shred_keys.destroy(row.key_name)
    assert redaction.sid_of(row, redacting.cipher) is None  # the key was the only way


def test_asked_twice_in_an_hour_an_id_is_deleted_once(redacting: Services) -> None:
    sid = new_sid()
    with redacting.database.session() as session:
        redaction.schedule(session, redacting.cipher, sid, utcnow())
    with redacting.database.session() as session:
        redaction.schedule(session, redacting.cipher, sid, utcnow())
    assert list(waiting(redacting)) == [sid]


def test_an_hours_key_is_destroyed_once_its_deletions_are_done_and_the_next_hour_is_over(
    redacting: Services, fake: FakeTwilio
) -> None:
    keys = redacting.cipher.shred_keys
    now = utcnow()
    hours = [now - timedelta(hours=n) for n in (3, 2, 1, 0)]
    sids = [new_sid() for _ in hours]
    with redacting.database.session() as session:
        for moment, sid in zip(hours, sids, strict=True):
            redaction.schedule(session, redacting.cipher, sid, moment, now=moment)  # oldest first
    names = [redaction.redaction_key(moment) for moment in hours]
    fake.fail_next(500)  # the oldest hour's deletion fails: its key must stay
    assert redact_due_job() == {"deleted": 3, "failed": 1}
    kept = set(keys.names())
    assert names[0] in kept  # a deletion still to do
    assert names[1] not in kept  # done, and its next hour is over: destroyed
    assert {names[2], names[3]} <= kept  # the hour before this one, and this one
    make_due(redacting)
    assert redact_due_job() == {"deleted": 1, "failed": 0}
    assert names[0] not in keys.names()
    assert sorted(fake.deleted) == sorted(sids)


def test_a_row_whose_key_is_gone_is_dropped_without_asking_twilio(
    redacting: Services, fake: FakeTwilio
) -> None:
    with redacting.database.session() as session:
        redaction.schedule(session, redacting.cipher, new_sid(), utcnow())
    redacting.cipher.shred_keys.destroy(redaction.redaction_key(utcnow()))
    assert redact_due_job() == {"deleted": 1, "failed": 0}
    assert waiting(redacting) == {} and fake.deleted == []


def test_a_row_scheduled_before_ids_were_sealed_is_still_deleted(
    redacting: Services, fake: FakeTwilio
) -> None:
    sid = new_sid()
    with redacting.database.session() as session:
        session.add(ProviderRedaction(sid=sid, due_at=utcnow()))
    assert redact_due_job() == {"deleted": 1, "failed": 0}
    assert fake.deleted == [sid]


def test_healthz_counts_a_deletion_failing_after_three_tries(
    redacting: Services, app: Flask, fake: FakeTwilio
) -> None:
    reply_action(app.test_client(), SIGHTING, new_sid())
    for _ in range(redaction.FAILING_AFTER):
        make_due(redacting)
        fake.fail_next(500)
        assert redact_due_job() == {"deleted": 0, "failed": 1}
    health = app.test_client().get("/healthz").json
    assert health is not None and health["provider_redaction"] == {"waiting": 1, "failing": 1}
