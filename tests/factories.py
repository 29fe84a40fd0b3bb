"""Named test personas and rows, built the way production code builds them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import insert

from dispatch.services import Services
from rapidresponse.crypto import Purpose
from rapidresponse.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Delivery,
    Language,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    utcnow,
)

ALICE = "+15035550142"  # 555-01xx numbers are reserved for fiction
BETO = "+19715550177"


@dataclass(frozen=True)
class Ledger:
    alert_id: int
    subscriber_id: int
    delivery_id: int


def add_subscriber(
    services: Services,
    phone: str,
    language: Language = Language.EN,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
) -> int:
    with services.database.session() as session:
        subscriber = Subscriber(
            phone_sealed=services.cipher.encrypt(phone, Purpose.SUBSCRIBER_PHONE),
            phone_index=services.index.digest(phone, "phone"),
            language=language,
            status=status,
        )
        session.add(subscriber)
        session.flush()
        return subscriber.id


ALERT_TEXTS = {
    "en": "ALERT Cully: immigration agents confirmed near NE 42nd & Killingsworth, 9:40am. "
    "You have the right to remain silent. Reply RIGHTS for more.",
    "es": "ALERTA Cully: agentes de inmigracion confirmados cerca de NE 42nd y Killingsworth, "
    "9:40am. Tiene derecho a guardar silencio. Responda DERECHOS.",
}


def add_alert_for(services: Services, subscriber_id: int, language: Language) -> Ledger:
    with services.database.session() as session:
        now = utcnow()
        alert = Alert(
            kind=AlertKind.ALERT,
            status=AlertStatus.APPROVED,
            texts=ALERT_TEXTS,
            approved_at=now,
            expires_at=now + timedelta(minutes=30),
            recipient_count=1,
        )
        session.add(alert)
        session.flush()
        delivery = Delivery(alert_id=alert.id, subscriber_id=subscriber_id, language=language)
        session.add(delivery)
        session.flush()
        return Ledger(alert_id=alert.id, subscriber_id=subscriber_id, delivery_id=delivery.id)


def add_on_shift_responder(services: Services, name: str, phone: str, area_slug: str) -> None:
    """A responder covering one area of the (already imported) demo region, on shift."""
    from rapidresponse.areas import find_area
    from rapidresponse.people import add_responder

    with services.database.session() as session:
        area = find_area(session, area_slug)
        assert area is not None, area_slug
        responder = add_responder(
            session,
            services.cipher,
            services.index,
            name=name,
            phone_e164=phone,
            areas=[area],
            language=Language.EN,
        )
        responder.on_shift = True


def add_many_subscribers(
    services: Services, area_id: int, count: int, first: int = 1_000_000
) -> list[int]:
    """``count`` active subscribers confirmed in one area, written in bulk."""
    numbers = [f"+1503{first + n:07d}" for n in range(count)]
    with services.database.session() as session:
        ids = session.scalars(
            insert(Subscriber).returning(Subscriber.id),
            [
                {
                    "phone_sealed": services.cipher.encrypt(number, Purpose.SUBSCRIBER_PHONE),
                    "phone_index": services.index.digest(number, "phone"),
                    "language": Language.ES if n % 3 == 0 else Language.EN,
                }
                for n, number in enumerate(numbers)
            ],
        ).all()
        session.execute(
            insert(Subscription),
            [
                {"subscriber_id": i, "area_id": area_id, "status": SubscriptionStatus.CONFIRMED}
                for i in ids
            ],
        )
    return list(ids)
