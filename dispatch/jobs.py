"""Job functions that RQ workers run. Each takes ids only and reads the rest from the database.

A delivery is claimed with a conditional UPDATE and a row-count check before anything is
sent, so two workers (or a retried job and the reaper) can never both send it. The claim
carries a random lease token: only the worker holding it may finish or release the row,
so a worker whose lease ran out cannot overwrite the outcome of the one that took over.
"""

from __future__ import annotations

import logging
import uuid
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

# What a subscriber's status means for a delivery that has not gone out yet.
NOT_SENDABLE = {
    SubscriberStatus.OPTED_OUT: DeliveryStatus.OPTED_OUT,
    SubscriberStatus.UNDELIVERABLE: DeliveryStatus.UNDELIVERABLE,
}


@dataclass(frozen=True)
class Lease:
    delivery_id: str
    token: str


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
    lease = claim_delivery(services, delivery_id)
    if lease is None:
        return "skipped"  # already sent, or another worker holds it
    try:
        with services.database.session() as session:
            outgoing = _outgoing(services, session, delivery_id)
    except Exception:
        _release(services, lease)  # a bug or a bad row: free it, and let RQ show the error
        raise
    if isinstance(outgoing, DeliveryStatus):
        return _finish(services, lease, outgoing)
    try:
        sid = services.sender.send(
            outgoing.to,
            outgoing.body,
            callback_id=delivery_id,
            validity_period=outgoing.validity_period,
        )
    except SendError as error:
        return _record_failure(services, lease, error)
    return _finish(services, lease, DeliveryStatus.SENT, provider_sid=sid)


def claim_delivery(services: Services, delivery_id: str) -> Lease | None:
    """Take the lease on a pending (or lease-expired) delivery, or None if we did not."""
    now, token = utcnow(), uuid.uuid4().hex
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
                lease_token=token,
                attempts=Delivery.attempts + 1,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        got_it = result.rowcount == 1  # type: ignore[attr-defined]
    return Lease(delivery_id, token) if got_it else None


def _outgoing(services: Services, session: Session, delivery_id: str) -> Outgoing | DeliveryStatus:
    delivery = session.get_one(Delivery, delivery_id)
    subscriber = session.get_one(Subscriber, delivery.subscriber_id)
    if subscriber.status in NOT_SENDABLE:
        return NOT_SENDABLE[subscriber.status]  # changed since the ledger was written
    alert = session.get_one(Alert, delivery.alert_id)
    body = alert.texts.get(delivery.language.value) or alert.texts["en"]
    validity = ALERT_VALIDITY_SECONDS if alert.kind == AlertKind.ALERT else None
    to = services.cipher.decrypt(subscriber.phone_sealed, Purpose.SUBSCRIBER_PHONE)
    return Outgoing(to=to, body=str(body), validity_period=validity)


def _finish(
    services: Services,
    lease: Lease,
    status: DeliveryStatus,
    provider_sid: str | None = None,
    error_code: int | None = None,
) -> str:
    now = utcnow()
    with services.database.session() as session:
        result = session.execute(
            update(Delivery)
            .where(Delivery.id == lease.delivery_id, Delivery.lease_token == lease.token)
            .values(
                status=status,
                provider_sid=provider_sid,
                lease_expires_at=None,
                lease_token=None,
                updated_at=now,
                error_code=None if error_code is None else str(error_code),
                sent_at=now if status == DeliveryStatus.SENT else None,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            # Our lease ran out and another worker took the row over: its outcome stands.
            log.warning(
                "delivery %s: lease lost before recording %s", lease.delivery_id, status.value
            )
            return "lease_lost"
    return status.value


def _record_failure(services: Services, lease: Lease, error: SendError) -> str:
    if not error.permanent:
        _release(services, lease)
        log.warning("delivery %s: transient send failure: %s", lease.delivery_id, error)
        raise error
    status = _permanent_status(error.code)
    if status is not DeliveryStatus.FAILED:
        _mark_subscriber(services, lease.delivery_id, status)
    log.info("delivery %s: permanent failure (error %s)", lease.delivery_id, error.code)
    return _finish(services, lease, status, error_code=error.code)


def _permanent_status(code: int | None) -> DeliveryStatus:
    if code in OPTED_OUT_CODES:
        return DeliveryStatus.OPTED_OUT
    if code in BAD_NUMBER_CODES:
        return DeliveryStatus.UNDELIVERABLE
    return DeliveryStatus.FAILED


def _mark_subscriber(services: Services, delivery_id: str, status: DeliveryStatus) -> None:
    opted_out = status is DeliveryStatus.OPTED_OUT
    with services.database.session() as session:
        subscriber_id = session.scalar(
            select(Delivery.subscriber_id).where(Delivery.id == delivery_id)
        )
        subscriber = session.get_one(Subscriber, subscriber_id)
        subscriber.status = (
            SubscriberStatus.OPTED_OUT if opted_out else SubscriberStatus.UNDELIVERABLE
        )
        if opted_out:
            subscriber.opted_out_at = utcnow()
            # The carrier already told them; we send no confirmation of our own.
            subscriber.opt_out_confirmed_at = subscriber.opted_out_at


def _release(services: Services, lease: Lease) -> None:
    with services.database.session() as session:
        session.execute(
            update(Delivery)
            .where(
                Delivery.id == lease.delivery_id,
                Delivery.lease_token == lease.token,
                Delivery.status == DeliveryStatus.CLAIMED,
            )
            .values(
                status=DeliveryStatus.PENDING,
                lease_expires_at=None,
                lease_token=None,
                updated_at=utcnow(),
            )
            .execution_options(synchronize_session=False)
        )
