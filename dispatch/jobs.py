"""Job functions that RQ workers run. Each takes ids only and reads the rest from the database.

A delivery is claimed with a conditional UPDATE and a row-count check before anything is
sent, so two workers (or a retried job and the reaper) can never both send it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatch.senders import BAD_NUMBER_CODES, OPTED_OUT_CODES, SendError
from dispatch.services import Services, current
from rapidresponse.crypto import Purpose
from rapidresponse.models import (
    Alert,
    AlertKind,
    Delivery,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    utcnow,
)

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=120)
# A stale alert is worse than none: the carrier drops it after this instead of
# delivering it hours late.
ALERT_VALIDITY_SECONDS = 30 * 60


@dataclass(frozen=True)
class Outgoing:
    to: str
    body: str
    validity_period: int | None


def send_delivery(delivery_id: str) -> str:
    """Send one pending delivery; return what became of it (its new status).

    Raises:
        SendError: a transient provider failure; the lease is released and RQ retries.
    """
    services = current()
    if not claim_delivery(services, delivery_id):
        return "skipped"  # already sent, or another worker holds it
    with services.database.session() as session:
        outgoing = _outgoing(services, session, delivery_id)
    if outgoing is None:
        return _finish(services, delivery_id, DeliveryStatus.OPTED_OUT)
    try:
        sid = services.sender.send(
            outgoing.to,
            outgoing.body,
            callback_id=delivery_id,
            validity_period=outgoing.validity_period,
        )
    except SendError as error:
        return _record_failure(services, delivery_id, error)
    return _finish(services, delivery_id, DeliveryStatus.SENT, provider_sid=sid)


def claim_delivery(services: Services, delivery_id: str) -> bool:
    """Take the lease on a pending (or lease-expired) delivery. True if we got it."""
    now = utcnow()
    claimable = (Delivery.status == DeliveryStatus.PENDING) | (
        (Delivery.status == DeliveryStatus.CLAIMED) & (Delivery.lease_expires_at < now)
    )
    with services.database.session() as session:
        result = session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, claimable)
            .values(
                status=DeliveryStatus.CLAIMED,
                lease_expires_at=now + LEASE,
                attempts=Delivery.attempts + 1,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def _outgoing(services: Services, session: Session, delivery_id: str) -> Outgoing | None:
    delivery = session.get_one(Delivery, delivery_id)
    subscriber = session.get_one(Subscriber, delivery.subscriber_id)
    if subscriber.status != SubscriberStatus.ACTIVE:
        return None  # opted out since the ledger was written: never text them
    alert = session.get_one(Alert, delivery.alert_id)
    body = alert.texts.get(delivery.language.value) or alert.texts["en"]
    validity = ALERT_VALIDITY_SECONDS if alert.kind == AlertKind.ALERT else None
    to = services.cipher.decrypt(subscriber.phone_sealed, Purpose.SUBSCRIBER_PHONE)
    return Outgoing(to=to, body=str(body), validity_period=validity)


def _finish(
    services: Services,
    delivery_id: str,
    status: DeliveryStatus,
    provider_sid: str | None = None,
    error_code: int | None = None,
) -> str:
    now = utcnow()
    with services.database.session() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(
                status=status,
                provider_sid=provider_sid,
                lease_expires_at=None,
                error_code=None if error_code is None else str(error_code),
                sent_at=now if status == DeliveryStatus.SENT else None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
    return status.value


def _record_failure(services: Services, delivery_id: str, error: SendError) -> str:
    if not error.permanent:
        _release(services, delivery_id)
        log.warning("delivery %s: transient send failure: %s", delivery_id, error)
        raise error
    status = _permanent_status(error.code)
    if status is not DeliveryStatus.FAILED:
        _mark_subscriber(services, delivery_id, status)
    log.info("delivery %s: permanent failure (error %s)", delivery_id, error.code)
    return _finish(services, delivery_id, status, error_code=error.code)


def _permanent_status(code: int | None) -> DeliveryStatus:
    if code in OPTED_OUT_CODES:
        return DeliveryStatus.OPTED_OUT
    if code in BAD_NUMBER_CODES:
        return DeliveryStatus.UNDELIVERABLE
    return DeliveryStatus.FAILED


def _mark_subscriber(services: Services, delivery_id: str, status: DeliveryStatus) -> None:
    new_status = (
        SubscriberStatus.OPTED_OUT
        if status is DeliveryStatus.OPTED_OUT
        else SubscriberStatus.UNDELIVERABLE
    )
    with services.database.session() as session:
        subscriber_id = session.scalar(
            select(Delivery.subscriber_id).where(Delivery.id == delivery_id)
        )
        subscriber = session.get_one(Subscriber, subscriber_id)
        subscriber.status = new_status
        if new_status is SubscriberStatus.OPTED_OUT:
            subscriber.opted_out_at = utcnow()


def _release(services: Services, delivery_id: str) -> None:
    with services.database.session() as session:
        session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status == DeliveryStatus.CLAIMED)
            .values(status=DeliveryStatus.PENDING, lease_expires_at=None, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
