"""Announcements: trainings, meetings, community events — with their own consent.

A network that only texts during raids is forgotten between them; but an alert number
that sends party invitations teaches people to ignore it. So announcements go only to
people who said yes to them separately (JOIN NEWS / UNIRSE NOTICIAS, never implied by
alert consent), never during the night (quiet hours, local time), at most a few times a
week per person, on the bulk queue behind alerts and replies. One may ask for an answer
(1 = yes, 2 = no): the answers are counted, never listed, and never open a report.

They travel as alerts of kind ``announcement`` (the same ledger, batches, leases, pacing
and status callbacks); ``broadcast.audience`` is where consent and the weekly cap are
enforced, in the one query that decides who gets an announcement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from rapidresponse import audit, broadcast
from rapidresponse.composer import gsm_fold
from rapidresponse.display import visible_text
from rapidresponse.messages import text
from rapidresponse.models import (
    Alert,
    AlertKind,
    Delivery,
    Language,
    Subscriber,
    SubscriberStatus,
    utcnow,
)
from rapidresponse.refusals import N_, Refused

MAX_BODY_CHARS = 300  # as written, per language, before the answer and stop lines
VALIDITY = timedelta(hours=6)  # an invitation for this morning is worthless tonight
RSVP_WINDOW = timedelta(days=7)  # how long after it was sent an answer still counts
WEEK = timedelta(days=7)
RSVP_ANSWERS = ("yes", "no")


class AnnouncementRefused(Refused):
    """An announcement that cannot be sent as written; its message says why."""


def next_send_time(now: datetime, zone: ZoneInfo, quiet: tuple[time, time] | None) -> datetime:
    """``now``, or the end of the quiet hours (local time in ``zone``) it falls in."""
    if quiet is None:
        return now
    start, end = quiet
    local = now.astimezone(zone)
    clock = local.time()
    across_midnight = start > end
    inside = (clock >= start or clock < end) if across_midnight else start <= clock < end
    if not inside:
        return now
    day = local.date() + timedelta(days=1) if across_midnight and clock >= start else local.date()
    return datetime.combine(day, end, tzinfo=zone).astimezone(UTC)


def clean_body(body: str) -> str:
    """One paragraph of the coordinator's words: nothing invisible, single spaces, folded
    to GSM-7 where a spelling exists (as alerts are: "sábado" in UCS-2 would triple the
    cost of every text)."""
    return gsm_fold(" ".join(visible_text(body).split()))


def compose(language: Language, body: str, asks_rsvp: bool, signature: str) -> str:
    """The text people get: the words, how to answer, how to stop these, who sends it."""
    parts = [body]
    if asks_rsvp:
        parts.append(text(language, "sms.announcement_rsvp"))
    parts += [text(language, "sms.announcement_stop"), signature]
    return " ".join(parts)


def draft(
    session: Session,
    *,
    bodies: Mapping[str, str],
    area_ids: Sequence[int],
    asks_rsvp: bool,
    signatures: Mapping[str, str],
    staff_id: int,
) -> Alert:
    """A draft announcement, in each language written (English at least).

    Raises:
        AnnouncementRefused: no English text, or a text too long.
    """
    cleaned = {lang: body for lang, body in _cleaned(bodies) if body}
    if Language.EN.value not in cleaned:
        raise AnnouncementRefused(N_("Write the announcement in English at least."))
    if any(len(body) > MAX_BODY_CHARS for body in cleaned.values()):
        raise AnnouncementRefused(
            N_("An announcement is at most %(limit)d characters."), limit=MAX_BODY_CHARS
        )
    texts = {
        lang: compose(Language(lang), body, asks_rsvp, signatures[lang])
        for lang, body in cleaned.items()
    }
    alert = broadcast.draft(
        session,
        kind=AlertKind.ANNOUNCEMENT,
        texts=texts,
        area_ids=area_ids,
        created_by_id=staff_id,
    )
    alert.asks_rsvp = asks_rsvp
    return alert


def _cleaned(bodies: Mapping[str, str]) -> list[tuple[str, str]]:
    return [(lang, clean_body(body)) for lang, body in bodies.items()]


def open_rsvp(session: Session, subscriber_id: int, now: datetime) -> Delivery | None:
    """The newest announcement asking for an answer that reached this person in the last
    week (answered already or not: a second answer is a change of mind, counted once)."""
    return session.scalar(
        select(Delivery)
        .join(Alert, Alert.id == Delivery.alert_id)
        .where(
            Delivery.subscriber_id == subscriber_id,
            Alert.kind == AlertKind.ANNOUNCEMENT,
            Alert.asks_rsvp.is_(True),
            Delivery.sent_at > now - RSVP_WINDOW,
            broadcast.got_it(),
        )
        .order_by(Delivery.sent_at.desc())
        .limit(1)
    )


def answer(session: Session, delivery: Delivery, said: str) -> None:
    """Count one answer (audited by announcement and answer only: never who)."""
    if said not in RSVP_ANSWERS:
        raise ValueError(f"an answer is one of {RSVP_ANSWERS}")
    delivery.rsvp = said
    audit.record(
        session,
        actor="subscriber",
        action="announcement.answered",
        subject=f"alert:{delivery.alert_id}",
        details={"answer": said},
    )


def rsvp_counts(session: Session, alert_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Answers per announcement: {alert id: {"yes": n, "no": m}}. Counts, never names."""
    counts: dict[int, dict[str, int]] = {i: dict.fromkeys(RSVP_ANSWERS, 0) for i in alert_ids}
    rows = session.execute(
        select(Delivery.alert_id, Delivery.rsvp, func.count())
        .where(Delivery.alert_id.in_(alert_ids), Delivery.rsvp.is_not(None))
        .group_by(Delivery.alert_id, Delivery.rsvp)
    )
    for alert_id, said, count in rows:
        counts[alert_id][str(said)] = int(count)
    return counts


def consenting(session: Session) -> int:
    """How many active subscribers take announcements (the board shows it)."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(Subscriber)
            .where(
                Subscriber.news_consent_at.is_not(None),
                Subscriber.status == SubscriberStatus.ACTIVE,
            )
        )
        or 0
    )


def set_consent(subscriber: Subscriber, wanted: bool) -> None:
    """Record the separate yes (or its withdrawal)."""
    subscriber.news_consent_at = utcnow() if wanted else None
