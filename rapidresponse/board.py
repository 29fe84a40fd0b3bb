"""What the live board shows, read from the database: the record, never the socket events.

Views are plain frozen dataclasses so that templates cannot lazy-load anything after the
session closed, and so that no view carries a subscriber's number: there is no field for
one. Responders appear by name and the last four digits of their number.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, selectinload

from rapidresponse import broadcast
from rapidresponse.crypto import DecryptionError, FieldCipher, Purpose
from rapidresponse.display import visible_text
from rapidresponse.incident_notes import NoteView, notes_of
from rapidresponse.models import (
    Alert,
    AlertApproval,
    AlertKind,
    AlertStatus,
    Area,
    Dispatch,
    DispatchState,
    Incident,
    IncidentState,
    Language,
    Report,
    Responder,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from rapidresponse.next_step import (
    AlertFact,
    IncidentFacts,
    NextStep,
    PageFact,
    Timing,
    next_step,
)
from rapidresponse.phones import masked_last_four
from rapidresponse.reports import Point, open_point
from rapidresponse.verification import incident_for_code

# Closed incidents stay on the board a while, so that a dispatcher sees what just ended.
RECENTLY_CLOSED = timedelta(hours=6)
LIVE_STATES = (IncidentState.REPORTED, IncidentState.DISPATCHED)


@dataclass(frozen=True)
class AlertView:
    id: int
    kind: AlertKind
    status: AlertStatus
    incident_code: str | None
    created_at: datetime
    approved_at: datetime | None
    texts: dict[str, str]
    approver_ids: tuple[int, ...]
    progress: broadcast.Progress
    drill: bool = False  # a drill's alert: marked DRILL on every screen

    @property
    def approvals(self) -> int:
        return len(self.approver_ids)

    @property
    def percent_done(self) -> int:
        total = self.progress.total
        return 100 if total == 0 else round(100 * (total - self.progress.pending) / total)


@dataclass(frozen=True)
class DispatchView:
    responder_id: int
    responder_name: str
    responder_phone: str  # masked: "•••-1234"
    state: DispatchState
    verdict: str | None
    paged_at: datetime
    acknowledged_at: datetime | None
    verdict_at: datetime | None


@dataclass(frozen=True)
class ReportView:
    code: str
    channel: str
    received_at: datetime
    text: str | None  # None once purged
    eyewitness: bool
    form_fields: tuple[str, ...]  # which fields of the web form were filled (never values)


@dataclass(frozen=True)
class IncidentLink:
    id: int
    code: str
    state: IncidentState


@dataclass(frozen=True)
class IncidentSummary:
    id: int
    code: str
    state: IncidentState
    area_id: int | None
    area_name: str | None
    latitude: float | None
    longitude: float | None
    opened_at: datetime
    state_changed_at: datetime
    reports: int
    independent: int
    eyewitness: int
    paged: int
    going: int
    verdicts: dict[str, int]
    possible_flood: bool
    escalated: bool
    alert_ids: tuple[int, ...]
    next: NextStep
    # Reports that arrived after it was decided (corroborating a confirmation).
    new_reports: int = 0
    follows: IncidentLink | None = None  # the decided incident this second wave came after
    followed_by: tuple[IncidentLink, ...] = ()  # second waves that came after this one
    merged_into: IncidentLink | None = None  # where its reports went, when merged
    drill: bool = False  # a drill's incident: marked DRILL on every screen

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def open(self) -> bool:
        return self.state is not IncidentState.CLOSED

    @property
    def unplaced(self) -> bool:
        return self.area_id is None


@dataclass(frozen=True)
class IncidentDetail:
    summary: IncidentSummary
    reports: tuple[ReportView, ...]
    dispatches: tuple[DispatchView, ...]
    alerts: tuple[AlertView, ...]
    notes: tuple[NoteView, ...]


def board_incidents(
    session: Session, cipher: FieldCipher, now: datetime, timers: Timing | None = None
) -> list[IncidentSummary]:
    """Every incident not closed, and those closed within ``RECENTLY_CLOSED``, newest first."""
    incidents = session.scalars(
        select(Incident)
        .where(
            or_(
                Incident.state != IncidentState.CLOSED,
                Incident.closed_at > now - RECENTLY_CLOSED,
            )
        )
        .options(selectinload(Incident.area))
        .order_by(Incident.opened_at.desc())
        .limit(200)
    ).all()
    return summarize(session, cipher, incidents, timers or Timing())


def summarize(
    session: Session, cipher: FieldCipher, incidents: Sequence[Incident], timers: Timing
) -> list[IncidentSummary]:
    ids = [incident.id for incident in incidents]
    reports = _reports_by_incident(session, ids)
    dispatches = _dispatches_by_incident(session, ids)
    names = _responder_names(session, dispatches)
    alerts = _alerts_by_incident(session, ids)
    links = _links(session, incidents)
    return [
        _summary(
            incident,
            open_point(cipher, incident.location_sealed),
            reports.get(incident.id, []),
            dispatches.get(incident.id, []),
            alerts.get(incident.id, []),
            next_step(
                _facts(incident),
                [
                    PageFact(names.get(d.responder_id, "?"), d.state, d.paged_at)
                    for d in dispatches.get(incident.id, [])
                ],
                [fact for _id, fact in alerts.get(incident.id, [])],
                timers,
            ),
            links,
        )
        for incident in incidents
    ]


def _facts(incident: Incident) -> IncidentFacts:
    return IncidentFacts(
        state=incident.state,
        placed=incident.area_id is not None,
        escalated=incident.escalated_at is not None,
        opened_at=incident.opened_at,
        state_changed_at=incident.state_changed_at,
        closed_at=incident.closed_at,
    )


def _reports_by_incident(session: Session, ids: list[int]) -> dict[int, list[Report]]:
    found: dict[int, list[Report]] = {}
    for report in session.scalars(select(Report).where(Report.incident_id.in_(ids))):
        found.setdefault(report.incident_id or 0, []).append(report)
    return found


def _dispatches_by_incident(session: Session, ids: list[int]) -> dict[int, list[Dispatch]]:
    found: dict[int, list[Dispatch]] = {}
    for dispatch in session.scalars(select(Dispatch).where(Dispatch.incident_id.in_(ids))):
        found.setdefault(dispatch.incident_id, []).append(dispatch)
    return found


def _responder_names(session: Session, dispatches: dict[int, list[Dispatch]]) -> dict[int, str]:
    ids = {d.responder_id for found in dispatches.values() for d in found}
    if not ids:
        return {}
    rows = session.execute(select(Responder.id, Responder.name).where(Responder.id.in_(ids)))
    return {responder_id: name for responder_id, name in rows}


def _alerts_by_incident(session: Session, ids: list[int]) -> dict[int, list[tuple[int, AlertFact]]]:
    found: dict[int, list[tuple[int, AlertFact]]] = {}
    rows = session.execute(
        select(Alert.incident_id, Alert.id, Alert.kind, Alert.status, Alert.approved_at)
        .where(Alert.incident_id.in_(ids))
        .order_by(Alert.id)
    )
    for incident_id, alert_id, kind, status, approved_at in rows:
        found.setdefault(incident_id or 0, []).append(
            (alert_id, AlertFact(kind, status, approved_at))
        )
    return found


@dataclass(frozen=True)
class _Links:
    by_id: dict[int, IncidentLink]
    followers: dict[int, list[IncidentLink]]

    def get(self, incident_id: int | None) -> IncidentLink | None:
        return self.by_id.get(incident_id) if incident_id is not None else None


def _links(session: Session, incidents: Sequence[Incident]) -> _Links:
    """Second waves and merges: the incidents these refer to, and those that follow them."""
    ids = [incident.id for incident in incidents]
    referred = {i.follows_id for i in incidents} | {i.merged_into_id for i in incidents}
    rows = session.execute(
        select(Incident.id, Incident.code, Incident.state, Incident.follows_id).where(
            or_(Incident.id.in_(referred - {None}), Incident.follows_id.in_(ids))
        )
    ).all()
    by_id = {row.id: IncidentLink(row.id, row.code, row.state) for row in rows}
    followers: dict[int, list[IncidentLink]] = {}
    for row in sorted(rows, key=lambda row: row.id):
        if row.follows_id in ids:
            followers.setdefault(row.follows_id, []).append(by_id[row.id])
    return _Links(by_id, followers)


def _summary(
    incident: Incident,
    point: Point | None,
    reports: list[Report],
    dispatches: list[Dispatch],
    alerts: list[tuple[int, AlertFact]],
    step: NextStep,
    links: _Links,
) -> IncidentSummary:
    verdicts = Counter(d.verdict.value for d in dispatches if d.verdict is not None)
    decided = incident.state not in LIVE_STATES
    return IncidentSummary(
        id=incident.id,
        code=incident.code,
        state=incident.state,
        area_id=incident.area_id,
        area_name=incident.area.name if incident.area else None,
        latitude=point[0] if point else None,
        longitude=point[1] if point else None,
        opened_at=incident.opened_at,
        state_changed_at=incident.state_changed_at,
        reports=len(reports),
        independent=incident.reporter_count,
        eyewitness=sum(1 for r in reports if r.eyewitness),
        paged=len(dispatches),
        going=sum(1 for d in dispatches if d.state is DispatchState.GOING),
        verdicts=dict(verdicts),
        possible_flood=incident.possible_flood,
        escalated=incident.escalated_at is not None,
        alert_ids=tuple(alert_id for alert_id, _fact in alerts),
        next=step,
        new_reports=sum(1 for r in reports if r.received_at > incident.state_changed_at)
        if decided
        else 0,
        follows=links.get(incident.follows_id),
        followed_by=tuple(links.followers.get(incident.id, [])),
        merged_into=links.get(incident.merged_into_id),
        drill=incident.drill_id is not None,
    )


def incident_detail(
    session: Session, cipher: FieldCipher, incident_id: int, timers: Timing | None = None
) -> IncidentDetail | None:
    incident = session.get(Incident, incident_id)
    if incident is None:
        return None
    (summary,) = summarize(session, cipher, [incident], timers or Timing())
    reports = session.scalars(
        select(Report).where(Report.incident_id == incident_id).order_by(Report.received_at)
    ).all()
    dispatches = session.scalars(
        select(Dispatch)
        .where(Dispatch.incident_id == incident_id)
        .options(selectinload(Dispatch.responder))
        .order_by(Dispatch.paged_at)
    ).all()
    return IncidentDetail(
        summary=summary,
        reports=tuple(_report_view(cipher, report) for report in reports),
        dispatches=tuple(_dispatch_view(dispatch) for dispatch in dispatches),
        alerts=tuple(alert_views(session, cipher, summary.alert_ids)),
        notes=tuple(notes_of(session, cipher, incident_id)),
    )


def _report_view(cipher: FieldCipher, report: Report) -> ReportView:
    text = None
    if report.text_sealed is not None:
        try:
            # Stored before texts were cleaned at intake: cleaned again to be shown.
            text = visible_text(cipher.decrypt(report.text_sealed, Purpose.REPORT_TEXT))
        except DecryptionError:  # a retired key: the rest of the report still shows
            text = None
    return ReportView(
        code=report.code,
        channel=report.channel.value,
        received_at=report.received_at,
        text=text,
        eyewitness=report.eyewitness,
        form_fields=_form_fields(report.details),
    )


def _form_fields(details: dict[str, object] | None) -> tuple[str, ...]:
    fields = (details or {}).get("fields")
    return tuple(str(name) for name in fields) if isinstance(fields, list) else ()


def _dispatch_view(dispatch: Dispatch) -> DispatchView:
    return DispatchView(
        responder_id=dispatch.responder_id,
        responder_name=dispatch.responder.name,
        responder_phone=masked_last_four(dispatch.responder.phone_last4),
        state=dispatch.state,
        verdict=dispatch.verdict.value if dispatch.verdict else None,
        paged_at=dispatch.paged_at,
        acknowledged_at=dispatch.acknowledged_at,
        verdict_at=dispatch.verdict_at,
    )


MERGE_CHOICES = 50


@dataclass(frozen=True)
class MergeChoice:
    id: int
    code: str
    area_name: str | None
    state: IncidentState


def merge_candidates(session: Session, incident_id: int) -> list[MergeChoice]:
    """Open incidents that could be merged into this one, newest first: real ones for a
    real incident, the same drill's for a drill's."""
    drill_id = session.scalar(select(Incident.drill_id).where(Incident.id == incident_id))
    same_kind = Incident.drill_id.is_(None) if drill_id is None else Incident.drill_id == drill_id
    rows = session.execute(
        select(Incident.id, Incident.code, Area.name, Incident.state)
        .outerjoin(Area, Area.id == Incident.area_id)
        .where(Incident.state != IncidentState.CLOSED, Incident.id != incident_id, same_kind)
        .order_by(Incident.opened_at.desc())
        .limit(MERGE_CHOICES)
    )
    return [MergeChoice(*row) for row in rows]


CODE_CHARS = 12  # the longest code a column holds


def find_incident(session: Session, code: str) -> int | None:
    """The incident with this code, or with a report of this code (case and spaces
    ignored, as a code read out on the phone is typed)."""
    wanted = "".join(code.split()).upper()[:CODE_CHARS]
    if not wanted:
        return None
    found = incident_for_code(session, wanted)
    if found is None:
        found = session.scalar(select(Report.incident_id).where(Report.code == wanted))
    return found


def alert_views(
    session: Session,
    cipher: FieldCipher,
    alert_ids: Sequence[int],
) -> list[AlertView]:
    if not alert_ids:
        return []
    alerts = session.scalars(
        select(Alert).where(Alert.id.in_(alert_ids)).order_by(Alert.id.desc())
    ).all()
    incident_ids = sorted({a.incident_id for a in alerts if a.incident_id})
    codes = {
        incident_id: code
        for incident_id, code in session.execute(
            select(Incident.id, Incident.code).where(Incident.id.in_(incident_ids))
        )
    }
    approvers: dict[int, list[int]] = {}
    for alert_id, staff_id in session.execute(
        select(AlertApproval.alert_id, AlertApproval.staff_user_id).where(
            AlertApproval.alert_id.in_(alert_ids)
        )
    ):
        approvers.setdefault(alert_id, []).append(staff_id)
    progress = broadcast.progress_of_alerts(session, alert_ids)
    return [
        AlertView(
            id=alert.id,
            kind=alert.kind,
            status=alert.status,
            incident_code=codes.get(alert.incident_id or 0),
            created_at=alert.created_at,
            approved_at=alert.approved_at,
            texts=broadcast.texts_of(cipher, alert),
            approver_ids=tuple(approvers.get(alert.id, [])),
            progress=progress[alert.id],
            drill=alert.drill_id is not None,
        )
        for alert in alerts
    ]


def board_alerts(session: Session, cipher: FieldCipher, now: datetime) -> list[AlertView]:
    """Drafts waiting for a decision and broadcasts of the last hours."""
    ids = session.scalars(
        select(Alert.id).where(
            or_(
                Alert.status == AlertStatus.DRAFT,
                Alert.approved_at > now - RECENTLY_CLOSED,
            )
        )
    ).all()
    return alert_views(session, cipher, ids)


# --- people -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ResponderView:
    id: int
    name: str
    phone: str  # masked
    language: Language
    areas: tuple[str, ...]
    on_shift: bool
    active: bool
    last_seen_at: datetime | None


def responder_views(session: Session) -> list[ResponderView]:
    responders = session.scalars(
        select(Responder).options(selectinload(Responder.areas)).order_by(Responder.name)
    ).all()
    return [
        ResponderView(
            id=r.id,
            name=r.name,
            phone=masked_last_four(r.phone_last4),
            language=r.language,
            areas=tuple(sorted(area.name for area in r.areas)),
            on_shift=r.on_shift,
            active=r.active,
            last_seen_at=r.last_seen_at,
        )
        for r in responders
    ]


@dataclass(frozen=True)
class AreaAudience:
    area_id: int
    area_name: str
    by_language: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_language.values())


def subscriber_counts(session: Session) -> list[AreaAudience]:
    """Confirmed, active subscribers per area and language: counts only, never numbers."""
    rows = session.execute(
        select(Area.id, Area.name, Subscriber.language, func.count(Subscriber.id))
        .select_from(Area)
        .outerjoin(
            Subscription,
            (Subscription.area_id == Area.id)
            & (Subscription.status == SubscriptionStatus.CONFIRMED),
        )
        .outerjoin(
            Subscriber,
            (Subscriber.id == Subscription.subscriber_id)
            & (Subscriber.status == SubscriberStatus.ACTIVE),
        )
        .group_by(Area.id, Area.name, Subscriber.language)
        .order_by(Area.name)
    ).all()
    areas: dict[int, AreaAudience] = {}
    for area_id, name, language, count in rows:
        audience = areas.setdefault(area_id, AreaAudience(area_id, name, {}))
        if language is not None and count:
            audience.by_language[language.value] = count
    return list(areas.values())
