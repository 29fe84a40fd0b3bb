"""Intake: a sighting becomes a report, reports about the same thing become one incident.

Nothing here decides that anything is true. Reports are merged by place and time, their
independent reporters and eyewitnesses are counted, and a burst of reports is flagged as
a possible flood; only trained responders' verdicts can confirm an incident.

Second waves are never absorbed in silence. A report joins an incident still being
verified; it joins a confirmed one only to corroborate it, within SECOND_WAVE_MINUTES of
the confirmation and before any all-clear. Otherwise (after an all-clear, past that
window, after a false alarm or an unverified end) it opens a new incident, dispatched
like any other and linked to the one it follows, so the board can say so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rapidresponse import audit
from rapidresponse.codes import new_code
from rapidresponse.config import Settings
from rapidresponse.crypto import DecryptionError, FieldCipher, Purpose
from rapidresponse.directory import AreaDirectory
from rapidresponse.display import visible_text
from rapidresponse.models import (
    Alert,
    AlertKind,
    AlertStatus,
    Area,
    Dispatch,
    Incident,
    IncidentComment,
    IncidentState,
    Report,
    ReportChannel,
    to_the_minute,
    utcnow,
)
from rapidresponse.shredding import ShreddingCipher, incident_key

CODE_ATTEMPTS = 8  # inserts under a new code after a collision, before giving up
BEING_VERIFIED = (IncidentState.REPORTED, IncidentState.DISPATCHED)
# A new incident is linked to the last one decided in its area within this time.
SECOND_WAVE_LINK = timedelta(hours=6)
MAX_REPORT_CHARS = 1600
COORDINATE_DECIMALS = 3
EARTH_RADIUS_M = 6_371_000


@dataclass(frozen=True)
class IntakeRules:
    """Field-practice defaults; each is configurable."""

    merge_window: timedelta = timedelta(minutes=30)
    merge_distance_m: float = 1500.0
    follow_up_window: timedelta = timedelta(minutes=30)
    flood_reporters: int = 8  # distinct reporters in one area within flood_window
    flood_window: timedelta = timedelta(minutes=15)
    corroboration_window: timedelta = timedelta(minutes=30)  # after a confirmation


def intake_rules(settings: Settings) -> IntakeRules:
    return IntakeRules(
        merge_window=timedelta(minutes=settings.report_merge_minutes),
        merge_distance_m=float(settings.report_merge_meters),
        follow_up_window=timedelta(minutes=settings.report_follow_up_minutes),
        corroboration_window=timedelta(minutes=settings.second_wave_minutes),
    )


def all_clear_drafted() -> ColumnElement[bool]:
    """The incident has an all-clear (drafted, sending or sent): agents were said to be gone."""
    return exists(
        select(Alert.id).where(
            Alert.incident_id == Incident.id,
            Alert.kind == AlertKind.ALL_CLEAR,
            Alert.status != AlertStatus.CANCELLED,
        )
    )


def takes_reports(now: datetime, rules: IntakeRules) -> ColumnElement[bool]:
    """Whether a new report may join the incident (see the module docstring)."""
    return or_(
        Incident.state.in_(BEING_VERIFIED),
        and_(
            Incident.state == IncidentState.CONFIRMED,
            Incident.state_changed_at >= now - rules.corroboration_window,
            ~all_clear_drafted(),
        ),
    )


@dataclass(frozen=True)
class Sighting:
    """One report as it arrived (SMS or web form), before it is stored."""

    text: str
    channel: ReportChannel
    reporter_hashes: tuple[str, ...] = ()  # today's first; empty when unknown
    latitude: float | None = None
    longitude: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    eyewitness: bool = False
    place_hint: str = ""  # a "where" field, searched before the whole text
    # A drill's report (DRILL ...): it joins only that drill's incidents, and lands in
    # the drill's area when the text names no place. None: a real report.
    drill_id: int | None = None
    drill_area_id: int | None = None


@dataclass(frozen=True)
class Intake:
    report_code: str
    incident_id: int
    placed: bool
    follow_up: bool  # added to the sender's open report instead of starting a new one
    new_incident: bool
    placed_now: bool = False  # a follow-up just placed a formerly unplaced incident
    flagged_flood: bool = False  # this report made its incident a possible flood
    drill: bool = False  # a drill's report


Point = tuple[float, float]  # (latitude, longitude), rounded to about 100 m


def seal_text(cipher: ShreddingCipher, incident_id: int, text: str) -> bytes:
    """A report's text, under its incident's shred key: erased when that key is. Stored
    without invisible characters that would make it read otherwise (see display)."""
    shown = visible_text(text[:MAX_REPORT_CHARS])
    return cipher.seal(incident_key(incident_id), shown, Purpose.REPORT_TEXT)


def seal_point(cipher: ShreddingCipher, incident_id: int, point: Point | None) -> bytes | None:
    """A place, under its incident's shred key (coordinates say where someone stood)."""
    if point is None:
        return None
    return cipher.seal(incident_key(incident_id), f"{point[0]},{point[1]}", Purpose.LOCATION)


def open_point(cipher: FieldCipher, sealed: bytes | None) -> Point | None:
    """The place sealed by ``seal_point``; None when absent or shredded."""
    if sealed is None:
        return None
    try:
        latitude, longitude = cipher.decrypt(sealed, Purpose.LOCATION).split(",")
        return float(latitude), float(longitude)
    except (DecryptionError, ValueError):
        return None


class ReportDesk:
    def __init__(
        self,
        session: Session,
        cipher: ShreddingCipher,
        rules: IntakeRules,
        directory: AreaDirectory | None = None,
    ) -> None:
        self.session = session
        self.cipher = cipher
        self.rules = rules
        self._directory = directory

    @property
    def directory(self) -> AreaDirectory:
        """The process's directory when the caller has one (``AreaCatalog``); else built
        here, which parses every outline: fine for a script, not for the hotline."""
        if self._directory is None:
            self._directory = AreaDirectory(self.session.scalars(select(Area).order_by(Area.id)))
        return self._directory

    def receive(self, sighting: Sighting) -> Intake:
        """Store the sighting: as more detail for the sender's open report, or as a new one."""
        now = utcnow()
        # A drill report is always placed, so never waits for "where is it?" details.
        open_report = (
            None if sighting.drill_id else self._open_report(sighting.reporter_hashes, now)
        )
        if open_report is not None:
            earlier = self._text_of(open_report)
            # A detail that would not fit becomes a report of its own, never cut off.
            if len(earlier) + 1 + len(sighting.text) <= MAX_REPORT_CHARS:
                return self._add_detail(open_report, earlier, sighting)
        point = _point(sighting)
        report = Report(
            channel=sighting.channel,
            reporter_hash=sighting.reporter_hashes[0] if sighting.reporter_hashes else None,
            # Which fields were given, never their values: those are in the sealed text.
            details={"fields": sorted(name for name, value in sighting.details.items() if value)},
            eyewitness=sighting.eyewitness,
            received_at=now,
        )
        report.area_id = self._place(sighting) or sighting.drill_area_id
        incident, created = self._incident_for(report.area_id, point, now, sighting.drill_id)
        if self._new_reporter(incident, sighting.reporter_hashes):
            incident.reporter_count = (incident.reporter_count or 0) + 1
        report.incident_id = incident.id
        report.text_sealed = seal_text(self.cipher, incident.id, sighting.text)
        report.location_sealed = seal_point(self.cipher, incident.id, point)
        self._add_with_code(report)
        flagged = incident.drill_id is None and self._flag_flood(incident, now)
        audit.record(
            self.session,
            actor=audit.PUBLIC,
            action="report.received",
            subject=f"incident:{incident.id}",
            details={
                "report": report.code,
                "channel": report.channel.value,
                "placed": report.area_id is not None,
            },
        )
        return Intake(
            report.code,
            incident.id,
            report.area_id is not None,
            False,
            created,
            flagged_flood=flagged,
            drill=incident.drill_id is not None,
        )

    def _open_report(self, hashes: Sequence[str], now: datetime) -> Report | None:
        if not hashes:
            return None
        return self.session.scalar(
            select(Report)
            .join(Incident, Report.incident_id == Incident.id)
            .where(
                Report.reporter_hash.in_(hashes),
                Incident.drill_id.is_(None),  # a real text never becomes drill detail
                Report.updated_at >= now - self.rules.follow_up_window,
                # After a decision or an all-clear, a new text is a new sighting.
                takes_reports(now, self.rules),
            )
            .order_by(Report.updated_at.desc())
            .limit(1)
            # Quick second and third texts arrive together: each waits for the one
            # before to commit its addition, then reads the text with it (PostgreSQL;
            # SQLite lets one writer in at a time anyway).
            .with_for_update(of=Report)
        )

    def _new_reporter(self, incident: Incident, hashes: Sequence[str]) -> bool:
        """Whether no earlier report of ``incident`` came from this reporter (as far as
        the reporter window lets anyone know: a report with no hash is a reporter)."""
        if not hashes:
            return True
        earlier = select(Report.id).where(
            Report.incident_id == incident.id, Report.reporter_hash.in_(hashes)
        )
        return self.session.scalar(earlier.limit(1)) is None

    def _text_of(self, report: Report) -> str:
        if report.text_sealed is None:
            return ""
        return self.cipher.decrypt(report.text_sealed, Purpose.REPORT_TEXT)

    def _add_detail(self, report: Report, earlier: str, sighting: Sighting) -> Intake:
        assert report.incident_id is not None
        text = f"{earlier}\n{sighting.text}".strip()
        report.text_sealed = seal_text(self.cipher, report.incident_id, text)
        report.updated_at = utcnow()
        placed_now = False
        if report.area_id is None:
            report.area_id = self._place(sighting)
            incident = report.incident
            if report.area_id is not None and incident is not None and incident.area_id is None:
                incident.area_id = report.area_id  # now the responders can be found
                placed_now = True
        assert report.incident_id is not None
        return Intake(
            report.code,
            report.incident_id,
            report.area_id is not None,
            True,
            False,
            placed_now=placed_now,
        )

    def _place(self, sighting: Sighting) -> int | None:
        area = None
        if sighting.latitude is not None and sighting.longitude is not None:
            area = self.directory.at(sighting.longitude, sighting.latitude)
        if area is None and sighting.place_hint:
            area = self.directory.resolve(sighting.place_hint).area or self.directory.mentioned_in(
                sighting.place_hint
            )
        if area is None:
            area = self.directory.mentioned_in(sighting.text)
        return area.id if area is not None else None

    def _incident_for(
        self, area_id: int | None, point: Point | None, now: datetime, drill_id: int | None
    ) -> tuple[Incident, bool]:
        """The open incident nearby of the same kind (the same drill, or real), or a new one."""
        follows = None
        if area_id is not None:
            self._lock_area(area_id)
            for incident in self._open_incidents(area_id, now, drill_id):
                there = open_point(self.cipher, incident.location_sealed)
                if _close_enough(there, point, self.rules.merge_distance_m):
                    return incident, False
            follows = self._last_decided(area_id, now, drill_id)
        incident = Incident(
            area_id=area_id,
            opened_at=now,
            state_changed_at=now,
            follows_id=follows,
            drill_id=drill_id,
        )
        self._add_with_code(incident)  # its id names its shred key
        if follows is not None:
            audit.record(
                self.session,
                actor="system",
                action="incident.second_wave",
                subject=f"incident:{incident.id}",
                details={"follows": follows},
            )
        incident.location_sealed = seal_point(self.cipher, incident.id, point)
        return incident, True

    def _lock_area(self, area_id: int) -> None:
        """One report of an area at a time decides "same incident, or a new one", so a
        flood of reports becomes one incident (held to commit; other areas go on).
        FOR NO KEY UPDATE: rows that only refer to the area are not held up."""
        self.session.execute(
            select(Area.id).where(Area.id == area_id).with_for_update(key_share=True)
        )

    def _open_incidents(
        self, area_id: int, now: datetime, drill_id: int | None
    ) -> Sequence[Incident]:
        recent = select(Report.incident_id).where(
            Report.received_at >= now - self.rules.merge_window
        )
        return self.session.scalars(
            select(Incident)
            .where(
                Incident.area_id == area_id,
                _same_drill(drill_id),
                takes_reports(now, self.rules),
                Incident.id.in_(recent),
            )
            .order_by(Incident.opened_at.desc())
        ).all()

    def _last_decided(self, area_id: int, now: datetime, drill_id: int | None) -> int | None:
        """The area's incident decided most recently (within ``SECOND_WAVE_LINK``): the one
        a new incident there follows. Called with the area locked, after the incidents
        that still take reports were passed over."""
        return self.session.scalar(
            select(Incident.id)
            .where(
                Incident.area_id == area_id,
                _same_drill(drill_id),
                Incident.state.not_in(BEING_VERIFIED),
                Incident.state_changed_at >= now - SECOND_WAVE_LINK,
            )
            .order_by(Incident.state_changed_at.desc(), Incident.id.desc())
            .limit(1)
        )

    def _flag_flood(self, incident: Incident, now: datetime) -> bool:
        """Flag a burst of independent reports in one area. True when newly flagged."""
        if incident.area_id is None or incident.possible_flood:
            return False
        # A report with no reporter hash (the web form, or Redis was down) is one reporter.
        reporter = func.coalesce(Report.reporter_hash, cast(Report.id, String))
        reporters = self.session.scalar(
            select(func.count(func.distinct(reporter)))
            .join(Incident, Incident.id == Report.incident_id)
            .where(
                Report.area_id == incident.area_id,
                Report.received_at >= now - self.rules.flood_window,
                Incident.drill_id.is_(None),  # a drill's reports are no flood
            )
        )
        if (reporters or 0) < self.rules.flood_reporters:
            return False
        incident.possible_flood = True
        audit.record(
            self.session,
            actor="system",
            action="incident.possible_flood",
            subject=f"incident:{incident.id}",
        )
        return True

    def _code_taken(self, model: type[Report] | type[Incident], code: str) -> bool:
        return self.session.scalar(select(model.id).where(model.code == code)) is not None

    def _add_with_code(self, row: Report | Incident) -> None:
        """Insert ``row`` under a fresh code, whatever happens at the same moment.

        "Is it free? Then insert" leaves a gap in which a simultaneous report takes the
        same code; the unique index catches it, and the row is inserted again under
        another code (inside a savepoint, so the rest of the transaction stands).
        """
        model = type(row)
        for attempt in range(1, CODE_ATTEMPTS + 1):
            row.code = new_code(lambda code: self._code_taken(model, code))
            try:
                with self.session.begin_nested():
                    self.session.add(row)
            except IntegrityError:
                if attempt == CODE_ATTEMPTS:
                    raise
                continue
            return


def _same_drill(drill_id: int | None) -> ColumnElement[bool]:
    """Incidents a report may join or follow: a drill's own, or real ones — never across."""
    return Incident.drill_id.is_(None) if drill_id is None else Incident.drill_id == drill_id


def _point(sighting: Sighting) -> Point | None:
    """About 100 m: enough to place and merge, without keeping where the reporter stood."""
    if sighting.latitude is None or sighting.longitude is None:
        return None
    return (
        round(sighting.latitude, COORDINATE_DECIMALS),
        round(sighting.longitude, COORDINATE_DECIMALS),
    )


def _close_enough(there: Point | None, here: Point | None, limit_m: float) -> bool:
    """Same area is enough, unless both have coordinates and they are far apart."""
    if there is None or here is None:
        return True
    lat1, lon1, lat2, lon2 = (math.radians(v) for v in (*there, *here))
    a = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a)) <= limit_m


def counts(session: Session, incident_id: int) -> tuple[int, int, int]:
    """(reports, independent reporters, eyewitness reports) of an incident."""
    reports = session.scalars(select(Report).where(Report.incident_id == incident_id)).all()
    incident = session.get_one(Incident, incident_id)
    return len(reports), incident.reporter_count, sum(1 for r in reports if r.eyewitness)


def forget_reporter_links(session: Session, now: datetime, lifetime: timedelta) -> int:
    """Clear what linked reports to their senders once the reporter window is over.

    The reporter hash goes (its key is already gone from the volatile Redis, but a hash
    left here would still tell that two reports came from one person), and the report's
    times, and its incident's opening time, are kept to the minute only: an exact time
    could be matched against the provider's records of the message. Returns how many
    reports were forgotten.
    """
    reports = session.scalars(
        select(Report).where(Report.links_forgotten.is_(False), Report.received_at < now - lifetime)
    ).all()
    for report in reports:
        report.reporter_hash = None
        report.received_at = to_the_minute(report.received_at)
        report.updated_at = to_the_minute(report.updated_at)
        report.links_forgotten = True
        if report.incident is not None:
            report.incident.opened_at = to_the_minute(report.incident.opened_at)
    return len(reports)


def expired_incidents(session: Session, retention: timedelta, now: datetime) -> list[int]:
    """Incidents closed more than ``retention`` ago: their shred keys are to be destroyed."""
    return list(
        session.scalars(
            select(Incident.id).where(
                Incident.state == IncidentState.CLOSED, Incident.closed_at <= now - retention
            )
        )
    )


def purge_report_texts(session: Session, retention: timedelta) -> int:
    """Erase the text of reports whose incident closed more than ``retention`` ago.

    The text, the responders' notes, the dispatchers' comments and the coordinates go
    (codes, counts, areas and times stay for the record). Clearing the columns is only
    tidiness: what erases them is destroying the incident's shred key
    (``shred_expired_incidents``), because their old bytes outlive any UPDATE in the
    database's log and free pages.
    """
    cutoff = utcnow() - retention
    closed = select(Incident.id).where(
        Incident.state == IncidentState.CLOSED, Incident.closed_at <= cutoff
    )
    reports = session.scalars(
        select(Report).where(Report.incident_id.in_(closed), Report.text_sealed.is_not(None))
    ).all()
    now = utcnow()
    for report in reports:
        report.text_sealed, report.text_purged_at = None, now
        report.location_sealed = None
    sealed_elsewhere = (
        (Dispatch, Dispatch.incident_id, Dispatch.note_sealed),
        (IncidentComment, IncidentComment.incident_id, IncidentComment.text_sealed),
        (Incident, Incident.id, Incident.location_sealed),
        (Alert, Alert.incident_id, Alert.texts_sealed),
    )
    for table, owner, column in sealed_elsewhere:
        session.execute(
            update(table)
            .where(owner.in_(closed), column.is_not(None))
            .values({column.key: None})
            .execution_options(synchronize_session=False)
        )
    if reports:
        audit.record(
            session, actor="system", action="reports.text_purged", details={"count": len(reports)}
        )
    return len(reports)
