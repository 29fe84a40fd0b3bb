"""The board counts a long-finished alert's deliveries once a minute, not on every render:
at the tenth big alert of a morning a render would otherwise count every one of them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from dispatch.services import Services
from rapidresponse import broadcast
from rapidresponse.models import Alert, AlertStatus, Delivery, DeliveryStatus, Language, utcnow
from tests.factories import ALICE, Ledger, add_alert_for, add_subscriber
from web import settled_progress
from web.settled_progress import SettledProgress


@pytest.fixture
def ledger(services: Services) -> Ledger:
    return add_alert_for(services, add_subscriber(services, ALICE), Language.EN)


def finish(services: Services, ledger: Ledger, ago: timedelta) -> None:
    with services.database.session() as session:
        session.execute(
            update(Delivery).where(Delivery.id == ledger.delivery_id).values(status="sent")
        )
        session.execute(
            update(Alert)
            .where(Alert.id == ledger.alert_id)
            .values(status=AlertStatus.COMPLETE, completed_at=utcnow() - ago)
        )


def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The alert ids ``broadcast.progress`` is asked to count, as it is asked."""
    calls: list[int] = []
    real = broadcast.progress

    def counting(session: Session, alert_id: int) -> broadcast.Progress:
        calls.append(alert_id)
        return real(session, alert_id)

    monkeypatch.setattr(settled_progress.broadcast, "progress", counting)
    return calls


def progress_now(services: Services, kept: SettledProgress, ledger: Ledger) -> broadcast.Progress:
    with services.database.reading() as session:
        return kept.of(session, session.get_one(Alert, ledger.alert_id))


def test_an_alert_still_sending_or_just_finished_is_counted_every_time(
    services: Services, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = SettledProgress()
    calls = counted(monkeypatch)
    progress_now(services, kept, ledger)
    progress_now(services, kept, ledger)
    finish(services, ledger, ago=timedelta(seconds=30))  # its last reports still coming
    progress_now(services, kept, ledger)
    assert len(calls) == 3


def test_an_alert_long_finished_is_counted_once_a_minute(
    services: Services, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(settled_progress.time, "monotonic", lambda: clock[0])
    kept = SettledProgress()
    calls = counted(monkeypatch)
    finish(services, ledger, ago=timedelta(hours=1))
    first = progress_now(services, kept, ledger)
    assert first.sent == 1
    with services.database.session() as session:  # a late "delivered" from the carrier
        session.execute(
            update(Delivery)
            .where(Delivery.id == ledger.delivery_id)
            .values(status=DeliveryStatus.DELIVERED)
        )
    assert progress_now(services, kept, ledger) == first  # kept
    clock[0] += settled_progress.KEEP_SECONDS
    later = progress_now(services, kept, ledger)
    assert (later.delivered, len(calls)) == (1, 2)  # counted again after a minute
