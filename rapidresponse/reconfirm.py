"""Keeping the list alive: a yearly "still want alerts?", and a pause for silence.

Numbers change hands. A list kept for years texts strangers about raids, and a number
nobody reads makes every broadcast slower and costlier. Off by default
(``RECONFIRM_AFTER_DAYS``): when on, a subscriber that nothing reached (no alert or
announcement delivered) for that long, and who has not said yes to this question since,
is asked once; without a YES within ``RECONFIRM_WAIT_DAYS`` they are paused — kept, with
their areas, but sent nothing — until they text YES (or JOIN) again. Numbers that fail
for good are marked undeliverable by the broadcast itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from rapidresponse import broadcast
from rapidresponse.models import (
    Alert,
    Delivery,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)

BATCH = 500  # people asked per run: the question is never a broadcast of its own


@dataclass(frozen=True)
class ListHealth:
    """What the board shows: counts only."""

    asked: int  # asked "still want alerts?" and not answered yet
    paused: int


def to_ask(session: Session, now: datetime, after: timedelta) -> list[int]:
    """Active subscribers with a confirmed area whom nothing reached for ``after``, who
    joined (or last said yes to this) before that, and who are not waiting to answer."""
    since = now - after
    # A drill's alert says nothing about whether they still want real ones.
    reached = (
        select(Delivery.subscriber_id)
        .join(Alert, Alert.id == Delivery.alert_id)
        .where(Delivery.sent_at > since, broadcast.got_it(), Alert.drill_id.is_(None))
    )
    subscribed = select(Subscription.subscriber_id).where(
        Subscription.status == SubscriptionStatus.CONFIRMED
    )
    return list(
        session.scalars(
            select(Subscriber.id)
            .where(
                Subscriber.status == SubscriberStatus.ACTIVE,
                Subscriber.reconfirm_asked_at.is_(None),
                func.coalesce(Subscriber.reconfirmed_at, Subscriber.created_at) < since,
                Subscriber.id.in_(subscribed),
                Subscriber.id.not_in(reached),
            )
            .order_by(Subscriber.id)
            .limit(BATCH)
        )
    )


def claim_question(session: Session, subscriber_id: int, now: datetime) -> bool:
    """Mark the question asked, once: a second worker (or a retry) finds it taken."""
    claimed = session.execute(
        update(Subscriber)
        .where(
            Subscriber.id == subscriber_id,
            Subscriber.reconfirm_asked_at.is_(None),
            Subscriber.status == SubscriberStatus.ACTIVE,
        )
        .values(reconfirm_asked_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(claimed.rowcount)  # type: ignore[attr-defined]


def give_back(session: Session, subscriber_id: int) -> None:
    """The question could not be sent: it is asked on a later run."""
    session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber_id)
        .values(reconfirm_asked_at=None)
        .execution_options(synchronize_session=False)
    )


def pause_silent(session: Session, now: datetime, wait: timedelta) -> int:
    """Pause those asked more than ``wait`` ago who did not answer. Returns how many."""
    paused = session.execute(
        update(Subscriber)
        .where(
            Subscriber.status == SubscriberStatus.ACTIVE,
            Subscriber.reconfirm_asked_at < now - wait,
        )
        .values(status=SubscriberStatus.PAUSED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(paused.rowcount)  # type: ignore[attr-defined]


def answered(subscriber: Subscriber, now: datetime) -> bool:
    """A YES (or a JOIN) from them: asked or paused, they are kept. True if it was an
    answer to the question (or ended a pause)."""
    was_waiting = subscriber.reconfirm_asked_at is not None
    was_paused = subscriber.status is SubscriberStatus.PAUSED
    if not (was_waiting or was_paused):
        return False
    subscriber.reconfirm_asked_at, subscriber.reconfirmed_at = None, now
    if was_paused:
        subscriber.status = SubscriberStatus.ACTIVE
    return True


def list_health(session: Session) -> ListHealth:
    asked = session.scalar(
        select(func.count())
        .select_from(Subscriber)
        .where(
            Subscriber.status == SubscriberStatus.ACTIVE,
            Subscriber.reconfirm_asked_at.is_not(None),
        )
    )
    paused = session.scalar(
        select(func.count())
        .select_from(Subscriber)
        .where(Subscriber.status == SubscriberStatus.PAUSED)
    )
    return ListHealth(int(asked or 0), int(paused or 0))
