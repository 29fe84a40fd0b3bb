"""Alerts from approval to completion: approving, follow-ups, and the reaper.

Approval commits the ledger first and enqueues afterwards. If Redis is unreachable at
that moment the alert is not lost: its rows sit pending in the database, and the
reaper (a scheduled job on the alerts queue) enqueues any batch that has pending rows
and no job waiting for it, and takes back rows whose worker died holding them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from contextlib import suppress
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from redis.exceptions import RedisError
from sqlalchemy import delete, func, insert, select
from sqlalchemy.orm import Session

from dispatch.broadcast import (
    enqueue_batches,
    finish_alert_if_done,
    job_timeout,
    publish_progress,
    queued_batches,
    waiting_job_ids,
    whatsapp_batch,
)
from dispatch.ledger import enqueue_ledger, first_rows, queued_ledgers, start_streaming
from dispatch.queues import QueueName, enqueue
from dispatch.services import Services, current
from rapidresponse import audit, broadcast
from rapidresponse.approvals import (
    ApprovalRules,
    ApprovalState,
    cap_reached,
    record_approval,
)
from rapidresponse.areas import adjacent_area_ids
from rapidresponse.composer import (
    TAKES_A_NOTE,
    Correcting,
    compose_all,
    notes_for_readers,
    signatures,
)
from rapidresponse.models import (
    Alert,
    AlertApproval,
    AlertKind,
    AlertStatus,
    Area,
    Incident,
    IncidentState,
    Report,
    alert_areas,
    utcnow,
)
from rapidresponse.refusals import N_, Refused
from rapidresponse.wording import wordings

log = logging.getLogger(__name__)


# A correction of the time names a moment within this long before it is written.
CORRECTED_TIME_WINDOW = timedelta(hours=24)


class NotFollowable(ValueError):
    """Follow-ups go to the recipients of an approved alert; this is not one."""


class DraftRefused(Refused):
    """A follow-up or a change to a draft that cannot be made as asked; says why."""


def incident_confirmed(services: Services, incident_id: int) -> None:
    """Called once an incident is confirmed: draft its alert in a job, off the webhook.

    If Redis is down the reaper drafts it on its next round (it looks for confirmed
    incidents without an alert).
    """
    try:
        enqueue(services.redis, QueueName.ALERTS, alert_for_incident, incident_id)
    except (RedisError, OSError) as error:
        log.warning(
            "incident %s: alert draft not enqueued (%s); the reaper will draft it",
            incident_id,
            error.__class__.__name__,
        )


def alert_for_incident(incident_id: int) -> int | None:
    """Job: draft the alert for a confirmed incident and, with ALERT_POLICY=auto, send it."""
    services = current()
    alert_id = draft_for_incident(services, incident_id)
    if alert_id is not None and services.settings.alert_policy == "auto":
        if _over_hourly_cap(services, alert_id):
            log.warning("alert %s: hourly cap reached; left for a dispatcher", alert_id)
            return alert_id
        # Approved already: a second run of this job, or a quicker dispatcher.
        with suppress(broadcast.AlertNotApprovable):
            approve_alert(services, alert_id)
    return alert_id


def _over_hourly_cap(services: Services, alert_id: int) -> bool:
    with services.database.session() as session:
        alert = session.get_one(Alert, alert_id)
        return cap_reached(session, alert, approval_rules(services), utcnow())


def draft_for_incident(services: Services, incident_id: int) -> int | None:
    """The incident's alert draft, made once; None if it is not (or no longer) confirmed."""
    with services.database.session() as session:
        incident = session.get(Incident, incident_id, with_for_update=True)
        if (
            incident is None
            or incident.state is not IncidentState.CONFIRMED
            or incident.area is None
        ):
            return None
        # A cancelled draft counts too: a dispatcher decided, and the reaper agrees.
        existing = session.scalar(
            select(Alert.id).where(Alert.incident_id == incident_id, Alert.kind == AlertKind.ALERT)
        )
        if existing is not None:
            return int(existing)
        texts = _alert_texts(services, session, incident, [incident.area.name], {})
        alert = broadcast.draft(
            session,
            kind=AlertKind.ALERT,
            texts=texts,
            area_ids=[incident.area.id],
            incident_id=incident_id,
            cipher=services.cipher,
        )
        alert_id = alert.id
    _emit(services, "alert_drafted", alert_id)
    return alert_id


def _alert_texts(
    services: Services,
    session: Session,
    incident: Incident,
    area_names: list[str],
    lines: Mapping[str, str],
) -> dict[str, str]:
    return compose_all(
        AlertKind.ALERT,
        areas=area_names,
        at=incident.state_changed_at,
        tz=ZoneInfo(services.settings.timezone),
        notes=lines,
        signatures=_signatures(services),
        wordings=wordings(session),
        drill=incident.drill_id is not None,
    )


def revise_draft(
    services: Services,
    alert_id: int,
    *,
    extra_area_ids: list[int],
    lines: Mapping[str, str],
    staff_id: int,
) -> None:
    """Change who an incident's alert draft goes to and its optional line, per language.

    The incident's own area always stays (and is sent first); ``extra_area_ids`` may only
    be areas adjacent to it. ``lines`` (language value -> line; blank: none) follow the
    rule of an update's notes: once one is written, each language with readers needs its
    own. Approvals already given are withdrawn: they were for other words.

    Raises:
        NotFollowable: not an incident's alert draft (approved meanwhile, or cancelled).
        DraftRefused: an area that is not adjacent.
        NoteRefused: a line missing for a language with readers, or one that names a
            phone number, plate or address.
    """
    with services.database.session() as session:
        alert = session.get(Alert, alert_id, with_for_update=True)
        if (
            alert is None
            or alert.status is not AlertStatus.DRAFT
            or alert.kind is not AlertKind.ALERT
            or alert.incident_id is None
        ):
            raise NotFollowable(f"alert {alert_id} is not an alert draft")
        incident = session.get_one(Incident, alert.incident_id)
        if incident.area is None:
            raise NotFollowable(f"alert {alert_id} has no area")
        home = incident.area
        extra = [a for a in dict.fromkeys(extra_area_ids) if a != home.id]
        if not set(extra) <= set(adjacent_area_ids(session, home.id)):
            raise DraftRefused(N_("Only areas next to the incident's can be added."))
        session.execute(delete(alert_areas).where(alert_areas.c.alert_id == alert_id))
        session.execute(
            insert(alert_areas), [{"alert_id": alert_id, "area_id": a} for a in [home.id, *extra]]
        )
        session.flush()
        chosen = notes_for_readers(
            lines, broadcast.audience_by_language(session, alert), required=False
        )
        others = session.scalars(select(Area.name).where(Area.id.in_(extra)).order_by(Area.name))
        texts = _alert_texts(services, session, incident, [home.name, *others], chosen)
        alert.texts_sealed = broadcast.seal_texts(services.cipher, incident.id, texts)
        alert.lines_sealed = (
            broadcast.seal_texts(services.cipher, incident.id, chosen) if chosen else None
        )
        session.execute(delete(AlertApproval).where(AlertApproval.alert_id == alert_id))
        audit.record(
            session,
            actor=f"staff:{staff_id}",
            action="alert.revised",
            subject=f"alert:{alert_id}",
            details={"areas": 1 + len(extra), "line": bool(chosen)},
        )
    _emit(services, "alert_drafted", alert_id)


def draft_follow_up(
    services: Services,
    parent_id: int,
    kind: AlertKind,
    *,
    note: str | None = None,
    notes: Mapping[str, str] | None = None,
    staff_id: int | None = None,
    correcting: Correcting = Correcting.FALSE_ALARM,
    right_area_id: int | None = None,
    right_time: datetime | None = None,
) -> int:
    """Draft an update, all-clear or correction for the recipients of alert ``parent_id``.

    An update's note is ``notes`` (one per language, as typed on the board: each language
    the alert reached needs its own) or ``note`` (the same words for everyone). A
    correction may carry a reason the same way, and corrects the whole alert (a false
    alarm), its area (``right_area_id``) or its time (``right_time``, aware).

    Raises:
        NotFollowable: the parent is not an approved alert.
        NoteRefused: a note is missing for a language with readers, or looks like it holds
            a phone number, plate or address.
        DraftRefused: a correction without the right area or time, or with one that
            cannot be right.
    """
    if kind not in broadcast.FOLLOW_UP_KINDS:
        raise ValueError(f"{kind.value} is not a follow-up")
    with services.database.session() as session:
        parent = session.get(Alert, parent_id)
        if (
            parent is None
            or parent.kind is not AlertKind.ALERT
            or parent.status not in (AlertStatus.APPROVED, AlertStatus.COMPLETE)
        ):
            raise NotFollowable(f"alert {parent_id} is not an approved alert")
        if kind is not AlertKind.CORRECTION:
            correcting = Correcting.FALSE_ALARM
        at = _time_named(session, parent, kind)
        if correcting is Correcting.TIME:
            at = _checked_right_time(right_time)
        place = (
            _right_place(session, parent, right_area_id) if correcting is Correcting.AREA else None
        )
        if notes is not None and kind in TAKES_A_NOTE:
            notes = notes_for_readers(
                notes,
                broadcast.readers_by_language(session, parent_id),
                required=kind is AlertKind.UPDATE,
            )
        texts = compose_all(
            kind,
            areas=[area.name for area in parent.areas],
            at=at or utcnow(),
            tz=ZoneInfo(services.settings.timezone),
            note=note,
            notes=notes if kind in TAKES_A_NOTE else None,
            signatures=_signatures(services),
            wordings=wordings(session),
            correcting=correcting,
            place=place,
            drill=parent.drill_id is not None,
        )
        alert = broadcast.draft(
            session,
            kind=kind,
            texts=texts,
            parent_id=parent_id,
            incident_id=parent.incident_id,
            created_by_id=staff_id,
            cipher=services.cipher,
        )
        alert_id = alert.id
    _emit(services, "alert_drafted", alert_id)
    return alert_id


def _checked_right_time(right_time: datetime | None) -> datetime:
    now = utcnow()
    if right_time is None or not now - CORRECTED_TIME_WINDOW <= right_time <= now:
        raise DraftRefused(N_("Give the right time: when agents were seen, within the last day."))
    return right_time


def _right_place(session: Session, parent: Alert, area_id: int | None) -> str:
    area = session.get(Area, area_id) if area_id is not None else None
    if area is None or area in parent.areas:
        raise DraftRefused(N_("Choose the area it really was in (not the one the alert named)."))
    return area.name


def _time_named(session: Session, parent: Alert, kind: AlertKind) -> datetime:
    """The time a follow-up names: a correction, that of the alert it corrects; an
    all-clear, the last time anyone reported agents (the last report, or the responder's
    confirmation), never the moment it was typed; an update, now."""
    if kind is AlertKind.CORRECTION:
        return parent.approved_at or utcnow()
    if kind is not AlertKind.ALL_CLEAR or parent.incident_id is None:
        return utcnow()
    last_report = session.scalar(
        select(func.max(Report.received_at)).where(Report.incident_id == parent.incident_id)
    )
    incident = session.get_one(Incident, parent.incident_id)
    moments = [m for m in (last_report, incident.state_changed_at) if m is not None]
    return max(moments, default=parent.approved_at or utcnow())


def _signatures(services: Services) -> dict[str, str]:
    return signatures(services.settings.org_name, services.settings.org_name_es)


def cancel_draft(services: Services, alert_id: int, staff_id: int | None = None) -> bool:
    """Drop a draft (nothing was sent), and tell the boards. False if it was not a draft."""
    with services.database.session() as session:
        cancelled = broadcast.cancel(session, alert_id, by_id=staff_id)
    if cancelled:
        _emit(services, "alert_cancelled", alert_id)
    return cancelled


def _emit(services: Services, event: str, alert_id: int) -> None:
    try:
        services.live.emit(event, {"alert_id": alert_id})
    except (RedisError, OSError) as error:
        log.warning("alert %s: %s not published (%s)", alert_id, event, error.__class__.__name__)


def write_ledger(
    services: Services, alert_id: int, *, staff_id: int | None = None
) -> broadcast.Approval:
    """Approve a draft in the database (its ledger, committed) with this network's
    validity and batch size; nothing is enqueued. ``approve_alert`` then starts sending.

    Raises:
        AlertNotApprovable: it was not a draft (already approved, or cancelled).
    """
    settings = services.settings
    with services.database.session() as session:
        return broadcast.approve(
            session,
            alert_id,
            now=utcnow(),
            validity=timedelta(minutes=settings.alert_validity_minutes),
            batch=broadcast.batch_size(settings.send_rate),
            whatsapp_batch=whatsapp_batch(settings),
            whatsapp_daily_limit=settings.whatsapp_daily_limit,
            approved_by_id=staff_id,
            first_rows=first_rows(settings),
        )


def approve_alert(
    services: Services, alert_id: int, *, staff_id: int | None = None
) -> broadcast.Approval:
    """Approve a draft: write its ledger, commit, then enqueue its batches.

    Raises:
        AlertNotApprovable: it was not a draft (already approved, or cancelled).
    """
    approval = write_ledger(services, alert_id, staff_id=staff_id)
    try:
        # The incident's own area first: adjacent areas' batches wait (release_held_batches).
        enqueue_batches(services.redis, alert_id, approval.enqueue_now, job_timeout(services))
    except (RedisError, OSError) as error:
        log.warning(
            "alert %s: batches not enqueued (%s); the reaper will enqueue them",
            alert_id,
            error.__class__.__name__,
        )
    start_streaming(services, approval, QueueName.ALERTS)  # behind the first batches
    publish_progress(services, alert_id)
    return approval


def reap_deliveries() -> dict[str, int]:
    """Scheduled: expire, take back and re-enqueue whatever a broadcast has left behind."""
    services = current()
    now = utcnow()
    idle_since = now - timedelta(seconds=services.settings.reaper_seconds)
    with services.database.session() as session:
        expired = broadcast.expire_overdue(session, now)
        released = broadcast.release_expired_leases(session, now)
        given_up = broadcast.give_up_exhausted(session, now)
        waiting = broadcast.waiting_batches(session, idle_since, now)
        unwritten = broadcast.ledger_orphans(session, idle_since)
        open_alerts = broadcast.open_alert_ids(session)
        bulk = broadcast.announcement_ids(session, open_alerts)  # their lane is the bulk queue
        # Only recent confirmations: an alert about yesterday would spread old news.
        recent = now - timedelta(minutes=services.settings.alert_validity_minutes)
        undrafted = _confirmed_without_alert(session, since=recent)
    for incident_id in undrafted:
        alert_for_incident(incident_id)
    job_ids = waiting_job_ids(services.redis)  # one read of the queues for both checks
    # A batch whose lease expired lost its worker; a waiting one may just be queued.
    orphans = released | (waiting - queued_batches(services.redis, job_ids))
    by_alert: dict[int, list[int]] = defaultdict(list)
    for alert_id, batch in sorted(orphans):
        by_alert[alert_id].append(batch)
    for alert_id, batches in by_alert.items():
        lane = QueueName.BULK if alert_id in bulk else QueueName.ALERTS
        enqueue_batches(services.redis, alert_id, batches, job_timeout(services), lane)
        log.info("alert %s: re-enqueued %d batches", alert_id, len(batches))
    for alert_id in sorted(set(unwritten) - queued_ledgers(services.redis, job_ids)):
        enqueue_ledger(
            services.redis, alert_id, QueueName.BULK if alert_id in bulk else QueueName.ALERTS
        )
        log.info("alert %s: ledger job re-enqueued", alert_id)
    for alert_id in open_alerts:
        finish_alert_if_done(services, alert_id)
    return {
        "expired": expired,
        "released_batches": len(released),
        "given_up": given_up,
        "reenqueued_batches": len(orphans),
        "drafted": len(undrafted),
    }


def _confirmed_without_alert(session: Session, since: datetime) -> list[int]:
    has_alert = select(Alert.id).where(
        Alert.incident_id == Incident.id, Alert.kind == AlertKind.ALERT
    )
    return list(
        session.scalars(
            select(Incident.id).where(
                Incident.state == IncidentState.CONFIRMED,
                Incident.state_changed_at >= since,
                Incident.area_id.is_not(None),
                ~has_alert.exists(),
            )
        )
    )


def approval_rules(services: Services) -> ApprovalRules:
    settings = services.settings
    return ApprovalRules(settings.alert_approvers, settings.alert_hourly_cap)


def approve_from_board(services: Services, alert_id: int, staff_id: int) -> ApprovalState:
    """A dispatcher's approval: counted, and once enough, the broadcast starts.

    Raises:
        ApprovalRefused: it cannot count (see ``record_approval``).
    """
    with services.database.session() as session:
        state = record_approval(session, alert_id, staff_id, approval_rules(services), utcnow())
    if state.repeated:
        return state  # the first click did it (and the approval of others, if complete)
    if state.complete:
        # A second approver may have been quicker: then it is sent already.
        with suppress(broadcast.AlertNotApprovable):
            approve_alert(services, alert_id, staff_id=staff_id)
    else:
        _emit(services, "alert_drafted", alert_id)  # the board shows one approval of two
    return state
