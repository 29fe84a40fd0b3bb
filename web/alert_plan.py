"""What the alert page shows before a send: who gets it (per language and per area, the
incident's own area first), how long the send takes, what a dispatcher may change in a
draft, and what the rest of a message costs beside a line being typed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.services import Services
from rapidresponse import broadcast
from rapidresponse.areas import adjacent_area_ids
from rapidresponse.capacity import Capacity, capacity
from rapidresponse.composer import compose_all, signatures
from rapidresponse.config import Settings, whatsapp_alerts
from rapidresponse.models import Alert, AlertKind, AlertStatus, Area, Incident, utcnow
from rapidresponse.sms import segment
from rapidresponse.whatsapp import ChannelCounts
from rapidresponse.wording import wordings


@dataclass(frozen=True)
class AreaChoice:
    """An area next to the incident's that the alert may also go to."""

    id: int
    name: str
    people: int
    chosen: bool


@dataclass(frozen=True)
class SendPlan:
    capacity: Capacity
    areas: tuple[str, ...]  # the incident's own area first
    parent_recipients: int | None  # a follow-up: how many the alert it follows went to
    validity_minutes: int
    home_area: str | None = None  # an incident's alert: the area sent first
    home_people: int = 0
    choices: tuple[AreaChoice, ...] | None = None  # None: who it goes to is not changeable
    # A draft's reach by channel, when WhatsApp carries alerts and someone is on it.
    channels: ChannelCounts | None = None

    @property
    def needs_consent(self) -> bool:
        """Nobody would get it, or the validity would run out on some: say so, and ask."""
        return self.capacity.recipients == 0 or self.capacity.dropped > 0

    @property
    def adjacent_chosen(self) -> bool:
        return any(choice.chosen for choice in self.choices or ())


def send_plan(found: Services, session: Session, row: Alert, texts: dict[str, str]) -> SendPlan:
    """Who a draft goes to, per language, and how long it takes: for the confirmation."""
    parent = session.get(Alert, row.parent_id) if row.parent_id else None
    settings = found.settings
    draft = row.status is AlertStatus.DRAFT
    home = _home_area(session, row)
    areas = sorted((parent or row).areas, key=lambda a: (home is None or a.id != home.id, a.name))
    if row.drill_id is not None:
        home = None  # a drill's audience is its participants: no area's people, no choice
    choices = _choices(session, row, home) if draft and home is not None else None
    people = broadcast.subscribers_by_area(session, [home.id]) if draft and home else {}
    return SendPlan(
        capacity=capacity(
            # Counted for a draft only: a sending alert's page is re-read on every hint.
            broadcast.audience_by_language(session, row) if draft else {},
            texts,
            settings.send_rate,
            settings.alert_validity_minutes,
        ),
        areas=tuple(area.name for area in areas),
        parent_recipients=parent.recipient_count if parent else None,
        validity_minutes=settings.alert_validity_minutes,
        home_area=home.name if home else None,
        home_people=people.get(home.id, 0) if home else 0,
        choices=choices,
        channels=_channels(session, row, settings) if draft else None,
    )


def _channels(session: Session, row: Alert, settings: Settings) -> ChannelCounts | None:
    if not whatsapp_alerts(settings):
        return None
    counts = broadcast.audience_by_channel(session, row, whatsapp_on=True)
    return counts if counts.whatsapp or counts.sms_for_lack_of_template else None


def _home_area(session: Session, row: Alert) -> Area | None:
    if row.kind is not AlertKind.ALERT or row.incident_id is None:
        return None
    incident = session.get(Incident, row.incident_id)
    return incident.area if incident else None


def _choices(session: Session, row: Alert, home: Area) -> tuple[AreaChoice, ...]:
    adjacent = adjacent_area_ids(session, home.id)
    if not adjacent:
        return ()
    people = broadcast.subscribers_by_area(session, adjacent)
    chosen = {area.id for area in row.areas}
    found = session.scalars(select(Area).where(Area.id.in_(adjacent)).order_by(Area.name))
    return tuple(AreaChoice(a.id, a.name, people.get(a.id, 0), a.id in chosen) for a in found)


def rest_units(
    found: Services, session: Session, kind: AlertKind, areas: tuple[str, ...]
) -> dict[str, int]:
    """Per language, the characters of a ``kind`` message without the dispatcher's line:
    what the page's counter adds a line being typed to (an estimate: past one segment the
    composer may list fewer areas or leave out the rights line)."""
    probe = "x"  # a one-letter note, ended with a full stop and set off by a space
    texts = compose_all(
        kind,
        areas=list(areas) or ["-"],
        at=utcnow() - timedelta(minutes=1),
        tz=ZoneInfo(found.settings.timezone),
        notes={language: probe for language in ("en", "es")},
        signatures=signatures(found.settings.org_name, found.settings.org_name_es),
        wordings=wordings(session),
    )
    return {language: segment(text).units - len(probe) - 2 for language, text in texts.items()}
