"""Sending a broadcast: batch jobs, each sending up to a thousand deliveries concurrently.

One job per batch of the ledger (see ``rapidresponse.broadcast``). A job:

1. claims its batch's pending rows with one conditional UPDATE and a random lease token;
2. keeps up to ``SEND_CONCURRENCY`` requests in flight. Rows are taken a chunk at a
   time: the job re-checks who has opted out, marks the chunk ``sending_at`` (rows whose
   outcome becomes unknowable if this process dies now), renews the lease and takes
   send slots from the shared pacer. Each send is retried on 429/5xx/timeouts with
   backoff and Retry-After; provider ids are recorded a window at a time, in one
   transaction;
3. releases what it could not send and fails loudly (RQ's failed registry), so the
   reaper sends it again later.

Jobs carry (alert id, batch number) only; numbers and texts are read from the database.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.registry import ScheduledJobRegistry
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from dispatch.pacer import Pacer
from dispatch.queues import (
    FAILURE_TTL_SECONDS,
    RESULT_TTL_SECONDS,
    QueueName,
    check_job_arguments,
    enqueue_in,
    queue,
)
from dispatch.senders import AsyncSender, SendError, make_async_sender
from dispatch.services import Services, current
from dispatch.status_queue import StatusCallback
from rapidresponse import broadcast, config, whatsapp
from rapidresponse.config import Settings
from rapidresponse.crypto import Purpose
from rapidresponse.models import (
    Alert,
    Channel,
    Delivery,
    DeliveryStatus,
    Subscriber,
    SubscriberStatus,
    WhatsAppTemplate,
    utcnow,
)
from rapidresponse.sms import segment

log = logging.getLogger(__name__)

TRIES = 4  # per message within one job, for 429 / 5xx / timeouts
WHATSAPP_RATE_HOLD = 5.0  # seconds the WhatsApp lane pauses after a 63018 (rate exceeded)
BACKOFF_SECONDS = (0.5, 1.0, 2.0)
MAX_RETRY_AFTER = 30.0  # a longer wait is better spent back in the queue
PROGRESS_EVERY = 1.0  # seconds between live progress events of one alert, across workers
PROGRESS_SLOT = "rr:progress:"
PROGRESS_TRAILING = "rr:progress-trailing:"
PACED_CHUNK_SECONDS = 10  # at a slow rate a chunk holds at most this much sending
# Outcomes are written at least this often, however few finished since: at a slow rate a
# full window takes minutes, and the board would sit at "0 sent" then jump to 100 %.
RECORD_EVERY = 1.0
JOB_ID_PREFIX = "send-"

_DELIVERIES = broadcast.DELIVERIES


class BatchIncomplete(Exception):
    """Some deliveries could not be sent in this run; they are pending again."""


@dataclass(frozen=True)
class BatchLease:
    alert_id: int
    batch: int
    token: str


@dataclass(frozen=True)
class Recipient:
    delivery_id: int
    subscriber_id: int
    to: str = field(repr=False)
    body: str = field(repr=False)
    segments: int
    channel: Channel = Channel.SMS
    # WhatsApp's approved template for this kind and language; None: free text.
    content: whatsapp.Content | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Lane:
    """One channel's way out: its sender and its own pace."""

    sender: AsyncSender
    pacer: Pacer | None

    def slots(self, recipients: Sequence[Recipient]) -> list[float]:
        """One send slot each (WhatsApp counts messages, SMS counts segments)."""
        if self.pacer is None or not recipients:
            return [0.0] * len(recipients)
        return self.pacer.reserve([_units(r) for r in recipients])


def _units(recipient: Recipient) -> int:
    return 1 if recipient.channel is Channel.WHATSAPP else recipient.segments


@dataclass
class Result:
    recipient: Recipient
    sid: str | None = None
    failed_as: DeliveryStatus | None = None  # a permanent refusal
    error_code: int | None = None
    unknown_outcome: bool = False  # an earlier try may have reached the provider


@dataclass
class Tally:
    sent: int = 0
    failed: int = 0
    expired: int = 0  # never sent: the alert's validity ran out first
    released: int = 0
    skipped: int = 0
    fell_back: int = 0  # refused by WhatsApp, pending again by SMS

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "expired": self.expired,
            "released": self.released,
            "skipped": self.skipped,
            "fell_back": self.fell_back,
        }


# --- enqueueing ----------------------------------------------------------------------------


def enqueue_batches(
    redis: Redis,
    alert_id: int,
    batches: Iterable[int],
    timeout: int,
    name: QueueName = QueueName.ALERTS,
) -> int:
    """Enqueue one ``send_batch`` job per batch, all in one Redis pipeline (alerts on their
    own queue; announcements on the bulk one, behind alerts and replies)."""
    alerts = queue(name, redis)
    datas = []
    for batch in batches:
        check_job_arguments((alert_id, batch))
        datas.append(
            Queue.prepare_data(
                send_batch,
                args=(alert_id, batch),
                job_id=f"{JOB_ID_PREFIX}{alert_id}-{batch}-{secrets.token_hex(4)}",
                timeout=timeout,
                result_ttl=RESULT_TTL_SECONDS,
                failure_ttl=FAILURE_TTL_SECONDS,
            )
        )
    if datas:
        with redis.pipeline() as pipe:
            alerts.enqueue_many(datas, pipeline=pipe)
            pipe.execute()
    return len(datas)


def job_timeout(services: Services) -> int:
    # A batch may wait on the pacer behind other workers; it never outlives its alert.
    return max(300, services.settings.alert_validity_minutes * 60)


def waiting_job_ids(redis: Redis) -> list[str]:
    """Ids of every job waiting on the broadcast queues or scheduled for later there."""
    job_ids = []
    for name in (QueueName.ALERTS, QueueName.BULK):
        waiting = queue(name, redis)
        job_ids += [*waiting.get_job_ids(), *ScheduledJobRegistry(queue=waiting).get_job_ids()]  # type: ignore[no-untyped-call]
    return job_ids


def queued_batches(redis: Redis, job_ids: list[str] | None = None) -> set[tuple[int, int]]:
    """(alert, batch) of every send job waiting in a queue or scheduled for later
    (among ``job_ids``, when the caller has read them already)."""
    found = set()
    for job_id in waiting_job_ids(redis) if job_ids is None else job_ids:
        if job_id.startswith(JOB_ID_PREFIX):
            alert, batch, _ = job_id[len(JOB_ID_PREFIX) :].split("-", 2)
            found.add((int(alert), int(batch)))
    return found


# --- the job ---------------------------------------------------------------------------------


def send_batch(alert_id: int, batch: int) -> dict[str, int]:
    """Send what is pending in one batch of one alert. Returns counts, for RQ's record.

    Raises:
        BatchIncomplete: some deliveries stayed unsent after retries (they are pending
            again, and the reaper re-enqueues them).
    """
    services = current()
    lease = BatchLease(alert_id, batch, uuid.uuid4().hex)
    if not claim_batch(services, lease):
        # Nothing to send (sent already, or failed before sending: the daily WhatsApp
        # tier): what waits on this batch need not wait for the reaper.
        finish_alert_if_done(services, alert_id)
        return Tally().as_dict()
    try:
        tally = asyncio.run(_send_claimed(services, lease))
    finally:
        # Anything still claimed by us was not sent (or its outcome is unknown): free it.
        with services.database.session() as session:
            released = broadcast.release(
                session, broadcast.leased_to(alert_id, batch, lease.token), utcnow()
            )
            broadcast.let_go_batches(session, [lease.token])
        finish_alert_if_done(services, alert_id)
    if tally.fell_back:
        resend(services, alert_id, batch)
    tally.released += released
    if tally.released:
        raise BatchIncomplete(
            f"alert {alert_id} batch {batch}: {tally.released} deliveries left for a retry"
        )
    return tally.as_dict()


def resend(services: Services, alert_id: int, batch: int) -> None:
    """Send a batch again now (WhatsApp refusals became SMS), on its alert's lane; if
    Redis is away, the reaper finds its pending rows."""
    with services.database.session() as session:
        bulk = broadcast.announcement_ids(session, [alert_id])
    lane = QueueName.BULK if bulk else QueueName.ALERTS
    try:
        enqueue_batches(services.redis, alert_id, [batch], job_timeout(services), lane)
    except (RedisError, OSError) as error:
        log.warning("alert %s: SMS fallback not enqueued (%s)", alert_id, type(error).__name__)


def claim_batch(services: Services, lease: BatchLease) -> int:
    """Lease the batch (one row; the reaper takes back a lease that runs out) and count
    its pending rows, which are claimed chunk by chunk as they leave. 0: nothing to
    send, or another job is sending it."""
    now = utcnow()
    with services.database.session() as session:
        until = now + _lease_length(services)
        if not broadcast.take_batch(session, lease.alert_id, lease.batch, lease.token, until, now):
            return 0
        pending = session.scalar(
            select(func.count()).where(
                Delivery.alert_id == lease.alert_id,
                Delivery.batch == lease.batch,
                Delivery.status == DeliveryStatus.PENDING,
            )
        )
        if not pending:
            broadcast.let_go_batches(session, [lease.token])
        return int(pending or 0)


def _lease_length(services: Services) -> timedelta:
    return timedelta(seconds=services.settings.delivery_lease_seconds)


async def _send_claimed(services: Services, lease: BatchLease) -> Tally:
    tally = Tally()
    with services.database.session() as session:
        alert = session.get_one(Alert, lease.alert_id)
        expires_at = alert.expires_at
        bodies = broadcast.texts_of(services.cipher, alert)
        templates = whatsapp.approved_templates(session, alert.kind)
        recipients = _recipients(services, session, lease, bodies, templates) if bodies else []
    now = utcnow()
    # Past its validity, or its text already erased with its incident: dropped, not sent.
    if not bodies or (expires_at is not None and now >= expires_at):
        tally.expired += _finish_all(services, lease, DeliveryStatus.EXPIRED)
        return tally
    # Every lane there is, whatever the batch holds now: a STOP on one channel since the
    # ledger was written moves a row to the other one (see _mark_sending).
    lanes = {channel: _lane(services, channel) for channel in _channels(services.settings)}
    try:
        await _SlidingWindow(services, lease, lanes, expires_at, tally).run(recipients)
    finally:
        for lane in lanes.values():
            await lane.sender.close()
    return tally


def _channels(settings: Settings) -> list[Channel]:
    return list(Channel) if config.whatsapp_alerts(settings) else [Channel.SMS]


def whatsapp_batch(settings: Settings) -> int | None:
    """The WhatsApp lane's batch size for ``broadcast.approve`` (None: no WhatsApp)."""
    if not config.whatsapp_alerts(settings):
        return None
    return broadcast.batch_size(settings.whatsapp_send_rate)


def _lane(services: Services, channel: Channel) -> Lane:
    sender = make_async_sender(
        services.settings,
        services.database,
        services.cipher,
        services.index,
        services.redis,
        channel,
    )
    pacer = services.whatsapp_pacer if channel is Channel.WHATSAPP else services.pacer
    return Lane(sender, pacer)


class _SlidingWindow:
    """Keeps up to SEND_CONCURRENCY sends in flight, however slow some of them are.

    A chunk is marked ``sending_at`` (and takes its pacer slots) as the window has
    room for it, so at most two windows' worth of rows can be left with an unknowable
    outcome by a kill. Outcomes are written before each chunk is marked (about a window
    at a time), and every RECORD_EVERY seconds, so a paced send's progress moves as
    results come in.
    """

    def __init__(
        self,
        services: Services,
        lease: BatchLease,
        lanes: dict[Channel, Lane],
        expires_at: datetime | None,
        tally: Tally,
    ) -> None:
        self.services = services
        self.lease = lease
        self.lanes = lanes
        self.expires_at = expires_at
        self.tally = tally
        self.window = services.settings.send_concurrency
        self.room = asyncio.Semaphore(self.window)
        self.in_flight: set[asyncio.Task[Result]] = set()
        self.finished: list[asyncio.Task[Result]] = []
        self.renewed_at = time.monotonic()  # the claim set the lease
        # The lease (one row) is renewed when a third of it has gone, with a chunk's
        # marking or by the recorder below, so that it never runs out while this job sends.
        self.renew_every = services.settings.delivery_lease_seconds / 3

    async def run(self, recipients: Sequence[Recipient]) -> None:
        recorder = asyncio.create_task(self._record_every(RECORD_EVERY))
        try:
            await self._send_all(recipients)
        finally:
            recorder.cancel()
            with suppress(asyncio.CancelledError):
                await recorder  # re-raises what broke in it (a bug in a send)
        self._record_finished()

    async def _record_every(self, seconds: float) -> None:
        # _record_finished never awaits, so it cannot interleave with the sending loop's.
        while True:
            await asyncio.sleep(seconds)
            if self.finished:
                self._record_finished()
            if self._lease_is_due():
                # Sends can wait longer than a chunk's marking lets the lease run (a
                # provider's Retry-After, WhatsApp's rate limit holding the lane): the
                # lease lasts while this job does, so the reaper never takes back (and
                # sends twice) what is still in flight here.
                _renew_lease(self.services, self.lease)
                self.renewed_at = time.monotonic()

    async def _send_all(self, recipients: Sequence[Recipient]) -> None:
        loop = asyncio.get_running_loop()
        for chunk in _chunks(recipients, _chunk_size(self.services)):
            # Written before the next chunk is marked: marked rows without an outcome
            # are then at most the window in flight plus this chunk (what a kill leaves).
            self._record_finished()
            renew = self._lease_is_due()
            sendable = _mark_sending(self.services, self.lease, chunk, renew=renew)
            if renew:
                self.renewed_at = time.monotonic()
            self.tally.skipped += len(chunk) - len(sendable)
            waits = self._slots(sendable)
            reserved_at = loop.time()
            validity = None if self.expires_at is None else _seconds_left(self.expires_at)
            for recipient, wait in zip(sendable, waits, strict=True):
                await self.room.acquire()
                lane = self.lanes[recipient.channel]
                task = asyncio.create_task(_send_one(lane, recipient, reserved_at + wait, validity))
                self.in_flight.add(task)
                task.add_done_callback(self._done)
        if self.in_flight:
            await asyncio.wait(self.in_flight)

    def _lease_is_due(self) -> bool:
        return time.monotonic() - self.renewed_at > self.renew_every

    def _slots(self, sendable: Sequence[Recipient]) -> list[float]:
        """Each recipient's wait, from its own channel's pacer."""
        waits: dict[int, float] = {}
        for channel, lane in self.lanes.items():
            mine = [r for r in sendable if r.channel is channel]
            waits.update(zip((r.delivery_id for r in mine), lane.slots(mine), strict=True))
        return [waits[r.delivery_id] for r in sendable]

    def _done(self, task: asyncio.Task[Result]) -> None:
        self.in_flight.discard(task)
        self.finished.append(task)
        self.room.release()

    def _record_finished(self) -> None:
        tasks, self.finished = self.finished, []
        if not tasks:
            return
        # .result() re-raises a bug in a send; the job's finally releases the rows.
        _record(self.services, self.lease, [task.result() for task in tasks], self.tally)
        progress_hint(self.services, self.lease.alert_id)


def _recipients(
    services: Services,
    session: Session,
    lease: BatchLease,
    bodies: dict[str, str],
    templates: dict[str, WhatsAppTemplate],
) -> list[Recipient]:
    """The batch's pending rows with their numbers and texts (opt-outs are checked, and
    rows claimed, per chunk)."""
    segments = {language: segment(text).segments for language, text in bodies.items()}
    # The template of the text's language frames that text: one per language, not per row.
    contents = {
        language: whatsapp.content(templates[language], text)
        for language, text in bodies.items()
        if language in templates
    }
    rows = session.execute(
        select(
            Delivery.id,
            Delivery.subscriber_id,
            Delivery.language,
            Subscriber.phone_sealed,
            Delivery.channel,
        )
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(
            Delivery.alert_id == lease.alert_id,
            Delivery.batch == lease.batch,
            Delivery.status == DeliveryStatus.PENDING,
        )
        .order_by(Delivery.id)
    ).all()
    recipients = []
    for delivery_id, subscriber_id, language, sealed, channel in rows:
        # A language without its own text gets English rather than nothing.
        lang = language.value if language.value in bodies else "en"
        recipients.append(
            Recipient(
                delivery_id=delivery_id,
                subscriber_id=subscriber_id,
                to=services.cipher.decrypt(sealed, Purpose.SUBSCRIBER_PHONE),
                body=bodies[lang],
                segments=segments[lang],
                channel=channel,
                content=contents.get(lang),
            )
        )
    return recipients


def _chunks(items: Sequence[Recipient], size: int) -> Iterator[Sequence[Recipient]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _chunk_size(services: Services) -> int:
    window = services.settings.send_concurrency
    rates = [services.settings.send_rate]
    if config.whatsapp_alerts(services.settings):
        rates.append(services.settings.whatsapp_send_rate)
    slowest = min((rate for rate in rates if rate is not None), default=None)
    if slowest is None:
        return window
    # A chunk's slots are reserved at once: keep its wait well inside the lease, on the
    # slower lane too (a chunk may hold both).
    return max(1, min(window, int(slowest * PACED_CHUNK_SECONDS)))


def _seconds_left(expires_at: datetime) -> int:
    return max(1, int((expires_at - utcnow()).total_seconds()))


def _mark_sending(
    services: Services, lease: BatchLease, chunk: Sequence[Recipient], *, renew: bool
) -> list[Recipient]:
    """Close rows whose subscriber left, claim the rest as in flight in the same write
    (and renew the batch's lease, when ``renew``).

    The opt-out check is made here, for the whole chunk, immediately before the
    requests leave: a STOP that arrived since the ledger was written is honoured, on
    the channel it came on. Someone who stopped one channel but is still active on the
    other gets the alert there instead (the row's channel changes; still one row).
    """
    now = utcnow()
    with services.database.session() as session:
        if renew:
            _renew(session, services, lease, now)
        standing = {
            subscriber_id: {Channel.SMS: sms, Channel.WHATSAPP: on_whatsapp}
            for subscriber_id, sms, on_whatsapp in session.execute(
                select(Subscriber.id, Subscriber.status, Subscriber.whatsapp_status).where(
                    Subscriber.id.in_({r.subscriber_id for r in chunk}),
                )
            )
        }
        going, closed = _route(chunk, standing, services.settings)
        for delivery_status, ids in closed.items():
            _finish_ids(session, ids, delivery_status, now)
        switched = _switched(chunk, going)
        for channel in Channel:
            moved = [r.delivery_id for r in switched if r.channel is channel]
            if moved:
                _set_channel(session, moved, channel)
        marked = set(
            session.scalars(
                update(Delivery)
                .where(
                    Delivery.id.in_([r.delivery_id for r in going]),
                    Delivery.status == DeliveryStatus.PENDING,
                )
                .values(
                    status=DeliveryStatus.CLAIMED,
                    lease_token=lease.token,
                    sending_at=now,
                    attempts=Delivery.attempts + 1,
                    updated_at=now,
                )
                .returning(Delivery.id)
                .execution_options(synchronize_session=False)
            )
        )
    return [r for r in going if r.delivery_id in marked]


# A subscriber's standing on a channel -> what becomes of a delivery that cannot go there
# (nor by the other channel).
_CLOSED_AS = {
    SubscriberStatus.OPTED_OUT: DeliveryStatus.OPTED_OUT,
    SubscriberStatus.UNDELIVERABLE: DeliveryStatus.UNDELIVERABLE,
    SubscriberStatus.PAUSED: DeliveryStatus.OPTED_OUT,
    SubscriberStatus.NO_CONSENT: DeliveryStatus.OPTED_OUT,
}


def _route(
    chunk: Sequence[Recipient],
    standing: dict[int, dict[Channel, SubscriberStatus]],
    settings: Settings,
) -> tuple[list[Recipient], dict[DeliveryStatus, list[int]]]:
    """Who goes, on which channel; and who is closed, as what."""
    going: list[Recipient] = []
    closed: dict[DeliveryStatus, list[int]] = {}
    lanes = _channels(settings)
    for recipient in chunk:
        channels = standing.get(recipient.subscriber_id)
        if channels is None:
            continue  # erased since: its row went with it
        mine = channels[recipient.channel]
        if mine is SubscriberStatus.ACTIVE and recipient.channel in lanes:
            going.append(recipient)
            continue
        other = whatsapp.other(recipient.channel)
        if channels[other] is SubscriberStatus.ACTIVE and other in lanes:
            going.append(replace(recipient, channel=other))
            continue
        # No lane left for it (WHATSAPP_FROM removed since the ledger): failed, not stuck.
        gone = DeliveryStatus.FAILED if mine is SubscriberStatus.ACTIVE else _CLOSED_AS[mine]
        closed.setdefault(gone, []).append(recipient.delivery_id)
    return going, closed


def _switched(chunk: Sequence[Recipient], going: Sequence[Recipient]) -> list[Recipient]:
    before = {r.delivery_id: r.channel for r in chunk}
    return [r for r in going if before[r.delivery_id] is not r.channel]


def _set_channel(session: Session, ids: list[int], channel: Channel) -> None:
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), Delivery.status == DeliveryStatus.PENDING)
        .values(channel=channel)
        .execution_options(synchronize_session=False)
    )


def _renew_lease(services: Services, lease: BatchLease) -> None:
    with services.database.session() as session:
        _renew(session, services, lease, utcnow())


def _renew(session: Session, services: Services, lease: BatchLease, now: datetime) -> None:
    broadcast.renew_batch(session, lease.token, now + _lease_length(services))


def _finish_ids(session: Session, ids: list[int], status: DeliveryStatus, now: datetime) -> None:
    """Close rows not yet sent (their subscriber left) without sending them."""
    session.execute(
        update(Delivery)
        .where(Delivery.id.in_(ids), Delivery.status == DeliveryStatus.PENDING)
        .values(
            status=status,
            **broadcast.LEASE_CLEARED,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )


def _finish_all(services: Services, lease: BatchLease, status: DeliveryStatus) -> int:
    with services.database.session() as session:
        result = session.execute(
            update(Delivery)
            .where(
                Delivery.alert_id == lease.alert_id,
                Delivery.batch == lease.batch,
                Delivery.status == DeliveryStatus.PENDING,
            )
            .values(status=status, **broadcast.LEASE_CLEARED, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


# --- sending ---------------------------------------------------------------------------------


async def _send_one(lane: Lane, recipient: Recipient, due: float, validity: int | None) -> Result:
    """One message, retried on 429 / 5xx / timeouts; ``due`` is its pacer slot (loop time)."""
    loop = asyncio.get_running_loop()
    result = Result(recipient)
    pacer = lane.pacer
    on_whatsapp = recipient.channel is Channel.WHATSAPP
    for attempt in range(TRIES):
        await _wait_for_slot(pacer, recipient, due)
        try:
            result.sid = await lane.sender.send(
                recipient.to,
                recipient.body,
                callback_id=broadcast.callback_key(recipient.delivery_id),
                validity_period=validity,
                content=recipient.content if on_whatsapp else None,
            )
            return result
        except SendError as error:
            if on_whatsapp and whatsapp.refused_for_good(error.code):
                error.permanent = True  # for WhatsApp; SMS may still take it
            if on_whatsapp and error.code == whatsapp.RATE_LIMITED and pacer is not None:
                _hold_whatsapp(pacer)  # every worker's WhatsApp lane waits
            if error.permanent:
                result.failed_as = broadcast.status_for_error(error.code, recipient.channel)
                result.error_code = error.code
                return result
            result.unknown_outcome |= error.unknown_outcome
            result.error_code = error.code
            if attempt + 1 == TRIES or (error.retry_after or 0) > MAX_RETRY_AFTER:
                break
            wait = _backoff(attempt, error.retry_after)
            if pacer is not None:  # a retry is a send like any other: it takes a slot
                wait = max(wait, pacer.reserve([_units(recipient)])[0])
            due = loop.time() + wait
    return result  # neither sent nor refused: released for a later job


async def _wait_for_slot(pacer: Pacer | None, recipient: Recipient, due: float) -> None:
    """Sleep until the slot; a slot missed by more than a quarter interval is taken anew.

    A worker held up (CPU contention) would otherwise send its overdue messages all at
    once, next to another worker's on-time ones, and crowd a one-second window.
    """
    loop = asyncio.get_running_loop()
    while True:
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if pacer is None or loop.time() - due <= pacer.interval / 4:
            return
        due = loop.time() + pacer.reserve([_units(recipient)])[0]


def _backoff(attempt: int, retry_after: float | None) -> float:
    base = BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS) - 1)]
    jittered = base * random.uniform(0.5, 1.5)  # noqa: S311 - spreading retries, not secrets
    return max(jittered, retry_after or 0.0)


# --- recording -------------------------------------------------------------------------------


def _record(services: Services, lease: BatchLease, results: list[Result], tally: Tally) -> None:
    """Write every outcome of a chunk in one transaction (executemany per kind)."""
    now = utcnow()
    sent = [r for r in results if r.sid is not None]
    refused = [r for r in results if r.failed_as is not None]
    unsent = [r for r in results if r.sid is None and r.failed_as is None]
    owned = (_DELIVERIES.c.id == bindparam("b_id")) & (_DELIVERIES.c.lease_token == lease.token)
    fell_back = 0
    with services.database.session() as session:
        if sent:
            session.execute(
                update(_DELIVERIES)
                .where(owned, _DELIVERIES.c.status == DeliveryStatus.CLAIMED)
                .values(
                    status=DeliveryStatus.SENT,
                    provider_sid=bindparam("b_sid"),
                    sent_at=now,
                    updated_at=now,
                    **broadcast.LEASE_CLEARED,
                    unknown_outcomes=_DELIVERIES.c.unknown_outcomes + bindparam("b_unknown"),
                ),
                [
                    {
                        "b_id": r.recipient.delivery_id,
                        "b_sid": r.sid,
                        "b_unknown": int(r.unknown_outcome),
                    }
                    for r in sent
                ],
            )
        if refused:
            # First: what SMS can still carry is pending again, and no longer ours.
            fell_back = _fall_back(session, refused, now)
            session.execute(
                update(_DELIVERIES)
                .where(owned)
                .values(
                    status=bindparam("b_status"),
                    error_code=bindparam("b_code"),
                    updated_at=now,
                    **broadcast.LEASE_CLEARED,
                ),
                [
                    {
                        "b_id": r.recipient.delivery_id,
                        "b_status": r.failed_as,
                        "b_code": None if r.error_code is None else str(r.error_code),
                    }
                    for r in refused
                ],
            )
            for status in (DeliveryStatus.OPTED_OUT, DeliveryStatus.UNDELIVERABLE):
                for channel in Channel:
                    broadcast.mark_subscribers(
                        session,
                        [
                            r.recipient.subscriber_id
                            for r in refused
                            if r.failed_as is status and r.recipient.channel is channel
                        ],
                        status,
                        now,
                        channel,
                    )
        if unsent:
            _release_unsent(session, lease, unsent, now)
    tally.sent += len(sent)
    tally.failed += len(refused) - fell_back
    tally.fell_back += fell_back
    tally.released += len(unsent)
    for r in unsent:
        log.warning(
            "alert %s delivery %s: not sent after %d tries (error %s)",
            lease.alert_id,
            r.recipient.delivery_id,
            TRIES,
            r.error_code,
        )


def _fall_back(session: Session, refused: list[Result], now: datetime) -> int:
    """WhatsApp's refusals: pending again by SMS for those who consented to it (the rest
    keep their failure and its code)."""
    by_code: dict[int | None, list[int]] = {}
    for r in refused:
        if r.recipient.channel is Channel.WHATSAPP:
            by_code.setdefault(r.error_code, []).append(r.recipient.delivery_id)
    return sum(broadcast.fall_back_to_sms(session, ids, code, now) for code, ids in by_code.items())


def _release_unsent(
    session: Session, lease: BatchLease, unsent: list[Result], now: datetime
) -> None:
    session.execute(
        update(_DELIVERIES)
        .where(
            _DELIVERIES.c.id == bindparam("b_id"),
            _DELIVERIES.c.lease_token == lease.token,
            _DELIVERIES.c.status == DeliveryStatus.CLAIMED,
        )
        .values(
            status=DeliveryStatus.PENDING,
            **broadcast.LEASE_CLEARED,
            updated_at=now,
            unknown_outcomes=_DELIVERIES.c.unknown_outcomes + bindparam("b_unknown"),
        ),
        [{"b_id": r.recipient.delivery_id, "b_unknown": int(r.unknown_outcome)} for r in unsent],
    )


# --- progress --------------------------------------------------------------------------------


def publish_progress(services: Services, alert_id: int) -> None:
    """Count the alert's ledger and push the counts to the board."""
    try:
        with services.database.session() as session:
            counts = broadcast.progress(session, alert_id)
        services.live.emit("alert_progress", counts.as_event())
    except (RedisError, OSError) as error:  # progress is a hint; the ledger is the record
        log.warning("alert %s: progress not published (%s)", alert_id, error.__class__.__name__)


def release_held_batches(services: Services, alert_id: int) -> None:
    """Enqueue the adjacent areas' batches once the incident's own area is handed over.

    If Redis is away the hold is cleared all the same: the reaper enqueues them then.
    """
    with services.database.session() as session:
        held = broadcast.release_held(session, alert_id)
    if not held:
        return
    try:
        enqueue_batches(services.redis, alert_id, held, job_timeout(services))
    except (RedisError, OSError) as error:
        log.warning(
            "alert %s: adjacent areas not enqueued (%s); the reaper will",
            alert_id,
            error.__class__.__name__,
        )


def finish_alert_if_done(services: Services, alert_id: int) -> None:
    """Mark the alert complete once nothing is left (final counts, then the event);
    otherwise release what waited on the own area, and a throttled progress hint. Cheap:
    counting is not done on every call."""
    release_held_batches(services, alert_id)
    with services.database.session() as session:
        completed = broadcast.complete_if_done(session, alert_id, utcnow())
    if not completed:
        progress_hint(services, alert_id)
        return
    publish_progress(services, alert_id)
    try:
        services.live.emit("alert_complete", {"alert_id": alert_id})
    except (RedisError, OSError) as error:
        log.warning("alert %s: completion not published (%s)", alert_id, error.__class__.__name__)


def progress_hint(services: Services, alert_id: int) -> None:
    """Publish progress at most once per PROGRESS_EVERY per alert, whoever asks.

    Status callbacks arrive as fast as the broadcast goes: counting the ledger for every
    one of them would cost more than the callbacks themselves. A hint that falls inside
    the window is not dropped: it books one trailing publication at the window's end, so
    the last callbacks of an alert (its final 'delivered' counts) always reach the board.
    """
    window = int(PROGRESS_EVERY * 1000)
    try:
        due = services.redis.set(f"{PROGRESS_SLOT}{alert_id}", 1, nx=True, px=window)
        if not due and services.redis.set(f"{PROGRESS_TRAILING}{alert_id}", 1, nx=True, px=window):
            enqueue_in(
                services.redis,
                QueueName.REPLIES,
                timedelta(milliseconds=window),
                publish_progress_job,
                alert_id,
            )
    except (RedisError, OSError):
        return
    if due:
        publish_progress(services, alert_id)


def publish_progress_job(alert_id: int) -> None:
    """The trailing progress publication that ``progress_hint`` books."""
    publish_progress(current(), alert_id)


# --- status callbacks ------------------------------------------------------------------------


def apply_status_callback(
    services: Services,
    delivery_id: str,
    *,
    message_sid: str,
    status: broadcast.CallbackStatus,
    error_code: int | None,
) -> None:
    """One status callback, applied now (the simulator; the webhook when Redis is away)."""
    apply_status_callbacks(services, [StatusCallback(delivery_id, message_sid, status, error_code)])


def apply_status_callbacks(services: Services, callbacks: Sequence[StatusCallback]) -> None:
    """Status callbacks, in one transaction: the ledger first, then a progress hint for
    the board per alert that changed."""
    now = utcnow()
    with services.database.session() as session:
        outcomes = [
            broadcast.record_callback(
                session,
                callback.delivery_id,
                message_sid=callback.message_sid,
                status=callback.status,
                error_code=callback.error_code,
                now=now,
                channel=callback.channel,
            )
            for callback in callbacks
        ]
    changed = {o.alert_id for o in outcomes if o.changed and o.alert_id is not None}
    for alert_id in sorted(changed):
        progress_hint(services, alert_id)
    if any(o.slow_down for o in outcomes) and services.whatsapp_pacer is not None:
        _hold_whatsapp(services.whatsapp_pacer)
    resends = {
        (o.alert_id, o.resend_batch)
        for o in outcomes
        if o.changed and o.alert_id is not None and o.resend_batch is not None
    }
    for alert_id, batch in sorted(resends):
        resend(services, alert_id, batch)


def _hold_whatsapp(pacer: Pacer) -> None:
    try:
        pacer.hold(WHATSAPP_RATE_HOLD)
    except (RedisError, OSError) as error:
        log.warning("WhatsApp lane not slowed (%s)", type(error).__name__)
