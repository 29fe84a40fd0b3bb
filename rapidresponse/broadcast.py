"""The broadcast ledger: who gets an alert, and what became of each send.

Approving an alert writes one ``pending`` Delivery per recipient in the same transaction
that marks the alert approved, with one INSERT ... SELECT: the audience never passes
through Python, so 100,000 recipients cost one statement and no memory. Rows are
grouped into numbered batches as they are written; a batch job sends one batch.

Everything here is a conditional UPDATE whose WHERE clause says which state it expects,
so a status callback, a worker holding a lease and the reaper can race without one
overwriting another's outcome.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    Table,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import InstrumentedAttribute, Session

from rapidresponse import audit, drills, redaction, whatsapp
from rapidresponse.crypto import DecryptionError, FieldCipher, Purpose
from rapidresponse.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Channel,
    Delivery,
    DeliveryStatus,
    Incident,
    Language,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    alert_areas,
    alert_progress,
    batch_leases,
    ledger_cursors,
    to_the_minute,
    utcnow,
)
from rapidresponse.shredding import ShreddingCipher, incident_key

# Recipients per batch job at full speed. Each job pays a fork and fresh connections
# (~50-90 ms of CPU), so fewer, larger batches keep the per-message cost under 1 ms.
BATCH_MAX = 1000
BATCH_MIN = 10
# At a slow SEND_RATE a batch holds about this many seconds of sending, so that one job
# (and one lease) never has to last longer than a job timeout.
SECONDS_PER_BATCH = 60
MAX_ATTEMPTS = 8  # claims of one delivery before it is given up as failed
# The ledger is written a segment at a time (``write_segment``): approval writes up to
# FIRST_SEGMENT_ROWS with the alert, a few hundred milliseconds, and enqueues them, so the
# first message leaves at once whatever the audience; ledger jobs write the rest, at most
# LEDGER_SEGMENT_ROWS per transaction (short enough that the hotline never waits long on
# SQLite's one writer), each looking through at most SEGMENT_SPAN subscriber ids (so a
# segment costs about the same however sparse the audience is in the network).
FIRST_SEGMENT_ROWS = 2_000
LEDGER_SEGMENT_ROWS = 10_000
SEGMENT_SPAN = 100_000
# The first span: a dense audience fills a first segment in about this many ids; a
# segment that finds fewer than half the rows it may write doubles the next one's span.
FIRST_SPAN = 2 * FIRST_SEGMENT_ROWS
FIRST_SEGMENTS_AT_MOST = 3  # segment queries in the approval's own transaction

FOLLOW_UP_KINDS = frozenset({AlertKind.UPDATE, AlertKind.ALL_CLEAR, AlertKind.CORRECTION})
UNFINISHED = (DeliveryStatus.PENDING, DeliveryStatus.CLAIMED)
FAILED_STATUSES = (
    DeliveryStatus.FAILED,
    DeliveryStatus.UNDELIVERABLE,
    DeliveryStatus.OPTED_OUT,
)
# Accepted by the provider (or possibly: a send whose outcome was unknowable was retried
# and may have arrived twice): the people a follow-up goes to.
ACCEPTED_STATUSES = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED)
# Deliveries that certainly reached nobody (an announcement's weekly cap does not count them).
NOT_SENT_STATUSES = (
    DeliveryStatus.FAILED,
    DeliveryStatus.UNDELIVERABLE,
    DeliveryStatus.OPTED_OUT,
    DeliveryStatus.EXPIRED,
)
# Twilio error codes that say something about the recipient (see dispatch.senders).
OPTED_OUT_CODES = frozenset({21610})
BAD_NUMBER_CODES = frozenset({21211, 21614, 30005, 30006})


# The table itself, for executemany UPDATEs that the ORM would do one row at a time.
DELIVERIES = cast(Table, Delivery.__table__)
# What every outcome (and every release) writes: nobody holds the row any more.
LEASE_CLEARED: dict[str, None] = {"lease_token": None, "lease_expires_at": None, "sending_at": None}


class AlertNotApprovable(ValueError):
    """The alert is not a draft any more (approved twice, or cancelled)."""


@dataclass(frozen=True)
class Approval:
    alert_id: int
    recipients: int  # written with the approval: all of them once ``ledger_done``
    batches: int  # batch numbers written so far
    # Batches to enqueue now: the incident's own area's, when adjacent areas wait for it.
    first_batches: int | None = None
    # False: ledger jobs write the rest (``write_segment``), enqueueing as they go.
    ledger_done: bool = True

    @property
    def enqueue_now(self) -> range:
        return range(self.batches if self.first_batches is None else self.first_batches)


@dataclass(frozen=True)
class Segment:
    """What one ``write_segment`` wrote."""

    rows: int
    batches: tuple[int, ...]  # the batch numbers it wrote, in order
    to_send: tuple[int, ...]  # of those, the ones to enqueue now (not held back)
    next_batch: int
    done: bool  # the ledger is whole: no cursor is left


@dataclass(frozen=True)
class Progress:
    """Counts for the board's progress bar. ``failed`` includes opted-out and bad numbers;
    ``expired`` are those never sent because the alert's validity ran out first."""

    alert_id: int
    total: int
    pending: int
    sent: int
    delivered: int
    failed: int
    unknown_outcomes: int
    expired: int = 0

    @property
    def done(self) -> bool:
        return self.pending == 0

    def as_event(self) -> dict[str, int]:
        return {
            "alert_id": self.alert_id,
            "total": self.total,
            "pending": self.pending,
            "sent": self.sent,
            "delivered": self.delivered,
            "failed": self.failed,
            "expired": self.expired,
        }


def batch_size(send_rate: float | None) -> int:
    """Recipients per batch job: as many as SECONDS_PER_BATCH of sending, within bounds."""
    if send_rate is None:
        return BATCH_MAX
    return max(BATCH_MIN, min(BATCH_MAX, int(send_rate * SECONDS_PER_BATCH)))


def draft(
    session: Session,
    *,
    kind: AlertKind,
    texts: dict[str, str],
    area_ids: Sequence[int] = (),
    incident_id: int | None = None,
    parent_id: int | None = None,
    created_by_id: int | None = None,
    cipher: ShreddingCipher | None = None,
) -> Alert:
    """A draft alert. Follow-ups name their parent; alerts name their areas.

    An incident's alert keeps its texts sealed under the incident's shred key
    (``cipher`` is then required): a follow-up's note is erased with the incident.
    """
    if (kind in FOLLOW_UP_KINDS) != (parent_id is not None):
        raise ValueError("a follow-up needs the alert it follows; an alert must not have one")
    if incident_id is not None and cipher is None:
        raise ValueError("cipher: an incident's alert texts are sealed under its shred key")
    sealed = (
        None if incident_id is None or cipher is None else seal_texts(cipher, incident_id, texts)
    )
    alert = Alert(
        kind=kind,
        status=AlertStatus.DRAFT,
        texts={} if sealed else dict(texts),
        texts_sealed=sealed,
        incident_id=incident_id,
        parent_id=parent_id,
        created_by_id=created_by_id,
        # Decided here from what it is about, never by the caller: a drill's alert and
        # its follow-ups stay in the drill.
        drill_id=_drill_of(session, incident_id, parent_id),
    )
    session.add(alert)
    session.flush()
    if area_ids:
        session.execute(
            insert(alert_areas), [{"alert_id": alert.id, "area_id": a} for a in set(area_ids)]
        )
    audit.record(
        session,
        actor=_actor(created_by_id),
        action="alert.drafted",
        subject=f"alert:{alert.id}",
        details={"kind": kind.value, "incident_id": incident_id, "parent_id": parent_id},
    )
    return alert


def _drill_of(session: Session, incident_id: int | None, parent_id: int | None) -> int | None:
    if parent_id is not None:
        return session.scalar(select(Alert.drill_id).where(Alert.id == parent_id))
    if incident_id is not None:
        return session.scalar(select(Incident.drill_id).where(Incident.id == incident_id))
    return None


def approve(
    session: Session,
    alert_id: int,
    *,
    now: datetime,
    validity: timedelta,
    batch: int,
    whatsapp_batch: int | None = None,
    whatsapp_daily_limit: int | None = None,
    approved_by_id: int | None = None,
    per_week: int = 2,
    first_rows: int = FIRST_SEGMENT_ROWS,
) -> Approval:
    """Mark a draft approved and write the first segment of its ledger (up to
    ``first_rows`` recipients, the incident's own area first), in the caller's
    transaction. Unless that was everyone (``Approval.ledger_done``), ledger jobs write
    the rest with ``write_segment``.

    ``batch`` and ``whatsapp_batch`` are each channel's batch size; without
    ``whatsapp_batch`` WhatsApp carries nothing (no sender) and only SMS consent counts.
    ``whatsapp_daily_limit`` is the portfolio's tier (see ``whatsapp.keep_within_daily_limit``).

    Commit, then enqueue the batches: a crash in between leaves pending rows (and a
    cursor) that the reaper finds, never jobs that point at nothing.

    Raises:
        AlertNotApprovable: it is not a draft (two dispatchers approving at once: one wins).
    """
    claimed = session.execute(
        update(Alert)
        .where(Alert.id == alert_id, Alert.status == AlertStatus.DRAFT)
        .values(
            status=AlertStatus.APPROVED,
            approved_at=now,
            approved_by_id=approved_by_id,
            expires_at=now + validity,
        )
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        raise AlertNotApprovable(f"alert {alert_id} is not a draft")
    alert = session.get_one(Alert, alert_id, populate_existing=True)
    _start_ledger(session, alert, now)
    plan = LedgerPlan.of(batch, whatsapp_batch, whatsapp_daily_limit, per_week)
    written, segment = 0, None
    for _ in range(FIRST_SEGMENTS_AT_MOST):
        segment = write_segment(session, alert_id, plan, now=now, rows=first_rows - written)
        assert segment is not None  # this transaction made the cursor
        written += segment.rows
        if segment.done or written >= first_rows:
            break
    assert segment is not None
    audit.record(
        session,
        actor=_actor(approved_by_id),
        action="alert.approved",
        subject=f"alert:{alert_id}",
        details={"kind": alert.kind.value, "recipients": written, "streamed": not segment.done},
    )
    return Approval(
        alert_id, written, segment.next_batch, alert.held_from_batch, ledger_done=segment.done
    )


@dataclass(frozen=True)
class LedgerPlan:
    """How a ledger is written: each channel's batch size, the WhatsApp tier, the
    announcements' weekly cap (the same for every segment of one alert)."""

    sizes: dict[Channel, int]
    whatsapp_daily_limit: int | None
    per_week: int

    @classmethod
    def of(
        cls,
        batch: int,
        whatsapp_batch: int | None,
        whatsapp_daily_limit: int | None,
        per_week: int,
    ) -> LedgerPlan:
        sizes = {Channel.SMS: batch}
        if whatsapp_batch is not None:
            sizes[Channel.WHATSAPP] = whatsapp_batch
        limit = whatsapp_daily_limit if whatsapp_batch is not None else None
        return cls(sizes, limit, per_week)


def _start_ledger(session: Session, alert: Alert, now: datetime) -> None:
    """The cursor of a new ledger: everyone up to the newest subscriber now, own area
    first (rank 0), then the adjacent areas (rank 1) if the alert names any."""
    upto = session.scalar(select(func.max(Subscriber.id)))
    home = _home_area_id(session, alert)
    adjacent = (
        home is not None
        and alert.kind not in FOLLOW_UP_KINDS
        and alert.drill_id is None
        and session.scalar(
            select(alert_areas.c.area_id)
            .where(alert_areas.c.alert_id == alert.id, alert_areas.c.area_id != home)
            .limit(1)
        )
        is not None
    )
    session.execute(
        insert(ledger_cursors).values(
            alert_id=alert.id,
            rank=0,
            last_rank=1 if adjacent else 0,
            after_id=_before_first_subscriber(session),
            span=FIRST_SPAN,
            upto_id=int(upto or 0),
            next_batch=0,
            updated_at=now,
        )
    )


def _before_first_subscriber(session: Session) -> int:
    """Where a walk of the subscriber ids starts: just before the lowest (ids need not
    start near 1: a network that erased its early subscribers, a shared sequence)."""
    return int(session.scalar(select(func.min(Subscriber.id))) or 1) - 1


def write_segment(
    session: Session, alert_id: int, plan: LedgerPlan, *, now: datetime, rows: int
) -> Segment | None:
    """Write the next segment of an alert's ledger: up to ``rows`` recipients, in the
    caller's transaction; None when the ledger is already whole.

    The cursor is moved first, so its row lock makes concurrent writers of one alert
    take turns (each then reads where the last one stopped), and with the rows: a
    rollback (a crash) leaves both as they were. Batches never mix the two ranks, nor
    the two channels (each has its own pace); the adjacent areas' are numbered after
    every one of the own area's, so they can be held back as a whole.
    """
    cursor = _take_cursor(session, alert_id, now)
    if cursor is None:
        return None
    alert = session.get_one(Alert, alert_id)
    span = min(cursor.span, SEGMENT_SPAN)
    upper = min(cursor.upto_id, cursor.after_id + span)
    people = _segment_people(session, alert, plan, cursor.rank, (cursor.after_id, upper), rows)
    _insert_rows(session, alert, plan, people, cursor.next_batch, now)
    written = session.execute(
        select(Delivery.batch, func.count(), func.max(Delivery.subscriber_id))
        .where(Delivery.alert_id == alert_id, Delivery.batch >= cursor.next_batch)
        .group_by(Delivery.batch)
        .order_by(Delivery.batch)
    ).all()
    count = sum(int(n) for _, n, _ in written)
    batches = tuple(int(b) for b, _, _ in written)
    if plan.whatsapp_daily_limit is not None and count:
        whatsapp.keep_within_daily_limit(session, alert_id, now, plan.whatsapp_daily_limit)
    if alert.drill_id is not None:
        _check_drill_ledger(session, alert)
    alert.recipient_count += count
    next_batch = batches[-1] + 1 if batches else cursor.next_batch
    # Fewer than asked: nobody else in this span; otherwise go on after the last one.
    after = max(int(last) for _, _, last in written) if count >= rows else upper
    if count < rows // 2:
        span = min(2 * span, SEGMENT_SPAN)  # a sparse audience: look further next time
    done = _move_cursor(session, alert, cursor, (after, span), next_batch, now)
    held = alert.held_from_batch
    to_send = tuple(b for b in batches if held is None or b < held)
    return Segment(count, batches, to_send, next_batch, done)


def _take_cursor(session: Session, alert_id: int, now: datetime) -> Row[tuple[int, ...]] | None:
    cursors = ledger_cursors.c
    return session.execute(
        update(ledger_cursors)
        .where(cursors.alert_id == alert_id)
        .values(updated_at=now)
        .returning(
            cursors.rank,
            cursors.last_rank,
            cursors.after_id,
            cursors.span,
            cursors.upto_id,
            cursors.next_batch,
        )
    ).first()


def _move_cursor(
    session: Session,
    alert: Alert,
    cursor: Row[tuple[int, ...]],
    walked: tuple[int, int],
    next_batch: int,
    now: datetime,
) -> bool:
    """Move the cursor past what was written (``walked``: the last subscriber id looked
    at, and the span to look through next); True (and no cursor) once it is all."""
    rank, (after, span) = cursor.rank, walked
    if after >= cursor.upto_id and rank < cursor.last_rank:
        # The own area is written: the adjacent areas' batches start here and wait.
        rank, after = rank + 1, _before_first_subscriber(session)
        if alert.recipient_count:
            alert.held_from_batch = next_batch
    if after < cursor.upto_id:
        session.execute(
            update(ledger_cursors)
            .where(ledger_cursors.c.alert_id == alert.id)
            .values(rank=rank, after_id=after, span=span, next_batch=next_batch, updated_at=now)
        )
        return False
    session.execute(delete(ledger_cursors).where(ledger_cursors.c.alert_id == alert.id))
    if alert.held_from_batch is not None and next_batch <= alert.held_from_batch:
        alert.held_from_batch = None  # nobody in the adjacent areas: nothing waits
    if alert.recipient_count == 0:
        alert.status, alert.completed_at = AlertStatus.COMPLETE, now
    return True


def ledger_orphans(session: Session, idle_since: datetime) -> list[int]:
    """Alerts whose ledger is unfinished and untouched since ``idle_since``: the job
    writing it died (or Redis lost it), and the reaper enqueues another."""
    cursors = ledger_cursors.c
    return list(
        session.scalars(
            select(cursors.alert_id)
            .where(cursors.updated_at < idle_since)
            .order_by(cursors.alert_id)
        )
    )


def ledger_unfinished(alert_id: int) -> ColumnElement[bool]:
    """Its ledger is still being written (a cursor is left)."""
    return select(ledger_cursors.c.alert_id).where(ledger_cursors.c.alert_id == alert_id).exists()


class DrillLedgerBreach(RuntimeError):
    """A drill alert's ledger named someone outside the drill: never sent (rolled back)."""


def _check_drill_ledger(session: Session, alert: Alert) -> None:
    """The audience query already keeps a drill inside; this checks the rows written, in
    the same transaction, so a future change to the query cannot leak a drill alert."""
    assert alert.drill_id is not None
    outsiders = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(
            Delivery.alert_id == alert.id,
            Delivery.subscriber_id.not_in(drills.subscriber_ids(alert.drill_id)),
        )
    )
    if outsiders:
        raise DrillLedgerBreach(f"alert {alert.id}: {outsiders} recipients outside its drill")


def seal_texts(cipher: ShreddingCipher, incident_id: int, texts: dict[str, str]) -> bytes:
    document = json.dumps(texts, ensure_ascii=False, sort_keys=True)
    return cipher.seal(incident_key(incident_id), document, Purpose.ALERT_TEXTS)


def texts_of(cipher: FieldCipher, alert: Alert) -> dict[str, str]:
    """An alert's text in each language; empty once its incident's key is destroyed."""
    if alert.texts_sealed is None:
        texts = {str(language): str(text) for language, text in alert.texts.items()}
    else:
        texts = _opened(cipher, alert.texts_sealed)
    if alert.drill_id is not None:  # whatever a dispatcher wrote, it says DRILL first
        return {language: drills.mark(text, language) for language, text in texts.items()}
    return texts


def lines_of(cipher: FieldCipher, alert: Alert) -> dict[str, str]:
    """A draft's optional line in each language, as the dispatcher wrote it ({}: none)."""
    return {} if alert.lines_sealed is None else _opened(cipher, alert.lines_sealed)


def _opened(cipher: FieldCipher, sealed: bytes) -> dict[str, str]:
    try:
        opened = json.loads(cipher.decrypt(sealed, Purpose.ALERT_TEXTS))
    except DecryptionError:
        return {}
    return {str(language): str(text) for language, text in opened.items()}


def subscribers_by_area(session: Session, area_ids: Sequence[int]) -> dict[int, int]:
    """How many active, confirmed subscribers each area has: area id -> count."""
    rows = session.execute(
        select(Subscription.area_id, func.count())
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            Subscription.area_id.in_(area_ids),
            Subscription.status == SubscriptionStatus.CONFIRMED,
            reachable(),
        )
        .group_by(Subscription.area_id)
    ).all()
    return {int(area_id): int(count) for area_id, count in rows}


def cancel(session: Session, alert_id: int, *, by_id: int | None = None) -> bool:
    """Drop a draft nobody approved. Returns whether it was still a draft."""
    done = session.execute(
        update(Alert)
        .where(Alert.id == alert_id, Alert.status == AlertStatus.DRAFT)
        .values(status=AlertStatus.CANCELLED)
        .execution_options(synchronize_session=False)
    )
    if done.rowcount != 1:  # type: ignore[attr-defined]
        return False
    audit.record(
        session, actor=_actor(by_id), action="alert.cancelled", subject=f"alert:{alert_id}"
    )
    return True


def _actor(staff_id: int | None) -> str:
    return "system" if staff_id is None else f"staff:{staff_id}"


def audience(
    alert: Alert,
    *,
    per_week: int = 2,
    now: datetime | None = None,
    ids: tuple[int, int] | None = None,
) -> Select[int, Language]:
    """(subscriber id, language) of everyone this alert goes to, each once; with ``ids``,
    only those with subscriber ids in (``ids[0]``, ``ids[1]``] (a segment of the ledger:
    the range is put on the table each query walks, so its index serves it).

    An alert goes to the active, confirmed subscribers of its areas. A follow-up goes to
    the people who got the alert it follows (the provider accepted it for them, or a send
    whose outcome was unknowable may have reached them), wherever they have moved since,
    except those who opted out or whose number stopped working since: never to someone
    whose alert expired or failed before it was sent (an all-clear for an alert they never
    saw would only confuse).
    """
    low, high = ids if ids is not None else (None, None)
    if alert.drill_id is not None:
        # first: nothing else can widen it
        return _drill_audience(alert.drill_id).where(*_in(Subscriber.id, low, high))
    if alert.kind is AlertKind.ANNOUNCEMENT:
        people = _announcement_audience(alert, per_week, now or alert.approved_at or utcnow())
        return people.where(*_in(Subscriber.id, low, high))
    if alert.kind in FOLLOW_UP_KINDS:
        return (
            select(Subscriber.id, Subscriber.language)
            .join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.alert_id == alert.parent_id, got_it(), reachable())
            .where(*_in(Delivery.subscriber_id, low, high))
            .distinct()
        )
    area_ids = select(alert_areas.c.area_id).where(alert_areas.c.alert_id == alert.id)
    if ids is not None:
        # A segment walks the subscribers' ids and looks each one's subscriptions up:
        # the cost of its span, however many the areas hold.
        return select(Subscriber.id, Subscriber.language).where(
            *_in(Subscriber.id, low, high), _subscribed_in(area_ids, ids), reachable()
        )
    return (
        select(Subscriber.id, Subscriber.language)
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        .where(
            Subscription.area_id.in_(area_ids),
            Subscription.status == SubscriptionStatus.CONFIRMED,
            reachable(),
        )
        .distinct()
    )


def _subscribed_in(
    area_ids: Select[tuple[int]] | Sequence[int], ids: tuple[int, int]
) -> ColumnElement[bool]:
    """The subscriber has a confirmed subscription to one of these areas. The segment's
    range is repeated inside: PostgreSQL may run this as a semi-join, and then only the
    range's subscriptions are read, never every one of the areas'."""
    return (
        select(Subscription.subscriber_id)
        .where(
            Subscription.subscriber_id == Subscriber.id,
            *_in(Subscription.subscriber_id, *ids),
            Subscription.area_id.in_(area_ids),
            Subscription.status == SubscriptionStatus.CONFIRMED,
        )
        .exists()
    )


def _in(
    column: ColumnElement[int] | InstrumentedAttribute[int], low: int | None, high: int | None
) -> tuple[ColumnElement[bool], ...]:
    if low is None or high is None:
        return ()
    return (column > low, column <= high)


def _drill_audience(drill_id: int) -> Select[int, Language]:
    """A drill alert (and each of its follow-ups) goes to the drill's participants who
    can be texted — never to a public subscriber, whatever areas it names."""
    return select(Subscriber.id, Subscriber.language).where(
        Subscriber.id.in_(drills.subscriber_ids(drill_id)), reachable()
    )


def _announcement_audience(alert: Alert, per_week: int, now: datetime) -> Select[int, Language]:
    """Who an announcement goes to: only people who said yes to announcements (JOIN NEWS)
    — whatever else is asked, this condition is in the query — who are active, in its
    areas (or anywhere, when it names none), and who got fewer than ``per_week``
    announcements in the 7 days before ``now``."""
    area_ids = select(alert_areas.c.area_id).where(alert_areas.c.alert_id == alert.id)
    in_areas = select(Subscription.subscriber_id).where(
        Subscription.area_id.in_(area_ids), Subscription.status == SubscriptionStatus.CONFIRMED
    )
    had_enough = (
        select(Delivery.subscriber_id)
        .join(Alert, Alert.id == Delivery.alert_id)
        .where(
            Alert.kind == AlertKind.ANNOUNCEMENT,
            Alert.id != alert.id,
            Alert.approved_at > now - timedelta(days=7),
            Delivery.status.not_in(NOT_SENT_STATUSES),
        )
        .group_by(Delivery.subscriber_id)
        .having(func.count() >= per_week)
    )
    return select(Subscriber.id, Subscriber.language).where(
        Subscriber.news_consent_at.is_not(None),
        reachable(),
        or_(~area_ids.exists(), Subscriber.id.in_(in_areas)),
        Subscriber.id.not_in(had_enough),
    )


def _ranked_audience(
    session: Session, alert: Alert, per_week: int, ids: tuple[int, int]
) -> Select[int, Language, int]:
    """``audience`` with a rank, of the subscribers with ids in (``ids[0]``, ``ids[1]``]:
    0 for the incident's own area, 1 for the adjacent areas the dispatcher added
    (someone subscribed to both is in the own area)."""
    home = _home_area_id(session, alert)
    if alert.kind in FOLLOW_UP_KINDS or home is None or alert.drill_id is not None:
        people = audience(alert, per_week=per_week, ids=ids).subquery()
        return select(people.c.id, people.c.language, literal(0).label("rank"))
    area_ids = select(alert_areas.c.area_id).where(alert_areas.c.alert_id == alert.id)
    rank = case((_subscribed_in([home], ids), 0), else_=1)
    return select(Subscriber.id, Subscriber.language, rank.label("rank")).where(
        *_in(Subscriber.id, *ids), _subscribed_in(area_ids, ids), reachable()
    )


def _home_area_id(session: Session, alert: Alert) -> int | None:
    if alert.incident_id is None:
        return None
    return session.scalar(select(Incident.area_id).where(Incident.id == alert.incident_id))


def got_it() -> ColumnElement[bool]:
    """A delivery that reached (or may have reached) its recipient."""
    return or_(Delivery.status.in_(ACCEPTED_STATUSES), Delivery.unknown_outcomes > 0)


def audience_by_language(session: Session, alert: Alert) -> dict[str, int]:
    """How many people each language's text goes to: language value -> count."""
    people = audience(alert).subquery()
    rows = session.execute(
        select(people.c.language, func.count()).group_by(people.c.language)
    ).all()
    return {Language(language).value: int(count) for language, count in rows}


def audience_by_channel(
    session: Session, alert: Alert, whatsapp_on: bool
) -> whatsapp.ChannelCounts:
    """How the alert would reach its audience now: by SMS, by WhatsApp template, by SMS
    for lack of one, or by WhatsApp free text (the alert page's preview)."""
    people = audience(alert).subquery()
    rows = session.execute(
        select(Subscriber.status, Subscriber.whatsapp_status, Subscriber.language, func.count())
        .join(people, people.c.id == Subscriber.id)
        .group_by(Subscriber.status, Subscriber.whatsapp_status, Subscriber.language)
    ).all()
    templated = whatsapp.approved_languages(session, alert.kind)
    return whatsapp.channel_counts(
        ((sms, wa, language, int(n)) for sms, wa, language, n in rows), templated, whatsapp_on
    )


def readers_by_language(session: Session, alert_id: int) -> dict[str, int]:
    """Of the people an alert reached, how many read each language (what its follow-ups
    must be written in)."""
    rows = session.execute(
        select(Delivery.language, func.count())
        .where(Delivery.alert_id == alert_id, got_it())
        .group_by(Delivery.language)
    ).all()
    return {Language(language).value: int(count) for language, count in rows}


def audience_size(session: Session, alert: Alert, per_week: int = 2) -> int:
    people = audience(alert, per_week=per_week).subquery()
    return int(session.scalar(select(func.count()).select_from(people)) or 0)


def reachable() -> ColumnElement[bool]:
    """A subscriber some channel may carry an alert to (SMS, WhatsApp or both)."""
    return or_(
        Subscriber.status == SubscriberStatus.ACTIVE,
        Subscriber.whatsapp_status == SubscriberStatus.ACTIVE,
    )


def _segment_people(
    session: Session,
    alert: Alert,
    plan: LedgerPlan,
    rank: int,
    ids: tuple[int, int],
    rows: int,
) -> Select[int, Language, Channel]:
    """The first ``rows`` recipients of one rank with subscriber ids in ``ids``, in id
    order, each with the channel that reaches them."""
    ranked = _ranked_audience(session, alert, plan.per_week, ids).subquery()
    on_whatsapp = Channel.WHATSAPP in plan.sizes
    channel = (
        _ledger_channel(session, alert, ranked.c.language)
        if on_whatsapp
        else literal(Channel.SMS, DELIVERIES.c.channel.type)
    )
    return (
        select(ranked.c.id, ranked.c.language, channel.label("channel"))
        .join(Subscriber, Subscriber.id == ranked.c.id)
        .where(
            ranked.c.rank == rank,
            true() if on_whatsapp else Subscriber.status == SubscriberStatus.ACTIVE,
        )
        .order_by(ranked.c.id)
        .limit(rows)
    )


def _insert_rows(
    session: Session,
    alert: Alert,
    plan: LedgerPlan,
    chosen: Select[int, Language, Channel],
    first_batch: int,
    now: datetime,
) -> None:
    """One INSERT ... SELECT of a segment's rows, numbered into batches from
    ``first_batch``: SMS first, then WhatsApp, each channel's batches its own."""
    people = chosen.subquery()
    counts = {
        Channel(channel): int(n)
        for channel, n in session.execute(
            select(people.c.channel, func.count()).group_by(people.c.channel)
        )
    }
    offsets: dict[Channel, int] = {}
    first = first_batch
    for lane, size in plan.sizes.items():
        offsets[lane] = first
        first += -(-counts.get(lane, 0) // size)
    table = DELIVERIES
    within = func.row_number().over(partition_by=people.c.channel, order_by=people.c.id) - 1
    batch_number = case(
        *[
            (people.c.channel == lane, offset + within // plan.sizes[lane])
            for lane, offset in offsets.items()
        ],
        else_=literal(first_batch),
    )
    rows = select(
        literal(alert.id),
        people.c.id,
        people.c.language,
        people.c.channel,
        batch_number.label("batch"),
        literal(DeliveryStatus.PENDING, table.c.status.type),
        literal(0),
        literal(0),
        literal(now, table.c.created_at.type),
        literal(now, table.c.updated_at.type),
    )
    # The count above and this INSERT may see a JOIN or a STOP committed in between (on
    # PostgreSQL): the caller reads back what was written, never the count.
    session.execute(
        insert(table).from_select(
            [
                "alert_id",
                "subscriber_id",
                "language",
                "channel",
                "batch",
                "status",
                "attempts",
                "unknown_outcomes",
                "created_at",
                "updated_at",
            ],
            rows,
        )
    )


def _ledger_channel(
    session: Session, alert: Alert, language: ColumnElement[Language]
) -> ColumnElement[Channel]:
    """How each recipient is reached: WhatsApp when they are active there and either an
    approved template exists for this kind of alert in their language, or SMS is not
    theirs (free text, which WhatsApp delivers only inside its 24 h window; outside it
    the refusal is recorded with its reason). Everyone else: SMS."""
    templated = whatsapp.approved_languages(session, alert.kind)
    channel_type = DELIVERIES.c.channel.type
    return case(
        (
            and_(
                Subscriber.whatsapp_status == SubscriberStatus.ACTIVE,
                or_(Subscriber.status != SubscriberStatus.ACTIVE, language.in_(templated)),
            ),
            literal(Channel.WHATSAPP, channel_type),
        ),
        else_=literal(Channel.SMS, channel_type),
    )


# --- progress ------------------------------------------------------------------------------


def progress(session: Session, alert_id: int) -> Progress:
    """An alert's counts, from the counters the database keeps with its deliveries
    (models.alert_progress): a row per batch to sum, whatever the audience."""
    return progress_of_alerts(session, [alert_id])[alert_id]


def progress_of_alerts(session: Session, alert_ids: Sequence[int]) -> dict[int, Progress]:
    """Several alerts' counts in one query (a board shows every recent alert)."""
    kept = alert_progress.c
    rows = session.execute(
        select(
            kept.alert_id,
            *(func.sum(kept[status.value]) for status in DeliveryStatus),
            func.sum(kept.unknown_outcomes),
        )
        .where(kept.alert_id.in_(alert_ids))
        .group_by(kept.alert_id)
    ).all()
    found = {
        int(row[0]): _progress(
            int(row[0]),
            {status: int(n) for status, n in zip(DeliveryStatus, row[1:-1], strict=True)},
            int(row[-1]),
        )
        for row in rows
    }
    # An alert with no ledger yet (a draft) has no counter rows: all zero.
    return {alert_id: found.get(alert_id) or _progress(alert_id, {}, 0) for alert_id in alert_ids}


def counted_progress(session: Session, alert_id: int) -> Progress:
    """The same counts from the deliveries themselves (GROUP BY status): what the kept
    counters are checked against, and the slow way they replace."""
    rows = session.execute(
        select(Delivery.status, func.count(), func.coalesce(func.sum(Delivery.unknown_outcomes), 0))
        .where(Delivery.alert_id == alert_id)
        .group_by(Delivery.status)
    ).all()
    counts = {status: int(count) for status, count, _ in rows}
    return _progress(alert_id, counts, sum(int(unknown) for _, _, unknown in rows))


def _progress(alert_id: int, counts: dict[DeliveryStatus, int], unknown: int) -> Progress:
    """The board's figures from the number of deliveries in each status."""
    return Progress(
        alert_id=alert_id,
        total=sum(counts.values()),
        pending=sum(counts.get(s, 0) for s in UNFINISHED),
        sent=counts.get(DeliveryStatus.SENT, 0),
        delivered=counts.get(DeliveryStatus.DELIVERED, 0),
        failed=sum(counts.get(s, 0) for s in FAILED_STATUSES),
        unknown_outcomes=unknown,
        expired=counts.get(DeliveryStatus.EXPIRED, 0),
    )


def complete_if_done(session: Session, alert_id: int, now: datetime) -> bool:
    """Mark an approved alert complete once nothing is left to send."""
    unfinished = (
        select(Delivery.id)
        .where(Delivery.alert_id == alert_id, Delivery.status.in_(UNFINISHED))
        .limit(1)
    )
    if session.scalar(unfinished) is not None:
        return False
    done = session.execute(
        update(Alert)
        .where(
            Alert.id == alert_id,
            Alert.status == AlertStatus.APPROVED,
            ~ledger_unfinished(alert_id),  # nothing pending yet: the rest is being written
        )
        .values(status=AlertStatus.COMPLETE, completed_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


# --- what the provider said ------------------------------------------------------------------


def status_for_error(code: int | None, channel: Channel = Channel.SMS) -> DeliveryStatus:
    if channel is Channel.WHATSAPP:
        # A carrier code says nothing of WhatsApp; WhatsApp's own say who it cannot reach.
        unreachable = code in whatsapp.UNREACHABLE_CODES
        return DeliveryStatus.UNDELIVERABLE if unreachable else DeliveryStatus.FAILED
    if code in OPTED_OUT_CODES:
        return DeliveryStatus.OPTED_OUT
    if code in BAD_NUMBER_CODES:
        return DeliveryStatus.UNDELIVERABLE
    return DeliveryStatus.FAILED


def mark_subscribers(
    session: Session,
    subscriber_ids: Iterable[int],
    status: DeliveryStatus,
    now: datetime,
    channel: Channel = Channel.SMS,
) -> None:
    """Carry a permanent error over to the subscriber's standing on that channel, so
    nothing is sent there again (the other channel is untouched).

    21610 means the carrier already told them they are unsubscribed: we mark them
    opted out and send no confirmation of our own.
    """
    ids = list(set(subscriber_ids))
    if not ids or status not in (DeliveryStatus.OPTED_OUT, DeliveryStatus.UNDELIVERABLE):
        return
    if channel is Channel.WHATSAPP:
        if status is DeliveryStatus.UNDELIVERABLE:
            session.execute(
                update(Subscriber)
                .where(
                    Subscriber.id.in_(ids), Subscriber.whatsapp_status == SubscriberStatus.ACTIVE
                )
                .values(whatsapp_status=SubscriberStatus.UNDELIVERABLE, updated_at=now)
                .execution_options(synchronize_session=False)
            )
        return
    if status is DeliveryStatus.OPTED_OUT:
        values = {
            "status": SubscriberStatus.OPTED_OUT,
            "opted_out_at": now,
            "opt_out_confirmed_at": now,
            "updated_at": now,
        }
        where = Subscriber.status != SubscriberStatus.OPTED_OUT
    else:
        values = {"status": SubscriberStatus.UNDELIVERABLE, "updated_at": now}
        where = Subscriber.status == SubscriberStatus.ACTIVE
    session.execute(
        update(Subscriber)
        .where(Subscriber.id.in_(ids), where)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


class CallbackStatus(str, enum.Enum):
    """Twilio's MessageStatus values, as a status callback reports them."""

    ACCEPTED = "accepted"
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    CANCELED = "canceled"
    RECEIVING = "receiving"
    RECEIVED = "received"
    PARTIALLY_DELIVERED = "partially_delivered"


ACCEPTED_BY_PROVIDER = frozenset(
    {
        CallbackStatus.ACCEPTED,
        CallbackStatus.SCHEDULED,
        CallbackStatus.QUEUED,
        CallbackStatus.SENDING,
        CallbackStatus.SENT,
    }
)
REACHED_PHONE = frozenset(
    {CallbackStatus.DELIVERED, CallbackStatus.READ, CallbackStatus.PARTIALLY_DELIVERED}
)
NOT_DELIVERED = frozenset(
    {CallbackStatus.UNDELIVERED, CallbackStatus.FAILED, CallbackStatus.CANCELED}
)


@dataclass(frozen=True)
class CallbackOutcome:
    changed: bool
    alert_id: int | None = None
    # A WhatsApp refusal turned into a pending SMS (or a WhatsApp retry after its rate
    # limit): this batch has something to send again.
    resend_batch: int | None = None
    slow_down: bool = False  # WhatsApp said we went too fast (63018)


def fall_back_to_sms(
    session: Session, delivery_ids: Sequence[int], error_code: int | None, now: datetime
) -> int:
    """WhatsApp refused these deliveries (``error_code``: outside its window, not on
    WhatsApp, a template it would not take): those whose person consented to SMS too are
    pending again, by SMS — still one row each, so nobody gets the alert twice. Returns
    how many.
    """
    if not delivery_ids:
        return 0
    on_sms = select(Subscriber.id).where(Subscriber.status == SubscriberStatus.ACTIVE)
    rows = session.scalars(
        select(Delivery)
        .where(
            Delivery.id.in_(delivery_ids),
            Delivery.channel == Channel.WHATSAPP,
            Delivery.status.in_((*UNFINISHED, DeliveryStatus.SENT)),
            Delivery.subscriber_id.in_(on_sms),
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    for row in rows:
        _send_again(row, Channel.SMS, row.provider_sid, now, error_code)
    _reopen(session, {row.alert_id for row in rows})
    return len(rows)


def _send_again(
    row: Delivery,
    channel: Channel,
    refused_sid: str | None,
    now: datetime,
    error_code: int | None = None,
) -> None:
    """Make a refused delivery pending again, on ``channel``. The refused message's id is
    set aside, so its late callbacks are never taken for the new send's."""
    if refused_sid is not None:
        row.superseded_sids = [*(row.superseded_sids or []), refused_sid]
    if channel is not row.channel:
        row.attempts = 0  # a new channel's tries are its own
    row.channel, row.status, row.provider_sid = channel, DeliveryStatus.PENDING, None
    row.lease_token = row.lease_expires_at = row.sending_at = None
    row.error_code = None if error_code is None else str(error_code)
    row.updated_at = now


def _reopen(session: Session, alert_ids: set[int]) -> None:
    """An alert marked complete that has a row pending again is being sent again: the
    reaper looks after it (expiry, vanished jobs) as after any approved alert."""
    if alert_ids:
        session.execute(
            update(Alert)
            .where(Alert.id.in_(alert_ids), Alert.status == AlertStatus.COMPLETE)
            .values(status=AlertStatus.APPROVED, completed_at=None)
            .execution_options(synchronize_session=False)
        )


# What a StatusCallback URL names a delivery by: its integer id, or the 32-hex id of a
# row written before migration 0029 (kept in ``legacy_id``).
CALLBACK_KEY = re.compile(r"^(?:[1-9][0-9]{0,17}|[0-9a-f]{32})$")


def callback_key(delivery_id: int) -> str:
    """The key a message's StatusCallback URL carries for its delivery."""
    return str(delivery_id)


def delivery_for_callback(session: Session, key: str) -> Delivery | None:
    """The delivery a StatusCallback URL's key names, or None (no such row, or a key no
    delivery of ours could have)."""
    if not CALLBACK_KEY.match(key):
        return None
    if len(key) == 32:
        return session.scalars(select(Delivery).where(Delivery.legacy_id == key)).first()
    return session.get(Delivery, int(key))


def record_callback(
    session: Session,
    delivery_key: str,
    *,
    message_sid: str,
    status: CallbackStatus,
    error_code: int | None,
    now: datetime,
    channel: str | None = None,
) -> CallbackOutcome:
    """Apply one status callback. Replays and out-of-order callbacks change nothing.

    Statuses only move forward (pending/claimed → sent → delivered or failed), so the
    same (sid, status) twice, or 'sent' after 'delivered', is a no-op. A callback for a
    delivery still claimed is a send whose HTTP answer was lost: it is marked sent
    and released, so no worker or reaper sends it again. A callback for a try that was
    refused and sent again (``superseded_sids``), or from the other channel (``channel``,
    from its To), is not the current send's and changes nothing.
    """
    delivery = delivery_for_callback(session, delivery_key)
    if delivery is None or (delivery.provider_sid not in (None, message_sid)):
        return CallbackOutcome(False)  # not ours, or for a different send of that row
    if delivery.provider_forgotten_at is not None or message_sid in (
        delivery.superseded_sids or ()
    ):
        return CallbackOutcome(False)  # its callbacks were done, or an earlier try's
    if channel is not None and channel != delivery.channel.value:
        return CallbackOutcome(False, delivery.alert_id)  # the other channel's try
    target, earlier = _callback_target(status, error_code, delivery.channel)
    if target is None:
        return CallbackOutcome(False, delivery.alert_id)
    if delivery.channel is Channel.WHATSAPP and target not in (
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
    ):
        return _whatsapp_refused(session, delivery, message_sid, target, error_code, now)
    changed = session.execute(
        update(Delivery)
        .where(
            Delivery.id == delivery.id,
            Delivery.status.in_(earlier),
            or_(Delivery.provider_sid.is_(None), Delivery.provider_sid == message_sid),
            Delivery.provider_forgotten_at.is_(None),
        )
        .values(
            status=target,
            provider_sid=message_sid,
            **LEASE_CLEARED,
            error_code=None if error_code is None else str(error_code),
            sent_at=case((Delivery.sent_at.is_(None), now), else_=Delivery.sent_at),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if not changed.rowcount:  # type: ignore[attr-defined]
        return CallbackOutcome(False, delivery.alert_id)
    if target in (DeliveryStatus.OPTED_OUT, DeliveryStatus.UNDELIVERABLE):
        mark_subscribers(session, [delivery.subscriber_id], target, now)
    return CallbackOutcome(True, delivery.alert_id)


def _whatsapp_refused(
    session: Session,
    delivery: Delivery,
    message_sid: str,
    target: DeliveryStatus,
    error_code: int | None,
    now: datetime,
) -> CallbackOutcome:
    """WhatsApp did not deliver a message it had accepted. Its rate limit (63018): the
    message goes again on WhatsApp. Otherwise the person is marked unreachable there when
    the code says so, and the alert goes by SMS if they consented to SMS too; if not,
    the delivery fails, with the code as its reason."""
    row = session.scalars(
        select(Delivery)
        .where(
            Delivery.id == delivery.id,
            Delivery.status.in_((DeliveryStatus.CLAIMED, DeliveryStatus.SENT)),
            or_(Delivery.provider_sid.is_(None), Delivery.provider_sid == message_sid),
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()
    if row is None:
        return CallbackOutcome(False, delivery.alert_id)  # pending again, or already final
    if error_code == whatsapp.RATE_LIMITED:
        _send_again(row, Channel.WHATSAPP, message_sid, now)
        _reopen(session, {row.alert_id})
        return CallbackOutcome(True, row.alert_id, row.batch, slow_down=True)
    if target is DeliveryStatus.UNDELIVERABLE:
        mark_subscribers(session, [row.subscriber_id], target, now, Channel.WHATSAPP)
    on_sms = session.scalar(select(Subscriber.status).where(Subscriber.id == row.subscriber_id))
    if on_sms is SubscriberStatus.ACTIVE:
        _send_again(row, Channel.SMS, message_sid, now, error_code)
        _reopen(session, {row.alert_id})
        return CallbackOutcome(True, row.alert_id, resend_batch=row.batch)
    row.status, row.provider_sid = target, message_sid
    row.lease_token = row.lease_expires_at = row.sending_at = None
    row.error_code = None if error_code is None else str(error_code)
    row.updated_at = now
    return CallbackOutcome(True, row.alert_id)


def _callback_target(
    status: CallbackStatus, error_code: int | None, channel: Channel = Channel.SMS
) -> tuple[DeliveryStatus | None, tuple[DeliveryStatus, ...]]:
    before_sent = (DeliveryStatus.PENDING, DeliveryStatus.CLAIMED, DeliveryStatus.EXPIRED)
    if status in ACCEPTED_BY_PROVIDER:
        return DeliveryStatus.SENT, before_sent
    if status in REACHED_PHONE:
        return DeliveryStatus.DELIVERED, (*before_sent, DeliveryStatus.SENT, DeliveryStatus.FAILED)
    if status in NOT_DELIVERED:
        return status_for_error(error_code, channel), (*before_sent, DeliveryStatus.SENT)
    return None, ()


def forget_provider_ids(
    session: Session,
    now: datetime,
    after: timedelta,
    *,
    redact: ShreddingCipher | None,
    limit: int = 1000,
) -> int:
    """Clear the provider's message id of deliveries whose callbacks are done.

    A delivery's id names the provider's copy of the message (recipient and text), so it
    is kept only while a status callback may still need it: ``after`` (the alert's
    validity and some settling time) past its last change. With ``redact`` (the cipher
    that seals it), the provider is asked to delete that message; the redaction holds
    the id, sealed, until then.
    Its times are kept to the minute from then on. Returns how many were forgotten.
    """
    deliveries = session.scalars(
        select(Delivery)
        .where(
            or_(Delivery.provider_sid.is_not(None), Delivery.superseded_sids.is_not(None)),
            Delivery.status.not_in((DeliveryStatus.PENDING, DeliveryStatus.CLAIMED)),
            Delivery.updated_at < now - after,
        )
        .limit(limit)
    ).all()
    for delivery in deliveries:
        for sid in (delivery.provider_sid, *(delivery.superseded_sids or ())):
            if redact is not None and sid is not None:
                redaction.schedule(session, redact, sid, now, now)
        delivery.provider_sid, delivery.superseded_sids = None, None
        delivery.provider_forgotten_at = to_the_minute(now)
        delivery.created_at = to_the_minute(delivery.created_at)
        delivery.updated_at = to_the_minute(delivery.updated_at)
        for column in ("sent_at", "sending_at"):
            moment = getattr(delivery, column)
            if moment is not None:
                setattr(delivery, column, to_the_minute(moment))
    return len(deliveries)


# --- the reaper's queries -------------------------------------------------------------------


def expire_overdue(session: Session, now: datetime) -> int:
    """Drop unsent deliveries of alerts past their validity: late is worse than never."""
    overdue = select(Alert.id).where(
        Alert.status == AlertStatus.APPROVED, Alert.expires_at.is_not(None), Alert.expires_at < now
    )
    result = session.execute(
        update(Delivery)
        .where(Delivery.alert_id.in_(overdue), Delivery.status == DeliveryStatus.PENDING)
        .values(status=DeliveryStatus.EXPIRED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def release_expired_leases(session: Session, now: datetime) -> set[tuple[int, int]]:
    """Take back batches whose worker vanished (their lease ran out) with what they had
    in flight; return the (alert, batch) pairs to re-send."""
    leases = batch_leases.c
    lapsed = session.execute(
        select(leases.alert_id, leases.batch, leases.lease_token).where(
            leases.lease_token.is_not(None), leases.lease_expires_at < now
        )
    ).all()
    claimed_alone = claimed_under_own_lease(now)
    batches = {(int(a), int(b)) for a, b, _ in lapsed} | {
        (int(a), int(b))
        for a, b in session.execute(
            select(Delivery.alert_id, Delivery.batch).where(claimed_alone).distinct()
        )
    }
    if lapsed:
        release(
            session,
            or_(*(leased_to(int(a), int(b), str(token)) for a, b, token in lapsed)),
            now,
        )
        let_go_batches(session, [str(token) for _, _, token in lapsed])
    release(session, claimed_alone, now)
    return batches


def leased_to(alert_id: int, batch: int, token: str) -> ColumnElement[bool]:
    """The rows of a batch claimed under its lease ``token``: found by (alert, batch),
    an index every delivery is in, not by scanning for the token."""
    return and_(
        Delivery.alert_id == alert_id, Delivery.batch == batch, Delivery.lease_token == token
    )


def claimed_under_own_lease(now: datetime) -> ColumnElement[bool]:
    """Rows claimed before migration 0026, which carry their own lease, now lapsed. The
    IS NOT NULL term is what lets SQLite use the partial index on it (PostgreSQL infers
    it from the comparison)."""
    return and_(
        Delivery.status == DeliveryStatus.CLAIMED,
        Delivery.lease_expires_at.is_not(None),
        Delivery.lease_expires_at < now,
    )


def take_batch(
    session: Session, alert_id: int, batch: int, token: str, until: datetime, now: datetime
) -> bool:
    """Lease one batch of an alert to ``token`` until ``until``, unless a live lease
    holds it (another job is sending it). One row, whatever the batch holds."""
    leases = batch_leases.c
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    taken = session.execute(
        dialect.insert(batch_leases)
        .values(alert_id=alert_id, batch=batch, lease_token=token, lease_expires_at=until)
        .on_conflict_do_update(
            index_elements=[leases.alert_id, leases.batch],
            set_={"lease_token": token, "lease_expires_at": until},
            where=or_(leases.lease_token.is_(None), leases.lease_expires_at < now),
        )
        .returning(leases.lease_token)
    )
    return taken.first() is not None


def renew_batch(session: Session, token: str, until: datetime) -> None:
    session.execute(
        update(batch_leases)
        .where(batch_leases.c.lease_token == token)
        .values(lease_expires_at=until)
    )


def let_go_batches(session: Session, tokens: Sequence[str]) -> None:
    session.execute(
        update(batch_leases)
        .where(batch_leases.c.lease_token.in_(tokens))
        .values(lease_token=None, lease_expires_at=None)
    )


def release(session: Session, which: ColumnElement[bool], now: datetime) -> int:
    """Put claimed rows back to pending, for a later job to send.

    A row marked ``sending_at`` may have reached the provider before its worker lost
    track of it: sending it again may duplicate it, so it is counted in
    ``unknown_outcomes``.
    """
    result = session.execute(
        update(Delivery)
        .where(which, Delivery.status == DeliveryStatus.CLAIMED)
        .values(
            status=DeliveryStatus.PENDING,
            **LEASE_CLEARED,
            unknown_outcomes=Delivery.unknown_outcomes
            + case((Delivery.sending_at.is_not(None), 1), else_=0),
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def give_up_exhausted(session: Session, now: datetime) -> int:
    """Fail deliveries claimed MAX_ATTEMPTS times: a broken row must not loop forever."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.status == DeliveryStatus.PENDING, Delivery.attempts >= MAX_ATTEMPTS)
        .values(status=DeliveryStatus.FAILED, error_code="attempts", updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def release_held(session: Session, alert_id: int) -> range:
    """The held batches of an alert, once its own area's are all handed over (the
    provider took them, or they ended otherwise) and its ledger is whole; empty while
    any is still waiting.

    One conditional UPDATE clears the hold, so of several workers finishing the last own-
    area batches at once exactly one gets the range to enqueue.
    """
    held = session.scalar(select(Alert.held_from_batch).where(Alert.id == alert_id))
    if held is None:
        return range(0)
    waiting = (
        select(Delivery.id)
        .where(
            Delivery.alert_id == alert_id,
            Delivery.batch < held,
            Delivery.status.in_(UNFINISHED),
        )
        .exists()
    )
    cleared = session.execute(
        update(Alert)
        .where(
            Alert.id == alert_id,
            Alert.held_from_batch == held,
            ~waiting,
            ~ledger_unfinished(alert_id),  # the adjacent areas' batches are all written
        )
        .values(held_from_batch=None)
        .execution_options(synchronize_session=False)
    )
    if cleared.rowcount != 1:  # type: ignore[attr-defined]
        return range(0)
    last = session.scalar(select(func.max(Delivery.batch)).where(Delivery.alert_id == alert_id))
    return range(held, int(last if last is not None else held - 1) + 1)


def waiting_batches(
    session: Session, idle_since: datetime, now: datetime | None = None
) -> set[tuple[int, int]]:
    """(alert, batch) pairs with rows pending and untouched since ``idle_since``, except
    batches held back behind the incident's own area, and an announcement's before its
    time (quiet hours): this is also how those are sent when their time comes."""
    now = now or utcnow()
    leases = batch_leases.c
    being_sent = (
        select(leases.batch)
        .where(
            leases.alert_id == Delivery.alert_id,
            leases.batch == Delivery.batch,
            leases.lease_expires_at >= now,
        )
        .exists()
    )
    rows = session.execute(
        select(Delivery.alert_id, Delivery.batch)
        .join(Alert, Alert.id == Delivery.alert_id)
        .where(
            Alert.status == AlertStatus.APPROVED,
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.updated_at < idle_since,
            ~being_sent,  # a job holds it: its rows wait for their chunk
            or_(Alert.held_from_batch.is_(None), Delivery.batch < Alert.held_from_batch),
            or_(Alert.send_after.is_(None), Alert.send_after <= now),
        )
        .distinct()
    )
    return {(int(a), int(b)) for a, b in rows}


def announcement_ids(session: Session, alert_ids: Iterable[int]) -> set[int]:
    """Which of these alerts are announcements (sent on the bulk queue)."""
    wanted = list(alert_ids)
    if not wanted:
        return set()
    return set(
        session.scalars(
            select(Alert.id).where(Alert.id.in_(wanted), Alert.kind == AlertKind.ANNOUNCEMENT)
        )
    )


def open_alert_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Alert.id).where(Alert.status == AlertStatus.APPROVED)))
